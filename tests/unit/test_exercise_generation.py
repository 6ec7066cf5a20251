"""Exercises are generated from solutions: nbgrader's markers, stubs, cleared outputs."""

import nbformat
import pytest

from labkit.course import notebooks
from labkit.course.notebooks import SolutionMarkerError, clear_solutions


def notebook(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    return nb


def code(source, **meta):
    cell = nbformat.v4.new_code_cell(source, metadata=meta)
    cell.outputs = [nbformat.v4.new_output("stream", text="old output\n")]
    cell.execution_count = 3
    return cell


def test_a_region_becomes_a_stub_at_the_begin_lines_indentation():
    src = ("relay = Sendmail(lab.engine)\n### BEGIN SOLUTION\nrelay.change(edit)\n"
           "### END SOLUTION\nfor i in range(2):\n    ### BEGIN SOLUTION\n    print(i)\n"
           "    ### END SOLUTION\n    pass")
    nb = notebook(code(src, nbgrader={"solution": True, "grade_id": "t1"}))
    out = clear_solutions(nb, "x.ipynb")
    assert out.cells[0].source == (
        "relay = Sendmail(lab.engine)\n# YOUR CODE HERE\nraise NotImplementedError()\n"
        "for i in range(2):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n    pass")
    assert out.cells[0].outputs == [] and out.cells[0].execution_count is None
    assert out.cells[0].metadata.nbgrader.grade_id == "t1"
    assert nb.cells[0].source == src  # the solution itself is untouched


def test_markdown_regions_become_an_answer_stub_and_other_cells_stay():
    md = nbformat.v4.new_markdown_cell("Why?\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION")
    plain = code("lab.checks('08')")
    out = clear_solutions(notebook(md, plain))
    assert out.cells[0].source == "Why?\n\nYOUR ANSWER HERE"
    assert out.cells[1].source == "lab.checks('08')" and out.cells[1].outputs == []


@pytest.mark.parametrize("src, message", [
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "cell 1, line 2: a second"),
    ("x = 1\n### END SOLUTION", "cell 1, line 2: 'END SOLUTION' without"),
    ("### BEGIN SOLUTION\nx = 1", "cell 1, line 1: 'BEGIN SOLUTION' without an"),
])
def test_markers_that_do_not_pair_up_name_the_cell(src, message):
    with pytest.raises(SolutionMarkerError, match=message):
        clear_solutions(notebook(code(src)), "08-privacy.ipynb")


def test_generation_writes_exercises_and_reports_stale_ones(tmp_path):
    sol, ex = tmp_path / "solutions", tmp_path / "exercises"
    sol.mkdir()
    nbformat.write(notebook(code("### BEGIN SOLUTION\nx = 1\n### END SOLUTION")),
                   sol / "08-privacy.ipynb")
    assert notebooks.stale(sol, ex) == ["exercises/08-privacy.ipynb is missing"]
    assert [p.name for p in notebooks.generate(sol, ex)] == ["08-privacy.ipynb"]
    assert notebooks.stale(sol, ex) == []
    (ex / "08-privacy.ipynb").write_text((ex / "08-privacy.ipynb").read_text().replace(
        "NotImplementedError", "x"))
    (ex / "99-old.ipynb").write_text("{}")
    assert notebooks.stale(sol, ex) == [
        "exercises/99-old.ipynb has no solution",
        "exercises/08-privacy.ipynb differs from what solutions/08-privacy.ipynb gives"]


def test_committed_exercises_are_what_the_solutions_give():
    assert notebooks.stale() == [], "run: labkit exercises"


def test_the_first_page_links_every_lesson_and_exercise():
    import json

    from labkit.topology import REPO_DIR
    index = json.loads((REPO_DIR / "notebooks" / "README.ipynb").read_text())
    text = "".join("".join(c["source"]) for c in index["cells"])
    for lesson in (REPO_DIR / "notebooks").glob("[0-9]*.ipynb"):
        assert f"({lesson.name})" in text, lesson.name
    for exercise in (REPO_DIR / "exercises").glob("*.ipynb"):
        assert f"(../exercises/{exercise.name})" in text, exercise.name
