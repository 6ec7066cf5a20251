"""labkit grade against real labs: several labs at once give one class table, and the
grade comes from probing each lab."""

import csv

import pytest

from labkit import Lab
from labkit.cli import main
from labkit.course.hardening import harden_privacy
from labkit.topology import REPO_DIR
from tests.lab.conftest import lab_name

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def second_lab():
    other = Lab(lab_name("g"), progress=None)
    try:
        other.up()
        harden_privacy(other.engine)  # this "learner" did section 08
        yield other
    finally:
        other.down()


def test_grading_two_labs_gives_one_class_table(state, second_lab, tmp_path, capsys):
    state.set()
    out_csv, out_json = tmp_path / "class.csv", tmp_path / "class.json"
    code = main(["grade", str(REPO_DIR / "assignments" / "relay-privacy.yaml"), "--labs",
                 state.lab.name, second_lab.name, "--csv", str(out_csv), "--json", str(out_json)])
    assert code == 0, capsys.readouterr()
    rows = {r["lab"]: r for r in csv.DictReader(out_csv.open())}
    baseline, learner = rows[state.lab.name], rows[second_lab.name]
    assert baseline["privacy.vrfy_disabled"] == "0" and learner["privacy.vrfy_disabled"] == "2"
    assert baseline["relay.closed_from_outside"] == "0" == learner["relay.closed_from_outside"]
    assert float(learner["score"]) > float(baseline["score"])
    assert baseline["verdict"] == "FAIL"
    assert state.lab.name in capsys.readouterr().out


def test_a_lab_that_is_down_is_graded_incomplete_not_failed(capsys):
    code = main(["grade", str(REPO_DIR / "assignments" / "relay-privacy.yaml"), "--lab",
                 lab_name("x")])
    assert code == 2
    assert "INCOMPLETE" in capsys.readouterr().out


def test_submitted_notebooks_are_graded_by_probing_a_lab_of_their_own(tmp_path, capsys):
    """Solved, unsolved, and solved with its check cells edited to always pass (and the
    last one deleted): the edited one gets exactly the honest one's marks."""
    import nbformat
    solved = nbformat.read(REPO_DIR / "solutions" / "08-privacy.ipynb", as_version=4)
    nbformat.write(solved, tmp_path / "alice-solved.ipynb")
    nbformat.write(nbformat.read(REPO_DIR / "exercises" / "08-privacy.ipynb", as_version=4),
                   tmp_path / "bob-unsolved.ipynb")
    tampered = nbformat.read(REPO_DIR / "solutions" / "08-privacy.ipynb", as_version=4)
    for cell in tampered.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.source = 'print("all checks passed")'
    tampered.cells = tampered.cells[:-1]
    nbformat.write(tampered, tmp_path / "carol-edited-checks.ipynb")
    out_csv = tmp_path / "class.csv"
    code = main(["grade", "--notebook", str(tmp_path), "--csv", str(out_csv)])
    assert code == 0, capsys.readouterr()
    rows = {r["lab"]: r for r in csv.DictReader(out_csv.open())}
    alice, bob, carol = (rows[f"{n}.ipynb"] for n in ("alice-solved", "bob-unsolved",
                                                      "carol-edited-checks"))
    assert alice["percent"] == "100.0" and alice["verdict"] == "PASS"
    assert float(bob["score"]) < float(alice["score"]) and bob["verdict"] == "FAIL"
    assert bob["privacy.vrfy_disabled"] == "0" and bob["privacy.greeting_anonymous"] == "0"
    assert {k: v for k, v in carol.items() if k != "lab"} == \
        {k: v for k, v in alice.items() if k != "lab"}
    assert not [n for n in lab_names_left() if n.startswith("gr")], "graded labs are removed"


def lab_names_left() -> list[str]:
    from labkit.engines import list_labs
    return [entry.name for entry in list_labs()]
