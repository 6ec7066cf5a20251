"""Every graded check, against the real lab: it FAILS on the baseline, PASSES in the
hardened state of its section (labkit/course: the baseline with every section up to it
hardened), and still passes with the whole course hardened. Guard checks pass on the
baseline too (they keep a control from being overdone; their failing cases are in the
section's own test module). The sections are hardened one after another on one lab, in
course order, so the suite pays for each hardening once."""

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


class Reports:
    """Each section's checks run once per lab state, when a test first asks for them
    (so ``-k family`` runs only that family's checks)."""

    def __init__(self, state) -> None:
        self.state = state
        self.cache: dict[tuple, checks.Report] = {}

    def get(self, state: str, number: str) -> checks.Report:
        """Section ``number``'s report in ``state``: "baseline", "section" (its own
        hardened state) or "course" (every section hardened)."""
        key = (state, number)
        if key not in self.cache:
            if state == "baseline":
                self.state.set()
            elif state == "section":
                self.state.through(number)
            else:
                self.state.set(*EVERY_HARDENED)
            self.cache[key] = checks.run_checks(self.state.lab, checks.for_section(number))
        return self.cache[key]


@pytest.fixture(scope="module")
def reports(state):
    return Reports(state)


@pytest.mark.parametrize("check_id", IDS)
def test_check_fails_on_the_baseline(reports, check_id):
    result = reports.get("baseline", checks.get(check_id).section)[check_id]
    expected = Status.PASSED if checks.get(check_id).guard else Status.FAILED
    assert result.status is expected, _explain(result)
    assert result.summary and result.evidence


@pytest.mark.parametrize("check_id", IDS)
def test_check_passes_in_its_sections_hardened_state(reports, check_id):
    number = checks.get(check_id).section
    result = reports.get("section", number)[check_id]
    assert result.status is Status.PASSED, _explain(result)
    assert result.summary and result.evidence


@pytest.mark.parametrize("check_id", IDS)
def test_check_passes_with_the_whole_course_hardened(reports, check_id):
    result = reports.get("course", checks.get(check_id).section)[check_id]
    assert result.status is Status.PASSED, _explain(result)


def test_no_check_hangs(reports):
    # Not a timed assertion of a target (benchmarks/bench_checks.py measures that): a
    # check that hangs until a probe's timeout shows here as a clear failure.
    slow = [f"{r.check_id} {r.seconds:.1f} s" for report in reports.cache.values()
            for r in report.results if r.seconds > 60]
    assert not slow
