"""Every graded check, against the real lab: it FAILS on the baseline, PASSES when its
section is hardened (that section's hardening alone, so the pass is the section's own
doing), and still passes with the whole course hardened. Guard checks pass on the
baseline too (they keep a control from being overdone; their failing cases are in the
section's own test module)."""

import pytest

from labkit import checks
from labkit.checks import Status
from labkit.course.hardening import SECTIONS

pytestmark = pytest.mark.lab

ALL = checks.all_checks()
IDS = [c.id for c in ALL]
SECTIONS_WITH_CHECKS = sorted({c.section for c in ALL})
EVERY_HARDENED = tuple(s.number for s in SECTIONS if s.harden)


def _explain(result) -> str:
    return f"{result.status}: {result.summary}\n{result.evidence[-3000:]}"


@pytest.fixture(scope="module")
def baseline(state):
    state.set()
    return checks.run_checks(state.lab, ALL)


@pytest.fixture(scope="module")
def per_section(state):
    reports = {}
    for number in SECTIONS_WITH_CHECKS:
        state.set(number)
        reports[number] = checks.run_checks(state.lab, checks.for_section(number))
    return reports


@pytest.fixture(scope="module")
def whole_course(state):
    state.set(*EVERY_HARDENED)
    return checks.run_checks(state.lab, ALL)


@pytest.mark.parametrize("check_id", IDS)
def test_check_fails_on_the_baseline(baseline, check_id):
    result = baseline[check_id]
    expected = Status.PASSED if checks.get(check_id).guard else Status.FAILED
    assert result.status is expected, _explain(result)
    assert result.summary and result.evidence


@pytest.mark.parametrize("check_id", IDS)
def test_check_passes_when_its_section_is_hardened(per_section, check_id):
    result = per_section[checks.get(check_id).section][check_id]
    assert result.status is Status.PASSED, _explain(result)
    assert result.summary and result.evidence


@pytest.mark.parametrize("check_id", IDS)
def test_check_passes_with_the_whole_course_hardened(whole_course, check_id):
    result = whole_course[check_id]
    assert result.status is Status.PASSED, _explain(result)


def test_every_check_of_the_course_runs_in_seconds(whole_course):
    # Not a timed assertion of a target (benchmarks/bench_checks.py measures that): a
    # check that hangs until a probe's timeout shows here as a clear failure.
    slow = [f"{r.check_id} {r.seconds:.1f} s" for r in whole_course.results if r.seconds > 60]
    assert not slow
