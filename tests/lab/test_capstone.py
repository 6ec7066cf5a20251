"""The capstone's commands against a running lab: its start state is the baseline,
``labkit break`` injects a fault (named, or picked per learner from a seed) and the
instructor's view shows who got which and whether it is fixed, ``labkit finish`` puts the
lab back to its baseline and says what it removed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from labkit import checks
from labkit.checks import Status
from labkit.course import faults
from labkit.course.finish import config_changes
from labkit.course.hardening import MTA_HOSTS, start_state
from labkit.mta import Sendmail, snapshot_save

pytestmark = pytest.mark.lab


def labkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit.cli", *args], capture_output=True,
                          text=True, timeout=300)


def test_capstone_starts_from_the_baseline(lab, state):
    state.through("08")
    results = start_state(lab.engine, "11")
    state.changed()
    assert results == []
    for host in MTA_HOSTS:
        assert config_changes(lab.engine, host) == [], host


def test_finish_lists_what_it_removed_and_leaves_the_baseline(lab, state):
    state.through("01")
    snapshot_save(lab.engine, "relay", "before-finish")
    state.changed()
    done = lab.finish()
    relay = done.changes["relay"]
    assert "changed /etc/mail/sendmail.mc" in relay and "changed /etc/mail/sendmail.cf" in relay
    assert "mode 0644 (was 0666) /etc/mail/access" in relay, relay
    assert done.snapshots["relay"] == ["before-finish"]
    assert done.changes["mx2"] == [] and done.changes["server"] == []
    text = done.text()
    assert "relay: " in text and "snapshots removed: before-finish" in text
    assert "mx2: already at its baseline" in text
    for host in MTA_HOSTS:
        assert config_changes(lab.engine, host) == [], host


def _seed_for(fault: str, lab: str) -> int:
    return next(s for s in range(10000) if faults.pick(s, lab).name == fault)


def test_break_picks_by_seed_and_the_instructor_sees_who_got_which(lab, state):
    state.through("08")
    seed = _seed_for("banner-version", lab.name)
    res = labkit("break", "--random", "--seed", str(seed), "--lab", lab.name)
    state.changed()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "a fault was injected" in res.stdout
    assert "banner-version" not in res.stdout  # the learner gets the ticket, not the cause
    assert faults.get("banner-version").ticket in res.stdout
    greeting = checks.run_checks(lab, [checks.get("privacy.greeting_anonymous")])
    assert greeting.results[0].status is Status.FAILED, greeting.results[0].line()
    res = labkit("break", "--assigned", "--verify", "--labs", lab.name)
    row = next(ln for ln in res.stdout.splitlines() if ln.startswith(lab.name))
    assert "banner-version" in row and str(seed) in row and "still broken" in row, res.stdout
    # the learner's own fix, by another means than the documented one
    Sendmail(lab.engine).change(lambda mc: mc.set_define("confSMTP_LOGIN_MSG", "$j ready; $b"))
    res = labkit("break", "--assigned", "--verify", "--labs", lab.name)
    assert "fixed" in next(ln for ln in res.stdout.splitlines() if ln.startswith(lab.name))
    res = labkit("finish", "--lab", lab.name)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "changed /etc/mail/sendmail.mc" in res.stdout
    assert "fault banner-version" in res.stdout and "removed" in res.stdout
    assert not [r for r in faults.records() if r.lab == lab.name]


def test_break_refuses_a_fault_whose_controls_are_not_in_place(lab, state):
    state.set()  # the baseline: the DNSBL is not used yet
    res = labkit("break", "dnsbl-zone-typo", "--lab", lab.name)
    assert res.returncode == 1
    assert "not hardened yet" in res.stderr and "rbl.listed_client_refused failed" in res.stderr
    assert "labkit break --hardened" in res.stderr
    assert config_changes(lab.engine, "relay") == []
    assert not [r for r in faults.records() if r.lab == lab.name]
