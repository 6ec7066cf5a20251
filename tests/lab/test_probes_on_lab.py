"""Probes against the real relay and server of the baseline lab, from each vantage host."""

import pytest

from tests.lab.conftest import wait_for

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


@pytest.mark.parametrize("vantage", ["internet", "relay", "mx2", "server", "client"])
def test_dns_probe_answers_as_each_host_sees_it(lab, vantage):
    dns = lab.dns(vantage)
    assert sorted(dns.mx("example.com")) == [(10, "relay.example.com."), (20, "mx2.example.com.")]
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


def test_auth_probe_logs_in_with_every_mechanism_on_the_baseline_relay(lab):
    report = lab.auth("internet", "relay")
    assert report.before_tls == ["DIGEST-MD5", "CRAM-MD5", "LOGIN", "PLAIN"]
    assert report.plaintext_before_tls == ["LOGIN", "PLAIN"]
    assert not report.tls_offered
    for mech in ("PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5"):
        assert report.logins[mech].code == 235, f"{mech}: {report.logins[mech]}"
    assert report.relay_after_login.code == 250


def test_auth_probe_sees_a_wrong_password_refused(lab):
    report = lab.auth("internet", "relay", password="not-the-password")
    assert {m: r.code for m, r in report.logins.items()} == {
        "PLAIN": 535, "LOGIN": 535, "CRAM-MD5": 535, "DIGEST-MD5": 535}
    assert report.relay_after_login is None


def test_tls_probe_reports_no_starttls_on_the_baseline(lab):
    assert not lab.tls("internet", "relay").offered
    assert not lab.tls("client", "server").offered


def _postfix_tls(lab, cert_pem: str, key_pem: str) -> None:
    lab.write_file("server", "/etc/postfix/tls/server.crt", cert_pem)
    lab.write_file("server", "/etc/postfix/tls/server.key", key_pem, mode="0600")
    # Through the apply layer, which waits until the new settings are served (a bare
    # `postfix reload` returns before every smtpd has them).
    from labkit.mta import Postfix
    Postfix(lab.engine).set(smtpd_tls_cert_file="/etc/postfix/tls/server.crt",
                            smtpd_tls_key_file="/etc/postfix/tls/server.key",
                            smtpd_tls_security_level="may")


def test_tls_probe_inspects_and_verifies_a_lab_ca_certificate(lab):
    from labkit import pki
    issued = pki.issue_for_host(pki.LabCA(), lab.topology.host("server"))
    _postfix_tls(lab, issued.cert_pem, issued.key_pem)
    try:
        report = lab.tls("client", "server")
        assert report.offered and report.version.startswith("TLSv1.")
        assert report.cert.common_name == "server.example.com"
        assert "server.example.com" in report.cert.sans
        assert "CN=MTA Hardening Lab CA" in report.cert.issuer
        assert report.verified, report.verify_error
        assert lab.file_info("server", "/etc/postfix/tls/server.key").octal == "0600"
        with_client_cert = lab.tls("client", "server", client="client")
        assert with_client_cert.verified
        auth = lab.auth("client", "server")  # STARTTLS offered now; Postfix has no SASL yet
        assert auth.tls_offered and auth.before_tls == [] and auth.after_tls == []
        assert auth.logins == {}
    finally:
        lab.reset("server")


def test_tls_probe_refuses_self_signed_and_wrong_name_certificates(lab):
    from labkit import pki
    bad = pki.self_signed("server.example.com")
    _postfix_tls(lab, bad.cert_pem, bad.key_pem)
    try:
        report = lab.tls("client", "server")
        assert report.offered and report.cert.self_signed
        assert not report.verified and "self-signed" in report.verify_error
        wrong = pki.LabCA().issue("relay.example.com")
        _postfix_tls(lab, wrong.cert_pem, wrong.key_pem)
        report = lab.tls("client", "server")
        assert not report.verified and "mismatch" in report.verify_error.lower()
    finally:
        lab.reset("server")


def test_file_info_reports_mode_owner_and_group(lab):
    info = lab.file_info("relay", "/etc/mail/sendmail.cf")
    assert (info.octal, info.owner, info.group, info.kind) == ("0644", "root", "smmsp", "file")
    assert lab.file_info("relay", "/var/spool/mqueue").kind == "directory"
    from labkit.probes.host import HostProbeError
    with pytest.raises(HostProbeError, match="No such file"):
        lab.file_info("relay", "/etc/mail/nothing-here")


def test_listeners_show_what_listens_where(lab):
    relay = {(x.address, x.port, x.process) for x in lab.listeners("relay")}
    assert ("0.0.0.0", 25, "sendmail-mta") in relay
    assert ("192.168.57.20", 53, "dnsmasq") in relay
    assert any(x.port == 25 and x.process == "master" for x in lab.listeners("server"))


def test_session_users_show_who_serves_an_smtp_session(lab):
    relay = lab.session_users("relay", vantage="client")
    assert relay.listener == ("root",) and relay.session == ("root",)
    assert "192.168.57.40" in relay.commands[0]
    server = lab.session_users("server", vantage="client")
    assert server.session == ("postfix",) and "smtpd" in server.commands[0]


def stop_server_postfix(lab) -> None:
    """Stop the server's Postfix and wait until nothing there answers SMTP: an idle smtpd
    of a recent session may take one more connection after the master has gone."""
    lab.run("server", ["systemctl", "stop", "postfix"]).check()
    wait_for(lambda: not lab.run("server", "pgrep -x smtpd || ss -Hltn sport = :25 | "
                                           "grep -q .").ok, timeout=60,
             what="Postfix to stop on the server")


def test_queue_and_logs_follow_a_message_the_server_cannot_take(lab):
    mark = lab.log_mark("relay")
    stop_server_postfix(lab)
    try:
        with lab.smtp("internet", "relay") as s:
            s.ehlo()
            s.mail("friend@example.net")
            s.rcpt("william@example.com")
            assert s.data("Subject: queued\r\n\r\nwait for me\r\n").code == 250
        entries = wait_for(lambda: lab.queue("relay"), what="the message in the relay's queue")
        assert entries[0].sender == "friend@example.net"
        assert entries[0].recipients == ("<william@example.com>",)
        assert entries[0].reason  # e.g. "Deferred: Connection refused by server.example.com."
        assert any("william@example.com" in ln and "stat=Deferred" in ln
                   for ln in lab.logs_since("relay", mark))
    finally:
        lab.run("server", ["systemctl", "start", "postfix"]).check()
        lab.run("relay", ["sendmail", "-q"]).check()
    wait_for(lambda: not lab.queue("relay"), what="the relay's queue to empty")
    assert "wait for me" in lab.mailbox("william")


def test_send_follows_a_message_into_a_users_mailbox(lab):
    fate = lab.send("internet", "jack@example.com", subject="follow me")
    assert fate.status == "delivered" and fate.where == "server:/var/mail/jack"


def test_send_follows_a_message_to_the_outside_sink(lab):
    fate = lab.send("client", "someone@example.net")
    assert fate.status == "at-sink"


def test_send_follows_an_unknown_recipient_to_its_bounce(lab):
    fate = lab.send("internet", "nosuchuser@example.com", mail_from="friend@example.net")
    assert fate.status == "bounced"
    assert "5.1.1" in fate.bounce and "nosuchuser@example.com" in fate.bounce


def test_send_reports_a_refusal_with_the_reply(lab):
    fate = lab.send("internet", "jo@example.com", mail_from="spammer")
    assert fate.status == "refused"
    assert (fate.reply.code, fate.reply.enhanced) == (553, "5.5.4")


def test_send_finds_a_message_left_in_a_queue(lab):
    stop_server_postfix(lab)
    try:
        fate = lab.send("internet", "averell@example.com", wait=2)
        assert fate.status == "queued" and fate.where.startswith("queue on relay")
    finally:
        lab.run("server", ["systemctl", "start", "postfix"]).check()
        lab.run("relay", ["sendmail", "-q"]).check()


def test_recipient_limit_probe_finds_postfix_default_and_none_on_baseline_relay(lab):
    server = lab.recipient_limit("client", "server", most=1010)
    assert server.count == 1000
    assert (server.reply.code, server.reply.enhanced) == (452, "4.5.3")
    relay = lab.recipient_limit("internet", "relay", most=120)
    assert relay.reply is None and relay.count == 120


def test_declared_size_probe_sees_limits(lab):
    advertised, reply = lab.declared_size("client", "server", size=20_000_000)
    assert advertised == "10240000" and (reply.code, reply.enhanced) == (552, "5.3.4")
    advertised, reply = lab.declared_size("internet", "relay", size=50_000_000)
    assert advertised == "" and reply.code == 250  # no MaxMessageSize on the baseline


def test_mail_without_helo_is_accepted_by_the_baseline_relay(lab):
    assert lab.mail_without_helo("internet", "relay").code == 250
