"""Sections 09 (Postfix on the server) and 10 (logging and forgery): the checks on partly
right, other correct and overdone configurations, when they cannot observe, and beside
the admin's own tools (nmap, swaks, openssl s_client), run from the LAN workstation."""

import tempfile

import pytest

from labkit import checks, pki
from labkit.checks import Status
from labkit.mta import Postfix, Sendmail
from tests.lab.checktools import in_netns, nmap, run, statuses
from tests.lab.conftest import wait_for

pytestmark = pytest.mark.lab

SECTION_09 = [c.id for c in checks.for_section("09") if c.id.startswith("postfix.")]






def swaks(lab, *args: str) -> str:
    """swaks on the client host, speaking to the server."""
    res = lab.run("client", ["swaks", "--server", lab.topology.host("server").fqdn, *args])
    return res.stdout + res.stderr


# The tests run in this order so lab states are shared: the baseline, the baseline
# changed, section 09 hardened, section 09 changed, relay sections 04 and 08 changed.

# --- beside the admin's own tools ----------------------------------------------------------

def nmap_agrees(lab) -> None:
    out = nmap(lab, "client", "server", "banner,smtp-commands")
    report = run(lab, "postfix.banner_anonymous", "postfix.vrfy_disabled")
    banner = next(ln for ln in out.splitlines() if "banner:" in ln)
    assert ("Postfix" in banner) is not report["postfix.banner_anonymous"].passed, out
    assert (", VRFY," in out) is not report["postfix.vrfy_disabled"].passed, out


def swaks_agrees(lab) -> None:
    unknown = swaks(lab, "--to", "jo@example.com", "--from", "someone@nosuch.example.net",
                    "--quit-after", "RCPT")
    spam = swaks(lab, "--to", "jo@example.com", "--from", "client-user@example.com",
                 "--header", "Subject: Win the lottery today")
    report = run(lab, "postfix.unknown_sender_domain_refused",
                 "postfix.header_checks_spam_subject")
    assert ("4.1.8" in unknown) is report["postfix.unknown_sender_domain_refused"].passed, unknown
    assert ("5.7.1" in spam) is report["postfix.header_checks_spam_subject"].passed, spam


def openssl_agrees(lab) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as ca:
        ca.write(pki.LabCA().cert_pem)
        ca.flush()
        out = in_netns(lab, "client", [
            "openssl", "s_client", "-starttls", "smtp", "-brief", "-CAfile", ca.name,
            "-verify_hostname", lab.topology.host("server").fqdn, "-verify_return_error",
            "-connect", f"{lab.topology.address_for('server', 'client')}:25"], input="QUIT\n")
    result = run(lab, "postfix.starttls_verified").results[0]
    assert ("Verification: OK" in out) is result.passed, out + "\n" + result.summary


TOOLS = {"nmap": nmap_agrees, "swaks": swaks_agrees, "openssl": openssl_agrees}


@pytest.mark.parametrize("tool", TOOLS)
def test_postfix_checks_agree_with_the_admins_tool_on_the_baseline(state, tool):
    state.set()
    TOOLS[tool](state.lab)
    assert not any(r.passed for r in run(state.lab, "postfix.banner_anonymous",
                                         "postfix.starttls_verified").results)


def test_vrfy_check_sees_what_nmap_smtp_enum_users_misses_on_the_baseline(state):
    # nmap counts Postfix's "252 2.0.0 root" as "not permitted"; but 252 for a real user
    # and 550 5.1.1 for an unknown one tell a stranger which users exist.
    state.set()
    out = nmap(state.lab, "client", "server", "smtp-enum-users",
               "smtp-enum-users.methods={VRFY}")
    result = run(state.lab, "postfix.vrfy_disabled").results[0]
    assert "Couldn't find any accounts" in out, out
    assert result.status is Status.FAILED
    assert "252 2.0.0 root" in result.summary and "550 5.1.1" in result.summary


# --- could not observe -------------------------------------------------------------------

def test_postfix_checks_give_error_not_a_verdict_when_postfix_is_stopped(state):
    state.set()
    lab = state.lab
    lab.run("server", "systemctl stop postfix").check()
    try:
        # smtpd children may serve a moment after the master is gone
        wait_for(lambda: not lab.run("server", "pgrep -x smtpd || ss -Hltn sport = :25 | "
                                               "grep -q .").ok, timeout=60,
                 what="Postfix to stop")
        # mynetworks is read from the effective configuration, which needs no daemon
        report = run(lab, *(i for i in SECTION_09 if i != "postfix.mynetworks_lan_only"))
        still_read = run(lab, "postfix.mynetworks_lan_only").results[0]
    finally:
        lab.run("server", "systemctl start postfix").check()
        state.changed()
    assert {r.status for r in report.results} == {Status.ERROR}, report.table()
    assert all("could not observe" in r.summary for r in report.results)
    assert still_read.status is Status.FAILED  # a verdict: the baseline's 192.168.0.0/16


def test_logging_checks_give_error_not_a_verdict_when_sendmail_is_stopped(state):
    state.set()
    lab = state.lab
    lab.run("relay", "systemctl stop sendmail").check()
    try:
        report = checks.run_checks(lab, checks.for_section("10"))
    finally:
        lab.run("relay", "systemctl start sendmail").check()
        state.changed()
    assert {r.status for r in report.results} == {Status.ERROR}, report.table()
    assert all("could not observe" in r.summary for r in report.results)


# --- partly right, another correct means, overdone (from the baseline) ----------------------

def test_banner_check_passes_but_vrfy_check_fails_when_only_the_banner_is_fixed(state):
    state.set()
    state.changed()
    Postfix(state.lab.engine).set(smtpd_banner="$myhostname ESMTP")
    report = run(state.lab, "postfix.banner_anonymous", "postfix.vrfy_disabled",
                 "postfix.helo_required")
    assert statuses(report) == {"postfix.banner_anonymous": "passed",
                                "postfix.vrfy_disabled": "failed",
                                "postfix.helo_required": "failed"}
    assert "220 server.example.com ESMTP" in report["postfix.banner_anonymous"].summary


def test_postfix_checks_pass_with_a_learners_own_restrictions_and_header_rule(state):
    # Another correct means: the sender rules in smtpd_recipient_restrictions instead of
    # smtpd_sender_restrictions, a banner and a header rule of the learner's own wording,
    # and mynetworks as a cidr: table.
    state.set()
    state.changed()
    pf = Postfix(state.lab.engine)
    pf.set(smtpd_banner="$myhostname ESMTP mail service ready",
           smtpd_recipient_restrictions="reject_non_fqdn_sender, reject_unknown_sender_domain, "
                                        "permit_mynetworks, reject_unauth_destination")
    pf.set_table("/etc/postfix/header_checks",
                 "/^Subject:.*[Ll]ottery/ REJECT we do not take part in lotteries\n",
                 kind="regexp", params={"header_checks": "regexp:/etc/postfix/header_checks"})
    pf.set_table("/etc/postfix/mynetworks.cidr", "127.0.0.0/8 trusted\n192.168.57.0/24 lan\n",
                 kind="cidr", params={"mynetworks": "cidr:/etc/postfix/mynetworks.cidr"})
    report = run(state.lab, "postfix.banner_anonymous", "postfix.non_fqdn_sender_refused",
                 "postfix.unknown_sender_domain_refused", "postfix.header_checks_spam_subject",
                 "postfix.mynetworks_lan_only", "postfix.lan_mail_goes_out")
    assert {r.status for r in report.results} == {Status.PASSED}, report.table()
    assert "lotteries" in report["postfix.header_checks_spam_subject"].summary
    assert "postmap -q 192.168.56.10 cidr:" in report["postfix.mynetworks_lan_only"].evidence


def test_mynetworks_check_fails_on_a_cidr_table_that_covers_the_outside(state):
    state.set()
    state.changed()
    Postfix(state.lab.engine).set_table(
        "/etc/postfix/mynetworks.cidr", "127.0.0.0/8 trusted\n192.168.0.0/16 private\n",
        kind="cidr", params={"mynetworks": "cidr:/etc/postfix/mynetworks.cidr"})
    result = run(state.lab, "postfix.mynetworks_lan_only").results[0]
    assert result.status is Status.FAILED, result.summary
    assert "192.168.56.10" in result.summary


def test_received_guard_fails_when_the_header_drops_the_client_address(state):
    state.set()
    state.changed()
    # "Anonymising" the from clause: only the HELO name, which the client chose itself.
    Sendmail(state.lab.engine).change(lambda mc: mc.set_define("_REC_HDR_", "$?sfrom $s $.$?_"))
    result = run(state.lab, "logs.received_names_client").results[0]
    assert result.status is Status.FAILED, result.summary
    assert "from mx.example.com" in result.evidence and "[192.168.56.10]" not in result.evidence


# --- section 09 hardened, then changed ------------------------------------------------------

@pytest.mark.parametrize("tool", TOOLS)
def test_postfix_checks_agree_with_the_admins_tool_when_hardened(state, tool):
    state.set("09")
    TOOLS[tool](state.lab)
    assert all(r.passed for r in run(state.lab, "postfix.banner_anonymous",
                                     "postfix.starttls_verified").results)


def test_overdone_mynetworks_fails_the_lan_guard_and_a_catch_all_header_rule_fails(state):
    state.set("09")
    state.changed()
    pf = Postfix(state.lab.engine)
    pf.set(mynetworks="127.0.0.0/8")
    pf.set_table("/etc/postfix/header_checks", "/^Subject:/ REJECT no mail today\n",
                 kind="regexp", params={"header_checks": "regexp:/etc/postfix/header_checks"})
    report = run(state.lab, "postfix.mynetworks_lan_only", "postfix.lan_mail_goes_out",
                 "postfix.header_checks_spam_subject")
    assert statuses(report) == {"postfix.mynetworks_lan_only": "passed",
                                "postfix.lan_mail_goes_out": "failed",
                                "postfix.header_checks_spam_subject": "failed"}, report.table()
    assert "Relay access denied" in report["postfix.lan_mail_goes_out"].summary
    assert "an ordinary message is refused too" in report["postfix.header_checks_spam_subject"].summary


def test_chroot_check_fails_when_smtpd_runs_outside_the_jail(state):
    state.set("09")
    state.changed()
    Postfix(state.lab.engine).set_service_field("smtp/inet", "chroot", "n")
    result = run(state.lab, "postfix.smtpd_chrooted").results[0]
    assert result.status is Status.FAILED, result.summary
    assert "readlink /proc/" in result.evidence and "real root (/)" in result.summary


# --- the relay closed (04) and quiet (08), then changed ---------------------------------------

def test_logging_checks_fail_when_loglevel_is_too_low_to_record_refusals(state):
    state.set("04", "08")
    report = checks.run_checks(state.lab, checks.for_section("10"))
    assert report.all_passed, report.table()
    state.changed()
    Sendmail(state.lab.engine).change(lambda mc: mc.set_define("confLOG_LEVEL", "1"))
    report = checks.run_checks(state.lab, checks.for_section("10"))
    assert statuses(report) == {"logs.refused_relay_logged": "failed",
                                "logs.expn_probe_logged": "failed",
                                "logs.received_names_client": "passed"}, report.table()
    assert "not in the relay's log" in report["logs.refused_relay_logged"].summary
