"""Sections 01 (privileges) and 02 (smrsh and mailers): the checks on partly right
configurations, on other correct means, when they cannot observe, and beside what a
local user and smrsh itself say."""

import pytest

from labkit.checks import Status
from labkit.mta import Sendmail
from tests.lab.checktools import run, statuses

pytestmark = pytest.mark.lab

SMRSH = "/usr/libexec/sendmail/smrsh"




# --- partly right, another correct means ------------------------------------------------

def test_run_as_user_set_but_queue_left_group_readable_gives_the_mixed_result(state):
    state.set()
    state.changed()
    # RunAsUser without the hand-over labkit.mta does: the queue keeps its baseline mode.
    Sendmail(state.lab.engine).change(lambda mc: mc.set_define("confRUN_AS_USER", "smmta:smmsp"))
    report = run(state.lab, "privileges.session_not_root", "privileges.queue_private",
                 "privileges.config_not_writable")
    assert statuses(report) == {"privileges.session_not_root": "passed",
                                "privileges.queue_private": "failed",
                                "privileges.config_not_writable": "failed"}
    assert "served by smmta" in report["privileges.session_not_root"].summary
    assert "2750" in report["privileges.queue_private"].summary
    assert "/etc/mail/access 0666" in report["privileges.config_not_writable"].summary


def test_safe_file_environment_alone_on_a_root_daemon_blocks_file_delivery(state):
    state.set()
    state.changed()
    lab = state.lab
    lab.run("relay", "install -d -m 0755 /var/lib/sendmail/safe").check()
    Sendmail(lab.engine).change(
        lambda mc: mc.set_define("confSAFE_FILE_ENV", "/var/lib/sendmail/safe"))
    report = run(lab, "smrsh.file_delivery_blocked", "smrsh.program_alias_blocked",
                 "privileges.session_not_root")
    assert statuses(report) == {"smrsh.file_delivery_blocked": "passed",
                                "smrsh.program_alias_blocked": "failed",
                                "privileges.session_not_root": "failed"}
    assert "bounced" in report["smrsh.file_delivery_blocked"].summary


def test_prog_mailer_disabled_with_bin_false_passes_the_program_checks(state):
    state.set("01")
    state.changed()
    lab = state.lab
    Sendmail(lab.engine).change(lambda mc: mc.set_define("LOCAL_SHELL_PATH", "/bin/false"))
    report = run(lab, "smrsh.prog_mailer_restricted", "smrsh.program_alias_blocked",
                 "smrsh.file_delivery_blocked")
    assert statuses(report) == {"smrsh.prog_mailer_restricted": "passed",
                                "smrsh.program_alias_blocked": "passed",
                                "smrsh.file_delivery_blocked": "failed"}  # files still written
    assert "P=/bin/false" in report["smrsh.prog_mailer_restricted"].summary
    assert "bounced" in report["smrsh.program_alias_blocked"].summary


def test_config_check_names_each_file_made_writable_again(state):
    state.set("01")
    state.changed()
    lab = state.lab
    assert run(lab, "privileges.config_not_writable").results[0].passed
    lab.run("relay", "chmod g+w /etc/mail/relay-domains && chmod o+w /etc/mail/smrsh "
                     "&& chmod 0666 /etc/aliases").check()
    result = run(lab, "privileges.config_not_writable").results[0]
    assert result.status is Status.FAILED
    assert "3 of" in result.summary
    for line in ("WRITABLE by group: 0664 root:smmsp /etc/mail/relay-domains",
                 "WRITABLE by others: 2757 smmta:smmsp /etc/mail/smrsh",
                 "WRITABLE by group and others: 0666 root:root /etc/aliases"):
        assert line in result.evidence


def test_queue_check_follows_the_queue_directory_of_sendmail_cf(state):
    state.set("01")
    state.changed()
    lab = state.lab
    lab.run("relay", "install -d -m 0750 -o smmta -g smmsp /var/spool/mqueue-moved").check()
    Sendmail(lab.engine).change(
        lambda mc: mc.set_define("QUEUE_DIR", "/var/spool/mqueue-moved"))
    result = run(lab, "privileges.queue_private").results[0]
    assert result.status is Status.FAILED, result.summary
    assert "/var/spool/mqueue-moved 0750" in result.summary


# --- the smrsh directory, beside smrsh itself --------------------------------------------

def smrsh_runs(lab, command: str) -> bool:
    """Whether smrsh, run as the prog mailer runs it, agrees to run ``command``."""
    res = lab.run("relay", ["su", "-s", "/bin/sh", "smmta", "-c", f"{SMRSH} -c '{command}'"])
    return "not available for sendmail programs" not in res.stdout + res.stderr


def test_smrsh_directory_check_agrees_with_smrsh_itself(state):
    state.through("02")
    lab = state.lab
    assert run(lab, "smrsh.prog_mailer_restricted").results[0].passed
    assert not smrsh_runs(lab, "procmail -v") and not smrsh_runs(lab, "dash -c true")
    state.changed()
    sm = Sendmail(lab.engine)
    sm.smrsh_link("/usr/bin/procmail")
    lab.run("relay", "ln -sf /bin/dash /etc/mail/smrsh/helper").check()
    assert smrsh_runs(lab, "procmail -v") and smrsh_runs(lab, "helper -c true")
    report = run(lab, "smrsh.prog_mailer_restricted", "smrsh.program_alias_blocked")
    assert statuses(report) == {"smrsh.prog_mailer_restricted": "failed",
                                "smrsh.program_alias_blocked": "passed"}  # logger: still refused
    summary = report["smrsh.prog_mailer_restricted"].summary
    assert "procmail -> /usr/bin/procmail" in summary and "helper -> /usr/bin/dash" in summary


# --- beside what a local user may do ---------------------------------------------------

@pytest.mark.parametrize("hardened", [False, True], ids=["baseline", "hardened"])
def test_config_check_agrees_with_what_the_local_user_may_write(state, hardened):
    state.set(*(["01"] if hardened else []))
    lab = state.lab
    res = lab.run("relay", ["su", "-s", "/bin/sh", "jo", "-c", 'for f in /etc/mail /etc/mail/* '
                            '/etc/mail/*/* /etc/aliases; do [ -w "$f" ] && echo "$f"; done; true'])
    writable = res.check().stdout.split()
    result = run(lab, "privileges.config_not_writable").results[0]
    assert bool(writable) is not result.passed, (writable, result.summary)
    assert ("/etc/mail/access" in writable) is not hardened


# --- could not observe -----------------------------------------------------------------

def test_smtp_checks_give_error_not_a_verdict_when_sendmail_is_down(state):
    state.through("02")
    lab = state.lab
    smtp = ("privileges.session_not_root", "smrsh.program_alias_blocked",
            "smrsh.file_delivery_blocked")
    on_host = ("privileges.queue_private", "privileges.config_not_writable",
               "smrsh.prog_mailer_restricted")
    lab.run("relay", "systemctl stop sendmail").check()
    try:
        report = run(lab, *smtp, *on_host)
    finally:
        lab.run("relay", "systemctl start sendmail").check()
        state.changed()
    for check_id in smtp:
        assert report[check_id].status is Status.ERROR, report[check_id]
        assert "could not observe" in report[check_id].summary
    for check_id in on_host:  # what the host's files show needs no daemon
        assert report[check_id].status is Status.PASSED, report[check_id]


# --- guards: privileges overdone --------------------------------------------------------------

def test_run_as_user_that_cannot_read_the_maps_fails_the_mail_guard(state):
    """mail:mail passes the session-user check, but cannot read access.db (0640
    smmta:smmsp): Sendmail answers every message 451 4.3.0."""
    state.set()
    state.changed()
    Sendmail(state.lab.engine).set_run_as_user("mail", "mail")
    report = run(state.lab, "privileges.session_not_root", "privileges.mail_still_accepted")
    assert statuses(report) == {"privileges.session_not_root": "passed",
                                "privileges.mail_still_accepted": "failed"}, report.table()
    assert "4.3.0" in report["privileges.mail_still_accepted"].summary


def test_an_msp_queue_closed_to_its_group_fails_the_submission_guard(state):
    state.set()
    state.changed()
    state.lab.run("relay", ["chmod", "2700", "/var/spool/mqueue-client"]).check()
    report = run(state.lab, "privileges.msp_queue_private", "privileges.local_submission_works")
    assert statuses(report) == {"privileges.msp_queue_private": "passed",
                                "privileges.local_submission_works": "failed"}, report.table()
