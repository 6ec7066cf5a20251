"""Every worked solution runs, cell by cell, against a real lab (nbval), and its graded
check cells pass: each solution reaches its section's controls from the start state."""

import pytest

from tests.lab.conftest import REPO, nbval

pytestmark = pytest.mark.lab

SOLUTIONS = sorted((REPO / "solutions").glob("*.ipynb"))


def test_there_are_solutions():
    assert SOLUTIONS


@pytest.mark.parametrize("notebook", SOLUTIONS, ids=lambda p: p.name)
def test_solution_runs_and_its_checks_pass(back_to_baseline, notebook):
    nbval(back_to_baseline, notebook)
