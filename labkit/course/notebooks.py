"""The learner's exercises, generated from the solutions (the single source).

A solution notebook (``solutions/NN-topic.ipynb``) marks each answer with nbgrader's
markers, on lines of their own::

    relay = Sendmail(lab.engine)
    ### BEGIN SOLUTION
    relay.change(lambda mc: mc.set_define("confPRIVACY_FLAGS", "goaway"))
    ### END SOLUTION

:func:`clear_solutions` replaces each region with a stub at the BEGIN line's
indentation (``# YOUR CODE HERE`` / ``raise NotImplementedError()`` in code, ``YOUR ANSWER
HERE`` in markdown) and clears every output, as nbgrader's ClearSolutions does, so a
course team that already uses nbgrader can take the notebooks over. A nested BEGIN, an
END without a BEGIN, or a BEGIN without an END is an error naming the notebook and the
cell. :func:`generate` writes ``exercises/`` from ``solutions/``; nobody edits exercises.
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat

from labkit.errors import LabkitError
from labkit.topology import REPO_DIR

BEGIN, END = "BEGIN SOLUTION", "END SOLUTION"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
TEXT_STUB = "YOUR ANSWER HERE"
SOLUTIONS = REPO_DIR / "solutions"
EXERCISES = REPO_DIR / "exercises"


class SolutionMarkerError(LabkitError):
    """A solution notebook's markers do not pair up; the message names the cell."""


def _clear_cell(cell: dict, where: str) -> bool:
    """Replace the solution regions of ``cell`` in place; True if it had any."""
    lines = cell["source"].split("\n") if isinstance(cell["source"], str) \
        else "".join(cell["source"]).split("\n")
    out: list[str] = []
    inside: int | None = None  # line number of the open BEGIN
    found = False
    for n, line in enumerate(lines, 1):
        if BEGIN in line:
            if inside is not None:
                raise SolutionMarkerError(f"{where}, line {n}: a second {BEGIN!r} before the "
                                          f"{END!r} of line {inside}")
            inside, found = n, True
            indent = line[:len(line) - len(line.lstrip())]
            stub = CODE_STUB if cell["cell_type"] == "code" else (TEXT_STUB,)
            out += [indent + s for s in stub]
        elif END in line:
            if inside is None:
                raise SolutionMarkerError(f"{where}, line {n}: {END!r} without a {BEGIN!r}")
            inside = None
        elif inside is None:
            out.append(line)
    if inside is not None:
        raise SolutionMarkerError(f"{where}, line {inside}: {BEGIN!r} without an {END!r}")
    cell["source"] = "\n".join(out)
    return found


def clear_solutions(nb: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The learner's version of solution notebook ``nb`` (a new notebook: ``nb`` is not
    changed): solution regions replaced by stubs, outputs and execution counts cleared."""
    nb = copy.deepcopy(nb)
    for i, cell in enumerate(nb.cells):
        _clear_cell(cell, f"{name}, cell {i + 1}")
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def exercise_text(solution: Path) -> str:
    """What ``exercises/<name>`` must contain for solution notebook ``solution``."""
    nb = nbformat.read(solution, as_version=4)
    return nbformat.writes(clear_solutions(nb, solution.name)) + "\n"


def generate(solutions: Path = SOLUTIONS, exercises: Path = EXERCISES) -> list[Path]:
    """Write every exercise from its solution (and remove exercises whose solution is
    gone); return the exercises written."""
    exercises.mkdir(exist_ok=True)
    written = []
    wanted = {p.name for p in solutions.glob("*.ipynb")}
    for old in exercises.glob("*.ipynb"):
        if old.name not in wanted:
            old.unlink()
    for solution in sorted(solutions.glob("*.ipynb")):
        target = exercises / solution.name
        target.write_text(exercise_text(solution))
        written.append(target)
    return written


def stale(solutions: Path = SOLUTIONS, exercises: Path = EXERCISES) -> list[str]:
    """What differs between ``exercises/`` and what :func:`generate` would write."""
    problems = []
    names = {p.name for p in solutions.glob("*.ipynb")}
    for extra in sorted({p.name for p in exercises.glob("*.ipynb")} - names):
        problems.append(f"exercises/{extra} has no solution")
    for name in sorted(names):
        target = exercises / name
        if not target.exists():
            problems.append(f"exercises/{name} is missing")
        elif target.read_text() != exercise_text(solutions / name):
            problems.append(f"exercises/{name} differs from what solutions/{name} gives")
    return problems
