"""Sections 09 (Postfix in the DMZ: the backup MX, mx2) and 10 (logging and forgery): the
checks on partly right, other correct and overdone configurations, when they cannot
observe, and beside the admin's own tools (nmap, swaks, openssl s_client), run from the
outside world as a stranger would."""

import tempfile

import pytest

from labkit import checks, pki
from labkit.checks import Status
from labkit.mta import Postfix, Sendmail
from tests.lab.checktools import in_netns, nmap, run, statuses
from tests.lab.conftest import wait_for

pytestmark = pytest.mark.lab

SECTION_09 = [c.id for c in checks.for_section("09") if c.id.startswith("postfix.")]
#: Section 10's logging checks (its filter's are in test_checks_milter.py).
LOGGING = [c for c in checks.for_section("10") if c.id.startswith("logs.")]
MX = "mx2"


def mx(lab) -> Postfix:
    return Postfix(lab.engine, MX)






def swaks(lab, *args: str) -> str:
    """swaks on the internet host, speaking to the backup MX."""
    res = lab.run("internet", ["swaks", "--server", lab.topology.host(MX).fqdn,
                               "--helo", "internet.example.net", *args], timeout=60)
    return res.stdout + res.stderr


# The tests run in this order so lab states are shared: the baseline, the baseline
# changed, section 09 hardened, section 09 changed, relay sections 04 and 08 changed.

# --- beside the admin's own tools ----------------------------------------------------------

def nmap_agrees(lab) -> None:
    out = nmap(lab, "internet", MX, "banner,smtp-commands")
    report = run(lab, "postfix.banner_anonymous", "postfix.vrfy_disabled")
    banner = next(ln for ln in out.splitlines() if "banner:" in ln)
    assert ("Postfix" in banner) is not report["postfix.banner_anonymous"].passed, out
    assert (", VRFY," in out) is not report["postfix.vrfy_disabled"].passed, out


def swaks_agrees(lab) -> None:
    unknown = swaks(lab, "--to", "jo@example.com", "--from", "someone@nosuch.example.net",
                    "--quit-after", "RCPT")
    spam = swaks(lab, "--to", "jo@example.com", "--from", "someone@example.net",
                 "--header", "Subject: Win the lottery today")
    report = run(lab, "postfix.unknown_sender_domain_refused",
                 "postfix.header_checks_spam_subject")
    assert ("4.1.8" in unknown) is report["postfix.unknown_sender_domain_refused"].passed, unknown
    assert ("5.7.1" in spam) is report["postfix.header_checks_spam_subject"].passed, spam


def openssl_agrees(lab) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as ca:
        ca.write(pki.LabCA().cert_pem)
        ca.flush()
        out = in_netns(lab, "internet", [
            "openssl", "s_client", "-starttls", "smtp", "-brief", "-CAfile", ca.name,
            "-verify_hostname", lab.topology.host(MX).fqdn, "-verify_return_error",
            "-connect", f"{lab.topology.address_for(MX, 'internet')}:25"], input="QUIT\n")
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
    out = nmap(state.lab, "internet", MX, "smtp-enum-users",
               "smtp-enum-users.methods={VRFY}")
    result = run(state.lab, "postfix.vrfy_disabled").results[0]
    assert "Couldn't find any accounts" in out, out
    assert result.status is Status.FAILED
    assert "252 2.0.0 root" in result.summary and "550 5.1.1" in result.summary


# --- could not observe -------------------------------------------------------------------

def test_postfix_checks_give_error_not_a_verdict_when_postfix_is_stopped(state):
    state.set()
    lab = state.lab
    lab.run(MX, "systemctl stop postfix").check()
    try:
        # smtpd children may serve a moment after the master is gone
        wait_for(lambda: not lab.run(MX, "pgrep -x smtpd || ss -Hltn sport = :25 | "
                                         "grep -q .").ok, timeout=60,
                 what="Postfix to stop")
        report = run(lab, *SECTION_09)
    finally:
        lab.run(MX, "systemctl start postfix").check()
        state.changed()
    assert {r.status for r in report.results} == {Status.ERROR}, report.table()
    assert all("could not observe" in r.summary for r in report.results)


def test_logging_checks_give_error_not_a_verdict_when_sendmail_is_stopped(state):
    state.set()
    lab = state.lab
    lab.run("relay", "systemctl stop sendmail").check()
    try:
        report = checks.run_checks(lab, LOGGING)
    finally:
        lab.run("relay", "systemctl start sendmail").check()
        state.changed()
    assert {r.status for r in report.results} == {Status.ERROR}, report.table()
    assert all("could not observe" in r.summary for r in report.results)


# --- partly right, another correct means, overdone (from the baseline) ----------------------

def test_banner_check_passes_but_vrfy_check_fails_when_only_the_banner_is_fixed(state):
    state.set()
    state.changed()
    mx(state.lab).set(smtpd_banner="$myhostname ESMTP")
    report = run(state.lab, "postfix.banner_anonymous", "postfix.vrfy_disabled",
                 "postfix.helo_required")
    assert statuses(report) == {"postfix.banner_anonymous": "passed",
                                "postfix.vrfy_disabled": "failed",
                                "postfix.helo_required": "failed"}
    assert "220 mx2.example.com ESMTP" in report["postfix.banner_anonymous"].summary


def test_postfix_checks_pass_with_a_learners_own_restrictions_and_header_rule(state):
    # Another correct means: the sender rules in smtpd_recipient_restrictions instead of
    # smtpd_sender_restrictions, a banner and a header rule of the learner's own wording,
    # mynetworks as a cidr: table and the organisation's addresses as a regexp: table.
    state.set()
    state.changed()
    pf = mx(state.lab)
    pf.set(smtpd_banner="$myhostname ESMTP mail service ready",
           smtpd_recipient_restrictions="reject_non_fqdn_sender, reject_unknown_sender_domain, "
                                        "permit_mynetworks, reject_unauth_destination")
    pf.set_table("/etc/postfix/header_checks",
                 "/^Subject:.*[Ll]ottery/ REJECT we do not take part in lotteries\n",
                 kind="regexp", params={"header_checks": "regexp:/etc/postfix/header_checks"})
    pf.set_table("/etc/postfix/mynetworks.cidr", "127.0.0.0/8 trusted\n",
                 kind="cidr", params={"mynetworks": "cidr:/etc/postfix/mynetworks.cidr"})
    pf.set_table("/etc/postfix/recipients.regexp",
                 "/^(jo|jack|william|averell|postmaster|abuse|root)@example\\.com$/ OK\n",
                 kind="regexp",
                 params={"relay_recipient_maps": "regexp:/etc/postfix/recipients.regexp"})
    report = run(state.lab, "postfix.banner_anonymous", "postfix.non_fqdn_sender_refused",
                 "postfix.unknown_sender_domain_refused", "postfix.header_checks_spam_subject",
                 "postfix.closed_from_outside", "postfix.unknown_recipient_refused",
                 "postfix.org_mail_delivered")
    assert {r.status for r in report.results} == {Status.PASSED}, report.table()
    assert "lotteries" in report["postfix.header_checks_spam_subject"].summary


def test_relay_check_fails_on_a_cidr_mynetworks_that_covers_the_outside(state):
    state.set()
    state.changed()
    mx(state.lab).set_table(
        "/etc/postfix/mynetworks.cidr", "127.0.0.0/8 trusted\n192.168.0.0/16 private\n",
        kind="cidr", params={"mynetworks": "cidr:/etc/postfix/mynetworks.cidr"})
    result = run(state.lab, "postfix.closed_from_outside").results[0]
    assert result.status is Status.FAILED, result.summary
    assert "reached the outside sink" in result.summary


def test_recipient_check_fails_while_the_backup_mx_takes_any_address(state):
    """The baseline's backup MX takes mail for every address of the organisation: the
    server bounces the unknown ones later, to senders that may be forged."""
    state.set()
    result = run(state.lab, "postfix.unknown_recipient_refused").results[0]
    assert result.status is Status.FAILED, result.summary
    assert "accepted" in result.summary
    bounced = state.lab.send("internet", "nosuch@example.com", target="mx2")
    assert bounced.status in ("bounced", "at-sink"), bounced  # the backscatter


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


def test_overdone_relay_domains_fails_the_mail_guard_and_a_catch_all_header_rule_fails(state):
    state.set("09")
    state.changed()
    pf = mx(state.lab)
    pf.set(relay_domains="")
    pf.set_table("/etc/postfix/header_checks", "/^Subject:/ REJECT no mail today\n",
                 kind="regexp", params={"header_checks": "regexp:/etc/postfix/header_checks"})
    report = run(state.lab, "postfix.closed_from_outside", "postfix.org_mail_delivered",
                 "postfix.header_checks_spam_subject")
    assert statuses(report) == {"postfix.closed_from_outside": "passed",
                                "postfix.org_mail_delivered": "failed",
                                "postfix.header_checks_spam_subject": "error"}, report.table()
    assert "Relay access denied" in report["postfix.org_mail_delivered"].summary


def test_a_catch_all_header_rule_fails_the_header_check(state):
    state.set("09")
    state.changed()
    mx(state.lab).set_table("/etc/postfix/header_checks", "/^Subject:/ REJECT no mail today\n",
                            kind="regexp",
                            params={"header_checks": "regexp:/etc/postfix/header_checks"})
    result = run(state.lab, "postfix.header_checks_spam_subject").results[0]
    assert result.status is Status.FAILED, result.summary
    assert "an ordinary message is refused too" in result.summary


def test_chroot_check_fails_when_smtpd_runs_outside_the_jail(state):
    state.set("09")
    state.changed()
    mx(state.lab).set_service_field("smtp/inet", "chroot", "n")
    result = run(state.lab, "postfix.smtpd_chrooted").results[0]
    assert result.status is Status.FAILED, result.summary
    assert "readlink /proc/" in result.evidence and "real root (/)" in result.summary


# --- the relay closed (04) and quiet (08), then changed ---------------------------------------

def test_logging_checks_fail_when_loglevel_is_too_low_to_record_refusals(state):
    state.set("04", "08")
    report = checks.run_checks(state.lab, LOGGING)
    assert report.all_passed, report.table()
    state.changed()
    Sendmail(state.lab.engine).change(lambda mc: mc.set_define("confLOG_LEVEL", "1"))
    report = checks.run_checks(state.lab, LOGGING)
    assert statuses(report) == {"logs.refused_relay_logged": "failed",
                                "logs.expn_probe_logged": "failed",
                                "logs.received_names_client": "passed"}, report.table()
    assert "not in the relay's log" in report["logs.refused_relay_logged"].summary
