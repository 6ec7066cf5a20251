"""Probes against the real relay and server of the baseline lab, from each vantage host."""

import pytest

pytestmark = pytest.mark.lab


def test_relay_greeting_names_sendmail_and_its_version_on_baseline(lab):
    with lab.smtp("internet", "relay") as s:
        assert s.greeting.code == 220
        assert "relay.example.com ESMTP Sendmail 8.17" in s.greeting.text


def test_ehlo_capabilities_of_the_baseline_relay(lab):
    with lab.smtp("internet", "relay") as s:
        assert s.ehlo("internet.example.net").code == 250
        for keyword in ("EXPN", "VERB", "DSN", "ETRN", "AUTH", "PIPELINING", "SIZE"):
            assert keyword in s.capabilities, s.transcript
        assert "STARTTLS" not in s.capabilities
        assert "PLAIN" in s.capabilities["AUTH"].split()


def test_vrfy_and_expn_are_answered_by_the_baseline_relay(lab):
    with lab.smtp("internet", "relay") as s:
        s.ehlo()
        vrfy = s.vrfy("root")
        assert vrfy.code == 250 and vrfy.enhanced == "2.1.5", s.transcript
        assert s.expn("root").code == 250


def test_server_speaks_postfix_from_the_inside(lab):
    with lab.smtp("client", "server") as s:
        assert "server.example.com ESMTP Postfix" in s.greeting.text
        s.ehlo("client.example.com")
        assert s.vrfy("jo").code == 252


def test_server_cannot_be_reached_from_internet(lab):
    with pytest.raises(OSError):
        lab.smtp("internet", "server", timeout=2)


def test_relay_matrix_from_outside_finds_the_baseline_open_relay(lab):
    m = lab.relay_matrix("internet", "relay")
    assert len(m.attempts) >= 16
    assert m.open_relay, m.summary()
    plain = next(a for a in m.attempts if a.variant.name == "plain stranger to stranger")
    assert plain.accepted and plain.delivered, m.summary()


def test_relay_refuses_a_client_outside_its_relay_rule(lab):
    """Same matrix from a client the access rule does not cover: Sendmail refuses it."""
    lab.run("relay", "sed -i 's/^Connect:192.168\\t*RELAY/Connect:192.168.57\\tRELAY/' "
                     "/etc/mail/access && makemap hash /etc/mail/access < /etc/mail/access").check()
    try:
        m = lab.relay_matrix("internet", "relay", wait=2)
        plain = next(a for a in m.attempts if a.variant.name == "plain stranger to stranger")
        assert not plain.accepted
        assert (plain.rcpt_reply.code, plain.rcpt_reply.enhanced) == (550, "5.7.1")
        assert "Relaying denied" in plain.rcpt_reply.text
    finally:
        lab.run("relay", "sed -i 's/^Connect:192.168.57\\tRELAY/Connect:192.168\\t\\t\\tRELAY/' "
                         "/etc/mail/access && makemap hash /etc/mail/access < /etc/mail/access").check()


@pytest.mark.parametrize("vantage", ["internet", "relay", "server", "client"])
def test_dns_probe_answers_as_each_host_sees_it(lab, vantage):
    dns = lab.dns(vantage)
    assert dns.mx("example.com") == [(10, "relay.example.com.")]
    assert dns.addresses("server.example.com") == ["192.168.57.30"]
    assert dns.ptr("192.168.56.20") == ["relay.example.com."]
    assert dns.query("nothing-here.example.com").status == "NXDOMAIN"


def test_dnsbl_probe_sees_rfc5782_test_entries(lab):
    dns = lab.dns("relay")
    listed = dns.dnsbl("127.0.0.2", "bl.lab.test")
    assert listed.listed and listed.codes == ("127.0.0.2",)
    assert "Listed in the lab DNSBL" in listed.text
    assert not dns.dnsbl("127.0.0.1", "bl.lab.test").listed
    assert dns.rhsbl("test", "rhsbl.lab.test").listed
    assert not dns.rhsbl("invalid", "rhsbl.lab.test").listed
