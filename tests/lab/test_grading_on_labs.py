"""labkit grade against real labs: several labs at once give one class table, and the
grade comes from probing each lab."""

import csv
import json
import pwd

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
    # carol's notebook also reaches past her lab: it runs as a user of its own, so she is
    # refused another lab, the labs' files, root's; and her own lab's work still counts
    tampered.cells[:0] = [nbformat.v4.new_code_cell(src) for src in (
        'import os\nassert os.geteuid() != 0, "the cells ran as root"',
        'from labkit import Lab\nLab("lkother").run("relay", ["id"])',
        'os.listdir("/var/lib/labkit/labs")',
        'open("/etc/shadow").read()')]
    nbformat.write(tampered, tmp_path / "carol-edited-checks.ipynb")
    out_csv, out_json = tmp_path / "class.csv", tmp_path / "class.json"
    code = main(["grade", "--notebook", str(tmp_path), "--csv", str(out_csv),
                 "--json", str(out_json)])
    assert code == 0, capsys.readouterr()
    carol_errors = next(g["cell_errors"] for g in json.loads(out_json.read_text())["labs"]
                        if g["lab"].startswith("carol"))
    assert [e.split(":")[1].strip() for e in carol_errors[:3]] == \
        ["ServiceError", "PermissionError", "PermissionError"], carol_errors
    assert "may not act on lab 'lkother'" in carol_errors[0], carol_errors
    alice_errors = json.loads(out_json.read_text())["labs"][0]["cell_errors"]
    assert alice_errors == [], "a solution runs as its own user as it does as root"
    assert not any("ran as root" in e for e in carol_errors), carol_errors
    rows = {r["lab"]: r for r in csv.DictReader(out_csv.open())}
    alice, bob, carol = (rows[f"{n}.ipynb"] for n in ("alice-solved", "bob-unsolved",
                                                      "carol-edited-checks"))
    assert alice["percent"] == "100.0" and alice["verdict"] == "PASS"
    assert float(bob["score"]) < float(alice["score"]) and bob["verdict"] == "FAIL"
    assert bob["privacy.vrfy_disabled"] == "0" and bob["privacy.greeting_anonymous"] == "0"
    assert {k: v for k, v in carol.items() if k != "lab"} == \
        {k: v for k, v in alice.items() if k != "lab"}
    assert not [n for n in lab_names_left() if n.startswith("lkgr")], "graded labs are removed"
    assert not [u for u in pwd.getpwall() if u.pw_name.startswith("lkgr")], \
        "the submissions' users are removed"


def lab_names_left() -> list[str]:
    from labkit.engines import list_labs
    return [entry.name for entry in list_labs()]


def test_the_tls_solution_runs_as_its_own_user_with_certificates_from_the_service():
    """Section 07's solution makes certificates of the lab CA, whose key is root's: run as
    the submission's own user, it gets them through the lab service and earns every mark."""
    from labkit.checks.grading import grade_notebooks
    report = grade_notebooks([REPO_DIR / "solutions" / "07-starttls.ipynb"])
    grade = report.grades[0]
    assert grade.cell_errors == [] and grade.percent == 100, grade.text()
