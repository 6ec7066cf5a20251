"""The course notebooks run, cell by cell, against a real lab (nbval): every lesson; and
an exercise (generated from its solution) run on the lab shows its graded checks failing,
each with its hint, until the learner solves it. The worked solutions run in
test_solutions.py (a file of their own, so the two pytest workers share the notebooks)."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

from tests.lab.conftest import REPO, nbval

pytestmark = pytest.mark.lab

LESSONS = sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))  # README.ipynb: the index
EXERCISES = sorted((REPO / "exercises").glob("*.ipynb"))


def test_there_are_lessons():
    assert LESSONS


@pytest.mark.parametrize("notebook", LESSONS, ids=lambda p: p.name)
def test_lesson_runs_against_the_lab(lab, notebook):
    nbval(lab, notebook)


@pytest.mark.parametrize("notebook", EXERCISES, ids=lambda p: p.name)
def test_exercise_shows_its_checks_failing_until_solved(back_to_baseline, notebook, monkeypatch):
    monkeypatch.setenv("LABKIT_LAB", back_to_baseline.name)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(REPO)}}).execute()
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    assert graded, "an exercise has graded check cells"
    for cell in graded:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert errors and errors[0].ename == "ChecksFailedError", cell.source
        assert "what to do:" in "\n".join(errors[0].traceback), "the hint is shown"
    stubs = [c for c in nb.cells if "raise NotImplementedError()" in c.source]
    assert stubs and all(any(o.get("ename") == "NotImplementedError" for o in c.outputs)
                         for c in stubs)
