"""The hardened state of each section, applied to the real MTAs: every control shows, and
mail still flows. Section start states harden only the sections before them."""

import pytest

from labkit.course.hardening import SECTIONS, harden_through, section, start_state

pytestmark = pytest.mark.lab


@pytest.fixture
def fresh(lab):
    lab.reset("relay")
    lab.reset("server")
    yield lab
    lab.reset("relay")
    lab.reset("server")


def test_every_section_hardens_the_baseline_and_mail_still_flows(fresh):
    lab = fresh
    results = harden_through(lab.engine, "11")
    assert results and all(r.ok for r in results)

    with lab.smtp("internet", "relay") as s:
        assert s.greeting.text.startswith("relay.example.com ESMTP MTA;")  # 08
        assert "Sendmail" not in s.greeting.text
        s.ehlo()
        for gone in ("EXPN", "VERB", "DSN", "ETRN"):
            assert gone not in s.capabilities  # 08
        assert s.vrfy("root").code == 252 and s.expn("root").code == 502
    assert lab.declared_size("internet", "relay", 20_000_000)[1].enhanced == "5.2.3"  # 03
    assert not lab.relay_matrix("internet", "relay", wait=2).open_relay  # 04
    assert lab.send("internet", "nosuch@example.com").reply.enhanced == "5.1.1"  # 04
    tls = lab.tls("internet", "relay")  # 07
    assert tls.offered and tls.verified
    auth = lab.auth("internet", "relay")  # 06
    assert auth.plaintext_before_tls == [] and "PLAIN" in auth.after_tls
    assert lab.file_info("relay", "/etc/mail/tls/relay.key").octal == "0600"

    with lab.smtp("client", "server") as s:  # 09
        assert s.greeting.text == "server.example.com ESMTP"
        s.ehlo()
        assert s.vrfy("jo").code == 502
    assert lab.tls("client", "server").verified
    refused = lab.send("client", "jo@example.com", target="server", subject="lottery win")
    assert refused.status == "refused" and "header checks" in refused.reply.text

    assert lab.send("internet", "jo@example.com").status == "delivered"
    assert lab.send("client", "someone@example.net").status == "at-sink"


def test_a_section_start_state_hardens_only_the_sections_before_it(fresh):
    lab = fresh
    results = start_state(lab.engine, "privacy")
    assert all(r.ok for r in results)
    with lab.smtp("internet", "relay") as s:
        s.ehlo()
        assert s.vrfy("root").code == 250  # 08 itself is the learner's to do
    assert lab.declared_size("internet", "relay")[0] == "10000000"  # 03 done before
    assert lab.send("internet", "nosuch@example.com").reply.enhanced == "5.1.1"  # 04 done


def test_sections_are_found_by_number_or_name():
    assert section("4").slug == "relay" and section("relay").number == "04"
    assert [s.number for s in SECTIONS] == [f"{i:02d}" for i in range(12)]
    with pytest.raises(Exception, match="unknown section 'dkim'"):
        section("dkim")
