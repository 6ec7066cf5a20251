"""Lab tests: one real lab per test session, under a name of this run's own.

A lab that cannot start FAILS these tests with its reason (never a skip).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit import Lab

#: The checkout under test: notebook kernels import labkit from it, whatever is installed.
REPO = Path(__file__).resolve().parents[2]


def lab_name(suffix: str = "") -> str:
    """A lab name unique to this test run (labs of other runs are left alone)."""
    return f"t{os.getpid() % 100000}{suffix}"


@pytest.fixture(scope="session")
def lab():
    existing = os.environ.get("LABKIT_TEST_LAB")
    if existing:  # a running lab of the caller's (benchmarks/bench_vagrant.py): kept
        yield Lab(existing)
        return
    the_lab = Lab(lab_name())
    try:
        the_lab.up()
    except BaseException:
        the_lab.down()
        raise
    yield the_lab
    the_lab.down()


def wait_for(predicate, timeout: float = 30, interval: float = 0.5, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test with ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def reset_mtas(lab) -> None:
    """Every host whose mail configuration the course changes, back to its baseline."""
    from labkit.course.hardening import MTA_HOSTS
    for host in MTA_HOSTS:
        lab.reset(host)


class LabState:
    """Puts the relay, the backup MX and the server in a known state, the baseline with
    some sections hardened, and remembers it, so tests in a row that need the same state share it. A test that
    changes the MTAs otherwise calls :meth:`changed`."""

    def __init__(self, lab) -> None:
        self.lab = lab
        self.key: tuple[str, ...] | None = None
        self.used = False  # any state set: the module's end puts the MTAs back

    def set(self, *sections: str) -> None:
        """The baseline with ``sections`` hardened, in that order. From a state whose
        sections begin the list, only the rest are hardened (no reset)."""
        from labkit.course.hardening import section
        self.used = True
        if sections == self.key:
            return
        done = self.key
        self.key = None
        if done is not None and sections[:len(done)] == done:
            todo = sections[len(done):]
        else:
            reset_mtas(self.lab)
            todo = sections
        for key in todo:
            harden = section(key).harden
            if harden:
                harden(self.lab.engine)
        self.key = sections

    def through(self, number: str) -> None:
        """The hardened state of section ``number``: every section up to it hardened."""
        from labkit.course.hardening import SECTIONS
        self.set(*(s.number for s in SECTIONS if s.number <= number and s.harden))

    def changed(self) -> None:
        self.key = None


@pytest.fixture(scope="module")
def state(lab):
    """A :class:`LabState` for this module (the first ``set`` always resets: other modules
    leave the lab at the baseline, but this one does not trust that)."""
    tracker = LabState(lab)
    yield tracker
    if tracker.used:  # a test that called changed() leaves the MTAs changed too
        reset_mtas(lab)


def nbval(lab, notebook: Path) -> None:
    """Run ``notebook`` cell by cell against ``lab`` with nbval (outputs not compared)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "LABKIT_LAB": lab.name, "PYTHONPATH": path}
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
         "--nbval-cell-timeout=300", str(notebook)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


@pytest.fixture
def back_to_baseline(lab):
    """Solutions and exercises put the lab in their section's state: the modules after
    this one expect the baseline."""
    yield lab
    reset_mtas(lab)
