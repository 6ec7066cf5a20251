"""Every fault of the capstone's catalogue, injected into a hardened lab: exactly the
checks it names fail (each with a verdict, not an error), every other check of the course
still passes, and its documented fix makes the named checks pass again.

A full run of the course's checks takes about 31 s (26 s of it the measured DoS checks),
so the faults run on four hardened labs of this module's own, four at a time, each lab
taking the next fault once the last one's fix is in. Each test reads its fault's outcome.
"""

from __future__ import annotations

import queue
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from labkit import Lab, checks
from labkit.checks import Report, Status
from labkit.course import faults

from .conftest import lab_name

pytestmark = pytest.mark.lab

LABS = 4
FAULTS = faults.catalogue()


@dataclass
class Outcome:
    lab: str
    broken: Report | None = None     # every check, after the fault was injected
    fixed: Report | None = None      # the fault's checks, after its documented fix
    error: str = ""


@dataclass
class Run:
    reference: dict[str, Report]     # every check on each hardened lab, before any fault
    outcomes: dict[str, Outcome]


def _up(name: str) -> Lab:
    lab = Lab(name)
    lab.up()
    faults.harden_all(lab)
    return lab


def _try_fault(lab: Lab, fault: faults.Fault) -> Outcome:
    outcome = Outcome(lab.name)
    try:
        faults.inject(lab, fault)  # its checks must pass first
        outcome.broken = checks.run_checks(lab, checks.all_checks())
        faults.repair(lab, fault)
        outcome.fixed = faults.verify(lab, fault)
    except Exception:  # noqa: BLE001 - the fault's own tests fail with it
        outcome.error = traceback.format_exc()
    return outcome


@pytest.fixture(scope="module")
def run():
    names = [lab_name(f"f{i}") for i in range(LABS)]
    labs: list[Lab] = []
    try:
        with ThreadPoolExecutor(LABS) as pool:
            futures = [pool.submit(_up, n) for n in names]
            for f in futures:
                labs.append(f.result())
            reference = dict(zip(names, pool.map(
                lambda lab: checks.run_checks(lab, checks.all_checks()), labs), strict=True))
            free: queue.Queue[Lab] = queue.Queue()
            for lab in labs:
                free.put(lab)

            def one(fault: faults.Fault) -> tuple[str, Outcome]:
                lab = free.get()
                try:
                    return fault.name, _try_fault(lab, fault)
                finally:
                    free.put(lab)
            outcomes = dict(pool.map(one, FAULTS))
        yield Run(reference, outcomes)
    finally:
        for name in names:
            Lab(name).down()


def _failing(report: Report) -> dict[str, Status]:
    return {r.check_id: r.status for r in report.results if not r.passed}


def test_the_catalogue_has_fifteen_faults_or_more():
    assert len(FAULTS) >= 15


def test_every_check_passes_on_the_hardened_labs(run):
    for name, report in run.reference.items():
        assert report.all_passed, f"{name}:\n" + "\n".join(
            r.line() for r in report.results if not r.passed)


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_fault_fails_exactly_its_checks(run, fault):
    outcome = run.outcomes[fault.name]
    assert not outcome.error, outcome.error
    failing = _failing(outcome.broken)
    assert set(failing) == set(fault.catches), (
        f"{fault.name} on {outcome.lab}: expected to fail {sorted(fault.catches)}; "
        "did not pass:\n" + "\n".join(r.line() for r in outcome.broken.results
                                      if not r.passed))
    assert all(s is Status.FAILED for s in failing.values()), failing


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_fault_is_mended_by_its_documented_fix(run, fault):
    outcome = run.outcomes[fault.name]
    assert not outcome.error, outcome.error
    assert outcome.fixed.all_passed, "\n".join(r.line() for r in outcome.fixed.results)
    assert set(fault.catches) <= {r.check_id for r in outcome.fixed.results}
