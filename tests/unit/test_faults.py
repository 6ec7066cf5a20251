"""The capstone's fault catalogue, the record of who got which, and finish's comparison
with the baseline, without a lab (the faults themselves are proven on real labs in
tests/lab/test_faults.py)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from labkit import checks, topology
from labkit.course import faults, finish
from labkit.course.hardening import MTA_HOSTS
from labkit.engines.base import RunResult


def labkit(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit.cli", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_every_fault_names_registered_checks_and_an_mta_host():
    names = [f.name for f in faults.catalogue()]
    assert len(names) == len(set(names)) >= 15
    for f in faults.catalogue():
        assert f.catches, f.name
        for check_id in f.catches:
            checks.get(check_id)  # raises if there is no such check
        assert f.host in MTA_HOSTS
        assert f.ticket and f.cause and f.fix and f.title


def test_a_fault_only_guards_catch_needs_a_control_in_place_first():
    """Guards pass on the baseline too: such a fault names the control it strikes, so it is
    not 'injected' into a lab where it changes nothing."""
    for f in faults.catalogue():
        if all(checks.get(c).guard for c in f.catches):
            assert f.requires and not any(checks.get(c).guard for c in f.requires), f.name


def test_the_capstone_notebook_is_graded_on_the_capstone_assignment():
    from labkit.checks.grading import Assignment, section_assignment
    from labkit.topology import REPO_DIR
    graded = section_assignment("11")
    assert graded.weights == Assignment.load(REPO_DIR / "assignments/capstone.yaml").weights
    assert set(graded.weights) == {c.id for c in checks.all_checks()}
    assert graded.weights["capstone.every_user_reachable"] > 1


def test_a_ticket_does_not_name_its_fault():
    for f in faults.catalogue():
        assert f.name not in f.ticket
        assert not any(c in f.ticket for c in f.catches)


def test_a_fault_shows_only_its_ticket():
    f = faults.get("dnsbl-zone-typo")
    assert f.ticket in repr(f) and f.cause not in repr(f) and f.name not in repr(f)
    assert f.ticket in f._repr_html_() and f.name not in f._repr_html_()
    assert f.cause in f.explain() and f.fix in f.explain()


def test_unknown_fault_lists_the_catalogue():
    with pytest.raises(faults.FaultError, match="partner-relay"):
        faults.get("nosuch")


def test_a_seed_gives_each_learner_the_same_fault_every_time():
    learners = [f"learner{i:02d}" for i in range(12)]
    first = [faults.pick(7, n).name for n in learners]
    assert first == [faults.pick(7, n).name for n in learners]
    assert len(set(first)) >= 6  # a class with one seed gets various faults
    assert [faults.pick(8, n).name for n in learners] != first


@dataclass
class FakeEngine:
    kind: str = "local"
    done: list = field(default_factory=list)
    topology: object = None


@dataclass
class FakeLab:
    name: str
    engine: FakeEngine


def test_records_say_who_got_which_and_are_private(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_FAULTS", str(tmp_path / "faults"))
    done: list[str] = []
    fault = faults.Fault("test-fault", "relay", "t", "ticket", "cause", "fix",
                         ("privacy.vrfy_disabled",), lambda e: done.append("in"),
                         lambda e: done.append("out"))
    alice, bob = FakeLab("alice", FakeEngine()), FakeLab("bob", FakeEngine())
    faults.inject(alice, fault, seed=3, require_passing=False)
    faults.inject(bob, fault, require_passing=False)
    assert done == ["in", "in"]
    recs = {r.lab: r for r in faults.records()}
    assert recs["alice"].fault == "test-fault" and recs["alice"].seed == 3
    assert recs["bob"].seed is None and recs["bob"].engine == "local"
    for path in (tmp_path / "faults").iterdir():
        assert path.stat().st_mode & 0o777 == 0o600
    faults.repair(alice, fault)
    assert done[-1] == "out" and [r.lab for r in faults.records()] == ["bob"]
    assert [r.fault for r in faults.forget(bob)] == ["test-fault"]
    assert faults.records() == []


def test_break_lists_the_catalogue_with_the_checks_that_catch_each():
    res = labkit("break", "--list")
    assert res.returncode == 0
    for f in faults.catalogue():
        assert f.name in res.stdout and f.catches[0] in res.stdout


def test_break_explains_a_fault_for_the_instructor():
    res = labkit("break", "--explain", "mx2-vrfy-typo")
    assert res.returncode == 0 and "disable_vrfy_comand" in res.stdout and "fix:" in res.stdout


@pytest.mark.parametrize("args, message", [
    ((), "name a fault"),
    (("--random",), "--random needs --seed N"),
    (("nosuch",), "no fault 'nosuch'"),
])
def test_break_says_what_is_missing(args, message):
    res = labkit("break", "--lab", "nosuchlab", *args)
    assert res.returncode == 1 and message in res.stderr


def test_the_instructor_view_of_a_machine_with_no_faults(tmp_path):
    import os
    env = {**os.environ, "LABKIT_FAULTS": str(tmp_path)}
    res = labkit("break", "--assigned", env=env)
    assert res.returncode == 0 and "no faults injected" in res.stdout


class WalkEngine:
    """Answers finish's walk of the baseline and the live files with a canned listing."""

    def __init__(self, listing: str) -> None:
        self.listing = listing
        self.topology = topology.load()

    def run(self, host, argv, input=None, timeout=60):  # noqa: ARG002
        return RunResult(host, argv, 0, self.listing, "")


def test_finish_names_each_kind_of_change():
    listing = "\n".join([
        "== base",
        "E\tetc/mail\td\t755\troot:root\t",
        "E\tetc/mail/access\tf\t666\troot:root\t", "M\taaaa\tetc/mail/access",
        "E\tetc/mail/sendmail.mc\tf\t644\troot:root\t", "M\tbbbb\tetc/mail/sendmail.mc",
        "E\tetc/mail/smrsh/procmail\tl\t777\troot:root\t/usr/bin/procmail",
        "E\tetc/sasldb2\tf\t640\troot:sasl\t", "M\tcccc\tetc/sasldb2",
        "== live",
        "E\tetc/mail\td\t755\troot:root\t",
        "E\tetc/mail/access\tf\t644\troot:root\t", "M\taaaa\tetc/mail/access",
        "E\tetc/mail/sendmail.mc\tf\t644\troot:root\t", "M\tdddd\tetc/mail/sendmail.mc",
        "E\tetc/mail/tls/relay.key\tf\t600\tsmmta:root\t", "M\teeee\tetc/mail/tls/relay.key",
        "E\tetc/sasldb2\tf\t640\tsmmta:sasl\t", "M\tcccc\tetc/sasldb2",
        "== dropins",
        "/etc/systemd/system/labkit-milter.service.d/unprivileged.conf",
    ])
    assert finish.config_changes(WalkEngine(listing), "relay") == [
        "mode 0644 (was 0666) /etc/mail/access",
        "changed /etc/mail/sendmail.mc",
        "removed /etc/mail/smrsh/procmail",
        "added /etc/mail/tls/relay.key",
        "owner smmta:sasl (was root:sasl) /etc/sasldb2",
        "added /etc/systemd/system/labkit-milter.service.d/unprivileged.conf",
    ]


def test_finish_of_an_untouched_host_finds_nothing():
    same = ["E\tetc/postfix/main.cf\tf\t644\troot:root\t", "M\tffff\tetc/postfix/main.cf"]
    listing = "\n".join(["== base", *same, "== live", *same, "== dropins"])
    assert finish.config_changes(WalkEngine(listing), "mx2") == []
