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
