"""Sections 04 (relay control) and 08 (privacy): the checks on partly right and overdone
configurations, when they cannot observe, beside the admin's own tools (nmap), and through
their faces (labkit check, lab.check in a notebook)."""

import json

import pytest

from labkit import checks
from labkit.checks import Status
from labkit.cli import main
from labkit.course.hardening import relay_access_map
from labkit.mta import Sendmail
from tests.lab.checktools import nmap, run, statuses

pytestmark = pytest.mark.lab




# --- partly right, another correct means, overdone ------------------------------------

def test_vrfy_check_passes_but_expn_check_fails_when_only_novrfy_is_set(state):
    state.set()
    state.changed()
    Sendmail(state.lab.engine).change(lambda mc: mc.set_define("confPRIVACY_FLAGS", "novrfy"))
    report = run(state.lab, "privacy.vrfy_disabled", "privacy.expn_disabled",
                 "privacy.etrn_disabled")
    assert statuses(report) == {"privacy.vrfy_disabled": "passed",
                                "privacy.expn_disabled": "failed",
                                "privacy.etrn_disabled": "failed"}
    assert "250" in report["privacy.expn_disabled"].summary


def test_vrfy_expn_and_verb_checks_pass_when_goaway_set(state):
    state.set()
    state.changed()
    Sendmail(state.lab.engine).change(lambda mc: mc.set_define("confPRIVACY_FLAGS", "goaway"))
    report = run(state.lab, "privacy.vrfy_disabled", "privacy.expn_disabled",
                 "privacy.verb_disabled", "privacy.dsn_not_offered", "privacy.mailq_restricted")
    assert statuses(report) == {"privacy.vrfy_disabled": "passed",
                                "privacy.expn_disabled": "passed",
                                "privacy.verb_disabled": "passed",
                                "privacy.dsn_not_offered": "failed",  # goaway lacks noreceipts
                                "privacy.mailq_restricted": "failed"}  # but not restrictmailq


def test_a_greeting_of_the_learners_own_wording_passes(state):
    state.set()
    state.changed()
    Sendmail(state.lab.engine).change(
        lambda mc: mc.set_define("confSMTP_LOGIN_MSG", "$j ESMTP ready; $b"))
    assert run(state.lab, "privacy.greeting_anonymous").results[0].passed
    assert not run(state.lab, "privacy.help_anonymous").results[0].passed


def test_relay_closed_to_everyone_passes_outside_but_fails_the_inside_guard(state):
    state.set("04")
    state.changed()
    lan_prefix = "Connect:192.168.57\tRELAY"
    access = relay_access_map(state.lab.engine)
    assert lan_prefix in access
    # Dropping the LAN's RELAY line is not enough: relay-domains also lets clients whose
    # names are in example.com relay (FEATURE(relay_hosts_only) would stop that).
    Sendmail(state.lab.engine).set_map("access", access.replace(
        lan_prefix, "Connect:192.168.57\tERROR:5.7.1:550 Relaying denied for the LAN"))
    report = run(state.lab, "relay.closed_from_outside", "relay.open_from_inside")
    assert statuses(report) == {"relay.closed_from_outside": "passed",
                                "relay.open_from_inside": "failed"}
    assert "5.7.1" in report["relay.open_from_inside"].summary


def test_recipient_validation_that_forgets_postmaster_fails_the_guard(state):
    state.set("04")
    state.changed()
    access = "\n".join(ln for ln in relay_access_map(state.lab.engine).splitlines()
                       if not ln.startswith(("To:postmaster@", "To:abuse@")))
    Sendmail(state.lab.engine).set_map("access", access + "\n")
    report = run(state.lab, "relay.unknown_recipient_refused", "relay.known_recipients_accepted")
    assert statuses(report) == {"relay.unknown_recipient_refused": "passed",
                                "relay.known_recipients_accepted": "failed"}
    assert "postmaster@example.com -> 550 5.1.1" in report["relay.known_recipients_accepted"].summary


def test_relay_matrix_check_names_the_tricks_that_leaked_on_the_baseline(state):
    state.set()
    result = run(state.lab, "relay.closed_from_outside").results[0]
    assert result.status is Status.FAILED
    assert "reached the outside sink" in result.summary and "plain stranger to stranger" in result.summary
    assert "LEAKED" in result.evidence


# --- could not observe -----------------------------------------------------------------

def test_checks_give_error_not_a_verdict_when_sendmail_is_down(state):
    state.set()
    state.changed()
    lab = state.lab
    lab.run("relay", "systemctl stop sendmail").check()
    # (the local user's checks run mailq and sendmail -q, which need no daemon)
    local = ("privacy.mailq_restricted", "privacy.queue_run_restricted",
             "privacy.expand_restricted", "privacy.authwarnings")
    try:
        report = checks.run_checks(lab, [c for c in checks.for_section("04")
                                         + checks.for_section("08") if c.id not in local])
    finally:
        lab.run("relay", "systemctl start sendmail").check()
    assert {r.status for r in report.results} == {Status.ERROR}, report.table()
    assert all("could not observe" in r.summary for r in report.results)
    assert report.exit_code == 2


# --- beside the admin's own tools -------------------------------------------------------


@pytest.mark.parametrize("hardened", [False, True], ids=["baseline", "hardened"])
def test_privacy_checks_agree_with_nmap(state, hardened):
    state.set(*(["08"] if hardened else []))
    lab = state.lab
    commands = nmap(lab, "internet", "relay", "smtp-commands")
    vrfy = nmap(lab, "internet", "relay", "smtp-enum-users", "smtp-enum-users.methods={VRFY}")
    expn = nmap(lab, "internet", "relay", "smtp-enum-users", "smtp-enum-users.methods={EXPN}")
    report = run(lab, "privacy.help_anonymous", "privacy.vrfy_disabled", "privacy.expn_disabled",
                 "privacy.dsn_not_offered")
    assert ("8.17.1.9" in commands) is not report["privacy.help_anonymous"].passed, commands
    assert ("root" in vrfy.split("smtp-enum-users:")[1]) is not \
        report["privacy.vrfy_disabled"].passed, vrfy
    assert ("root" in expn.split("smtp-enum-users:")[1]) is not \
        report["privacy.expn_disabled"].passed, expn
    assert (", DSN," in commands) is not report["privacy.dsn_not_offered"].passed, commands


@pytest.mark.parametrize("hardened", [False, True], ids=["baseline", "hardened"])
def test_relay_check_agrees_with_nmap_open_relay(state, hardened):
    state.set(*(["04"] if hardened else []))
    out = nmap(state.lab, "internet", "relay", "smtp-open-relay",
               "smtp-open-relay.to=victim,smtp-open-relay.domain=example.net")
    result = run(state.lab, "relay.closed_from_outside").results[0]
    nmap_says_open = "Server is an open relay" in out
    assert nmap_says_open is not result.passed, out + "\n" + result.summary
    assert nmap_says_open is not hardened


# --- faces -------------------------------------------------------------------------------

def test_lab_check_in_a_notebook_raises_with_the_hint_on_failure(state, capsys):
    state.set()
    with pytest.raises(AssertionError, match=r"(?s)FAILED privacy.vrfy_disabled.*novrfy"):
        state.lab.check("privacy.vrfy_disabled")
    assert "FAILED privacy.vrfy_disabled" in capsys.readouterr().out  # shown as text here


def test_lab_checks_of_a_hardened_section_pass_and_return_the_report(state):
    state.set("08")
    report = state.lab.checks("08", show=False)
    assert report.all_passed and len(report.results) == len(checks.for_section("08"))
    assert state.lab.check("privacy.vrfy_disabled", show=False).passed


def test_labkit_check_command_gives_a_table_junit_and_json(state, tmp_path, capsys):
    state.set()
    junit = tmp_path / "checks.xml"
    code = main(["check", "--lab", state.lab.name, "--section", "08", "--junit", str(junit)])
    out = capsys.readouterr().out
    assert code == 1
    assert "privacy.vrfy_disabled" in out and "FAIL" in out and "what to do:" in out
    assert '<failure message="VRFY confirms users: 250' in junit.read_text()
    assert main(["check", "--lab", state.lab.name, "--json", "privacy.vrfy_disabled"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["results"][0]["status"] == "failed" and "VRFY root" in data["results"][0]["evidence"]


# --- a check right after an apply ---------------------------------------------------------

def test_a_check_right_after_an_apply_sees_the_new_configuration(state):
    """Each apply returns only once the MTA serves the new configuration (Sendmail's
    SIGHUP, Postfix's reload), so a check made at once never sees the old one."""
    from labkit.mta import Postfix
    state.set()
    state.changed()
    sm, pf = Sendmail(state.lab.engine), Postfix(state.lab.engine, "mx2")
    for i in range(3):
        quiet = i % 2 == 0
        sm.change(lambda mc, quiet=quiet: mc.set_define(
            "confSMTP_LOGIN_MSG", "$j ESMTP; $b" if quiet else "$j Sendmail $v/$Z; $b"))
        pf.set(smtpd_banner="$myhostname ESMTP" if quiet else "$myhostname ESMTP $mail_name")
        report = run(state.lab, "privacy.greeting_anonymous", "postfix.banner_anonymous")
        expected = "passed" if quiet else "failed"
        assert set(statuses(report).values()) == {expected}, report.table(verbose=True)


def test_mailq_check_fails_on_the_baseline_with_messages_in_the_queue(state):
    """A message being written has a control file the user may not read: mailq then says
    "Permission denied" for that file while listing the rest, which is no refusal."""
    state.set()
    state.changed()
    lab = state.lab
    lab.run("relay", "echo 'Subject: queued' | sendmail -Am -odq -oi someone@example.net && "
                     "chmod 0600 /var/spool/mqueue/qf*").check()
    try:
        result = run(lab, "privacy.mailq_restricted").results[0]
    finally:
        lab.run("relay", "rm -f /var/spool/mqueue/[dq]f*")
    assert result.status is Status.FAILED, result
    assert "Permission denied" in result.evidence
