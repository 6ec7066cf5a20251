"""The hardened state of each section, applied to the real MTAs: every control shows, and
mail still flows. Section start states harden only the sections before them."""

import pytest

from labkit.course.hardening import SECTIONS, harden_through, section, start_state
from tests.lab.conftest import reset_mtas

pytestmark = pytest.mark.lab


@pytest.fixture
def fresh(lab):
    reset_mtas(lab)
    yield lab
    reset_mtas(lab)


def test_every_section_hardens_the_baseline_and_mail_still_flows(fresh):
    lab = fresh
    with lab.listed_in_dnsbl("internet"):  # the baseline does not look
        assert lab.send("internet", "jo@example.com").status == "delivered"
    results = harden_through(lab.engine, "11")
    assert results and all(r.ok for r in results)
    with lab.listed_in_dnsbl("internet") as address:  # 05
        refused = lab.send("internet", "jo@example.com").reply
        assert (refused.code, refused.enhanced) == (550, "5.7.1") and address in refused.text

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
    assert lab.session_users("relay", vantage="internet").session == ("smmta",)  # 01
    assert lab.file_info("relay", "/var/spool/mqueue").octal == "0700"
    tls = lab.tls("internet", "relay")  # 07
    assert tls.offered and tls.verified
    with lab.smtp_tls("internet", "relay") as s:  # no certificate: no relaying
        s.mail("someone@example.net")
        assert s.rcpt("victim@example.net").code == 550
    with lab.smtp_tls("internet", "relay", client="internet") as s:  # a lab-CA certificate
        s.mail("someone@example.net")
        assert s.rcpt("victim@example.net").code == 250
    auth = lab.auth("internet", "relay")  # 06
    assert auth.plaintext_before_tls == [] and "PLAIN" in auth.after_tls
    assert lab.file_info("relay", "/etc/mail/tls/relay.key").octal == "0600"

    assert lab.tls("relay", "server").verified  # 07: the server's certificate
    with lab.smtp("internet", "mx2") as s:  # 09: Postfix in the DMZ
        assert s.greeting.text == "mx2.example.com ESMTP"
        s.ehlo("internet.example.net")
        assert s.vrfy("jo@example.com").code == 502
    assert lab.tls("internet", "mx2").verified
    assert not lab.relay_matrix("internet", "mx2", wait=2).open_relay
    refused = lab.send("internet", "jo@example.com", target="mx2", subject="lottery win")
    assert refused.status == "refused" and "header checks" in refused.reply.text
    assert lab.send("internet", "nosuch@example.com", target="mx2").reply.enhanced == "5.1.1"
    assert lab.send("internet", "jack@example.com", target="mx2").status == "delivered"

    assert lab.send("internet", "jo@example.com").status == "delivered"
    assert lab.send("client", "someone@example.net").status == "at-sink"

    from labkit.mta import Sendmail  # 02: a program outside smrsh's directory
    relay = Sendmail(lab.engine)
    relay.set_aliases(lab.read_file("relay", "/etc/aliases") + 'labpipe: "|/bin/cat"\n')
    piped = lab.send("internet", "labpipe@relay.example.com")
    assert piped.status == "bounced" and 'smrsh: "cat" not available' in piped.bounce


def test_a_section_start_state_hardens_only_the_sections_before_it(fresh):
    lab = fresh
    results = start_state(lab.engine, "privacy")
    assert all(r.ok for r in results)
    with lab.smtp("internet", "relay") as s:
        s.ehlo()
        assert s.vrfy("root").code == 250  # 08 itself is the learner's to do
    assert lab.declared_size("internet", "relay")[0] == "10000000"  # 03 done before
    assert lab.send("internet", "nosuch@example.com").reply.enhanced == "5.1.1"  # 04 done


def test_certificate_relay_entry_names_the_lab_ca_as_sendmail_writes_it():
    from labkit import pki
    from labkit.course.hardening import certificate_relay_line, xtext
    assert xtext("/CN=Lab CA+x<y>") == "/CN=Lab+20CA+2Bx+3Cy+3E"
    assert certificate_relay_line(pki.LabCA()) == (
        "CERTISSUER:/O=MTA+20Hardening+20Lab/CN=MTA+20Hardening+20Lab+20CA\tRELAY")


def test_sections_are_found_by_number_or_name():
    assert section("4").slug == "relay" and section("relay").number == "04"
    assert [s.number for s in SECTIONS] == [f"{i:02d}" for i in range(12)]
    with pytest.raises(Exception, match="unknown section 'dkim'"):
        section("dkim")
