"""Sections 06 (SMTP AUTH) and 07 (STARTTLS): the checks on partly right, overdone and
broken configurations, another correct means, when they cannot observe, and beside the
admin's own tools (swaks, openssl s_client) run in internet's network namespace.

Ordered so that lab states are shared: the baseline first, then the hardened state of
06, then of 07 (06's plus one section); changes made on top of a state are undone in
place (cheaper than a reset) or declared with state.changed()."""

import subprocess
from contextlib import contextmanager

import pytest

from labkit import checks, pki
from labkit.checks import Status
from labkit.course.hardening import harden_starttls
from labkit.mta import Sendmail
from tests.lab.checktools import run, statuses

pytestmark = pytest.mark.lab

FILE_CHECKS = ("sasl.sasldb_private", "tls.key_private")  # read the host: no daemon needed




@contextmanager
def mc_changed(state, edit):
    """sendmail.mc edited for the block, then put back as it was (one apply each way)."""
    sm = Sendmail(state.lab.engine)
    saved = state.lab.read_file("relay", "/etc/mail/sendmail.mc")
    try:
        sm.change(edit)
        yield
    finally:
        if not sm.apply_mc(saved, check=False).ok:
            state.changed()


# --- the admin's tools, in internet's network namespace ----------------------------------

def in_internet(lab, argv, input=None, timeout=60):
    ns = ["ip", "netns", "exec", lab.engine.netns("internet")]
    return subprocess.run(ns + argv, input=input, capture_output=True, text=True, timeout=timeout)


def relay_address(lab):
    return str(lab.topology.address_for("relay", "internet"))


def openssl_verifies(lab) -> tuple[bool, str]:
    """openssl s_client's verdict on the relay's certificate, against the lab CA file."""
    res = in_internet(lab, ["openssl", "s_client", "-starttls", "smtp",
                            "-connect", f"{relay_address(lab)}:25",
                            "-CAfile", str(pki.LabCA().cert_path), "-verify_return_error",
                            "-servername", "relay.example.com",
                            "-verify_hostname", "relay.example.com", "-brief"],
                      input="QUIT\r\n", timeout=30)
    out = res.stdout + res.stderr
    return res.returncode == 0 and "Verification: OK" in out, out


def swaks(lab, *args) -> str:
    res = in_internet(lab, ["swaks", "--server", relay_address(lab), "--ehlo",
                            "internet.example.net", *args])
    return res.stdout + res.stderr


def swaks_plain_in_clear(lab) -> str:
    return swaks(lab, "--auth", "PLAIN", "--auth-user", "jo", "--auth-password",
                 str(lab.topology.mail["password"]), "--quit-after", "AUTH")


def swaks_relay_after_cram_md5(lab) -> str:
    return swaks(lab, "--auth", "CRAM-MD5", "--auth-user", "jo", "--auth-password",
                 str(lab.topology.mail["password"]), "--from", "jo@example.com",
                 "--to", "someone@example.net")


def swaks_submission(lab, *auth) -> str:
    """swaks on the submission port: a message for jo, then for the outside after AUTH."""
    return swaks(lab, "--port", "587", "--from", "jo@example.com", "--quit-after", "RCPT",
                 *auth)


def swaks_submission_after_login(lab) -> str:
    return swaks_submission(lab, "--to", "someone@example.net", "--auth", "CRAM-MD5",
                            "--auth-user", "jo", "--auth-password",
                            str(lab.topology.mail["password"]))


def openssl_smtps(lab) -> tuple[bool, str]:
    """openssl s_client's verdict on port 465 (TLS from the first byte), against the lab CA."""
    res = in_internet(lab, ["openssl", "s_client", "-connect", f"{relay_address(lab)}:465",
                            "-CAfile", str(pki.LabCA().cert_path), "-verify_return_error",
                            "-servername", "relay.example.com",
                            "-verify_hostname", "relay.example.com", "-brief", "-ign_eof"],
                      input="QUIT\r\n", timeout=30)  # -ign_eof: until the server's 221
    out = res.stdout + res.stderr
    return res.returncode == 0 and "Verification: OK" in out and "220 " in out, out


@contextmanager
def access_changed(state, add: str = "", drop: str = ""):
    """The relay's access map with a line added (and lines containing ``drop`` removed)
    for the block, then put back."""
    sm = Sendmail(state.lab.engine)
    saved = state.lab.read_file("relay", "/etc/mail/access")
    lines = [ln for ln in saved.splitlines() if not (drop and drop in ln)]
    try:
        sm.set_map("access", "\n".join(lines + ([add] if add else [])) + "\n")
        yield
    finally:
        if not sm.set_map("access", saved).ok:
            state.changed()


# --- the baseline -------------------------------------------------------------------------

def test_plaintext_auth_check_agrees_with_swaks_on_the_baseline(state):
    state.set()
    out = swaks_plain_in_clear(state.lab)
    report = run(state.lab, "sasl.no_plaintext_in_clear", "sasl.authenticated_relay")
    assert "235 2.0.0 OK Authenticated" in out, out  # swaks logs in with PLAIN, in clear
    assert report["sasl.no_plaintext_in_clear"].status is Status.FAILED
    assert "235" in report["sasl.no_plaintext_in_clear"].summary
    relayed = swaks_relay_after_cram_md5(state.lab)
    assert "Message accepted for delivery" in relayed, relayed
    assert report["sasl.authenticated_relay"].passed


def test_certificate_check_agrees_with_openssl_on_the_baseline(state):
    state.set()
    ok, out = openssl_verifies(state.lab)
    report = run(state.lab, "tls.offered", "tls.certificate_verified")
    assert not ok and "STARTTLS" in out, out  # "Didn't find STARTTLS in server response"
    assert statuses(report) == {"tls.offered": "failed", "tls.certificate_verified": "failed"}


def test_sasldb_check_fails_on_the_baseline_database_readable_by_all(state):
    state.set()
    result = run(state.lab, "sasl.sasldb_private").results[0]
    assert result.status is Status.FAILED, result
    assert "readable by the unprivileged user jo" in result.summary
    assert "-rw-r--r--" in result.evidence


def test_a_guessable_password_fails_the_wrong_password_guard(state):
    state.set()
    state.changed()
    Sendmail(state.lab.engine).sasl_user("jack", "jack")
    result = run(state.lab, "sasl.wrong_password_refused").results[0]
    assert result.status is Status.FAILED, result
    assert "jack with the user name as password" in result.summary
    assert str(state.lab.topology.mail["password"]) not in result.evidence  # masked


def test_submission_check_agrees_with_swaks_on_the_baseline(state):
    state.set()
    out = swaks_submission(state.lab, "--to", "jo@example.com")
    result = run(state.lab, "sasl.submission_requires_auth").results[0]
    assert "250 2.1.5" in out, out  # the baseline's 587 (M=E) takes mail from anyone
    assert result.status is Status.FAILED, result
    assert "never logged in" in result.summary


def test_smtps_check_agrees_with_openssl_on_the_baseline(state):
    state.set()
    ok, out = openssl_smtps(state.lab)
    result = run(state.lab, "tls.smtps").results[0]
    assert not ok and ("Connection refused" in out or "connect:errno" in out), out
    assert result.status is Status.FAILED, result
    assert "port 465" in result.summary


def test_relay_hands_mail_to_a_stand_in_server_on_the_baseline(state):
    state.set()
    lab = state.lab
    with lab.impostor_server() as impostor:
        fate = lab.send("internet", "jack@example.com", subject="to a stand-in", wait=4)
        taken = impostor.messages()
    assert fate.status == "unknown", fate  # at the stand-in, not in any mailbox of the lab
    assert [m["rcpt_tos"] for m in taken] == [["jack@example.com"]], taken
    assert taken[0]["tls"]  # over TLS, the self-signed certificate accepted
    result = run(lab, "tls.relay_verifies_server").results[0]
    assert result.status is Status.FAILED, result
    assert "stand-in" in result.summary and "self-signed" in result.summary
    # The redirection is gone: mail reaches the real server again.
    assert lab.send("internet", "jack@example.com").status == "delivered"
    assert "labkit_impostor" not in lab.run("relay", "nft list tables").stdout


# --- the hardened state of 06 (no certificate yet) ------------------------------------------

def test_sasl_checks_agree_with_swaks_when_hardened(state):
    state.through("06")
    out = swaks_plain_in_clear(state.lab)
    report = run(state.lab, "sasl.no_plaintext_in_clear", "sasl.authenticated_relay")
    assert "requested type not available" in out, out
    assert report["sasl.no_plaintext_in_clear"].passed
    assert "504 5.3.3" in report["sasl.no_plaintext_in_clear"].summary
    relayed = swaks_relay_after_cram_md5(state.lab)
    assert "Message accepted for delivery" in relayed, relayed
    assert report["sasl.authenticated_relay"].passed


def test_submission_check_agrees_with_swaks_when_hardened(state):
    state.through("06")
    anonymous = swaks_submission(state.lab, "--to", "jo@example.com")
    logged_in = swaks_submission_after_login(state.lab)
    result = run(state.lab, "sasl.submission_requires_auth").results[0]
    assert "530 5.7.0 Authentication required" in anonymous, anonymous
    assert "250 2.1.5" in logged_in, logged_in
    assert result.passed, result
    assert "530 5.7.0" in result.summary


def test_submission_port_listening_on_loopback_only_fails(state):
    """Debian's own default (Addr=127.0.0.1): no port 587 for roaming users at all."""
    state.through("06")
    with mc_changed(state, lambda mc: mc.set_daemon_options(
            "MSP-v4", "Family=inet, Name=MSP-v4, Port=submission, M=Ea, Addr=127.0.0.1")):
        result = run(state.lab, "sasl.submission_requires_auth").results[0]
    assert result.status is Status.FAILED, result
    assert "nothing answers on port 587" in result.summary


def test_auth_options_set_but_sasldb_left_readable_passes_auth_and_fails_sasldb(state):
    state.through("06")
    lab = state.lab
    lab.run("relay", "chmod 0644 /etc/sasldb2").check()
    try:
        report = run(lab, "sasl.no_plaintext_in_clear", "sasl.authenticated_relay",
                     "sasl.sasldb_private")
    finally:
        lab.run("relay", "chmod 0640 /etc/sasldb2").check()
    assert statuses(report) == {"sasl.no_plaintext_in_clear": "passed",
                                "sasl.authenticated_relay": "passed",
                                "sasl.sasldb_private": "failed"}
    assert "0644" in report["sasl.sasldb_private"].summary


def test_offering_only_challenge_mechanisms_passes_without_auth_options(state):
    # Another correct means: no AuthOptions p, but only CRAM-MD5 and DIGEST-MD5 offered.
    state.through("06")

    def edit(mc):
        mc.remove_define("confAUTH_OPTIONS")
        mc.set_define("confAUTH_MECHANISMS", "DIGEST-MD5 CRAM-MD5")
        mc.set_trust_auth_mech("DIGEST-MD5 CRAM-MD5")
    with mc_changed(state, edit):
        report = run(state.lab, "sasl.no_plaintext_in_clear", "sasl.wrong_password_refused",
                     "sasl.authenticated_relay")
    assert {r.status for r in report.results} == {Status.PASSED}, report.table()


def test_removing_auth_altogether_fails_the_relaying_guard(state):
    state.through("06")
    with mc_changed(state, lambda mc: mc.set_define("confAUTH_MECHANISMS", "")):
        report = run(state.lab, "sasl.no_plaintext_in_clear", "sasl.wrong_password_refused",
                     "sasl.authenticated_relay")
    assert statuses(report) == {"sasl.no_plaintext_in_clear": "passed",
                                "sasl.wrong_password_refused": "error",  # nothing to try
                                "sasl.authenticated_relay": "failed"}
    assert "no login possible" in report["sasl.authenticated_relay"].summary


# --- the hardened state of 07 ---------------------------------------------------------------

def test_certificate_check_agrees_with_openssl_when_hardened(state):
    state.through("07")
    ok, out = openssl_verifies(state.lab)
    report = run(state.lab, "tls.offered", "tls.certificate_verified")
    assert ok, out
    assert {r.status for r in report.results} == {Status.PASSED}, report.table()


def test_plain_is_offered_after_starttls_and_not_before(state):
    state.through("07")
    auth = state.lab.auth("internet", "relay")
    assert "PLAIN" not in auth.before_tls and "PLAIN" in (auth.after_tls or [])
    assert run(state.lab, "sasl.no_plaintext_in_clear").results[0].passed


def test_certificate_from_another_ca_passes_offered_and_fails_verification(state, tmp_path):
    state.through("07")
    lab = state.lab
    other = pki.LabCA(tmp_path / "other-ca")
    issued = pki.issue_for_host(other, lab.topology.host("relay"))
    sm = Sendmail(lab.engine)
    sm.install_tls(issued.cert_pem, issued.key_pem, pki.LabCA().cert_pem)
    try:
        sm.change(None)  # restart: Sendmail reads its certificate when it starts
        ok, out = openssl_verifies(lab)
        report = run(lab, "tls.offered", "tls.certificate_verified", "tls.key_private",
                     "tls.certificate_relay")
    finally:
        harden_starttls(lab.engine)  # a lab-CA certificate again
    assert not ok, out
    assert statuses(report) == {"tls.offered": "passed", "tls.certificate_verified": "failed",
                                "tls.key_private": "passed", "tls.certificate_relay": "passed"}
    assert "does not verify" in report["tls.certificate_verified"].summary


def test_key_left_readable_by_all_fails_the_key_check_only(state):
    state.through("07")
    lab = state.lab
    lab.run("relay", "chmod 0644 /etc/mail/tls/relay.key").check()
    try:
        report = run(lab, "tls.offered", "tls.key_private")
    finally:
        lab.run("relay", "chmod 0600 /etc/mail/tls/relay.key").check()
    assert statuses(report) == {"tls.offered": "passed", "tls.key_private": "failed"}
    assert "/etc/mail/tls/relay.key is 0644" in report["tls.key_private"].summary


def test_certificate_relay_check_agrees_with_openssl_presenting_a_certificate(state, tmp_path):
    state.through("07")
    lab = state.lab
    issued = pki.issue_for_host(pki.LabCA(), lab.topology.host("internet"))
    (tmp_path / "c.pem").write_text(issued.cert_pem)
    (tmp_path / "k.pem").write_text(issued.key_pem)
    dialogue = "MAIL FROM:<a@example.net>\r\nRCPT TO:<someone@example.net>\r\nQUIT\r\n"

    def rcpt_reply(*cert_args):
        res = in_internet(lab, ["openssl", "s_client", "-starttls", "smtp", "-quiet",
                                "-ign_eof", "-connect", f"{relay_address(lab)}:25",
                                *cert_args], input=dialogue, timeout=30)
        return next((ln for ln in res.stdout.splitlines() if "someone@example.net" in ln), "")
    with_cert = rcpt_reply("-cert", str(tmp_path / "c.pem"), "-key", str(tmp_path / "k.pem"))
    without = rcpt_reply()
    assert with_cert.startswith("250 2.1.5"), with_cert
    assert without.startswith("550 5.7.1"), without
    assert run(lab, "tls.certificate_relay").results[0].passed


def test_smtps_check_agrees_with_openssl_when_hardened(state):
    state.through("07")
    ok, out = openssl_smtps(state.lab)
    assert ok, out
    assert run(state.lab, "tls.smtps").results[0].passed


def test_tls_policy_without_a_server_certificate_holds_mail_and_fails(state):
    """The lesson's point: TLS_Srv VERIFY on the relay while the server has no certificate
    from the lab CA (the baseline's Postfix has none): mail for the server waits."""
    state.through("06")
    lab = state.lab
    state.changed()  # a held message stays in the relay's queue until the state is reset
    with access_changed(state, add="TLS_Srv:server.example.com\tVERIFY"):
        result = run(lab, "tls.relay_verifies_server").results[0]
    assert result.status is Status.FAILED, result
    assert "does not reach the internal server" in result.summary
    assert "queued" in result.summary


def test_tls_policy_by_recipient_domain_passes_too(state):
    """Another correct means: TLS_Rcpt: for the organisation's domain instead of TLS_Srv:."""
    state.through("07")
    with access_changed(state, add="TLS_Rcpt:example.com\tVERIFY", drop="TLS_Srv:"):
        result = run(state.lab, "tls.relay_verifies_server").results[0]
    assert result.passed, result
    assert "tls_rcpt" in result.evidence


def test_tls_policy_asking_only_for_encryption_fails(state):
    """ENCR:128 asks for encryption, not for a verified certificate: the stand-in gets mail."""
    state.through("07")
    with access_changed(state, add="TLS_Srv:server.example.com\tENCR:128", drop="TLS_Srv:"):
        result = run(state.lab, "tls.relay_verifies_server").results[0]
    assert result.status is Status.FAILED, result
    assert "(over TLS)" in result.summary


def test_checks_give_error_not_a_verdict_when_sendmail_is_down(state):
    state.through("07")
    lab = state.lab
    lab.run("relay", "systemctl stop sendmail").check()
    try:
        report = checks.run_checks(lab, [c for c in checks.for_section("06")
                                         + checks.for_section("07") if c.id not in FILE_CHECKS])
    finally:
        lab.run("relay", "systemctl start sendmail").check()
    assert {r.status for r in report.results} == {Status.ERROR}, report.table()
    assert all("could not observe" in r.summary for r in report.results)
