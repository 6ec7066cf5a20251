"""Assignments and grades without a lab: parsing, points, the class table."""

import csv
import io
import json

import pytest

from labkit import checks
from labkit.checks import Status
from labkit.checks.grading import Assignment, AssignmentError, ClassReport, Grade
from labkit.checks.report import Report


def assignment(**raw):
    return Assignment.from_dict({"title": "t", **raw})


def test_an_assignment_takes_sections_and_weighted_checks_in_course_order():
    a = assignment(sections=["08"], checks=[{"relay.closed_from_outside": 3},
                                            "privacy.vrfy_disabled"], pass_mark=70)
    ids = list(a.weights)
    assert ids[0] == "relay.closed_from_outside" and a.weights[ids[0]] == 3
    assert set(c.id for c in checks.for_section("08")) <= set(ids)
    assert a.possible == len(checks.for_section("08")) + 3 and a.pass_mark == 70


@pytest.mark.parametrize("raw, message", [
    ({"checks": ["privacy.nope"]}, "no check 'privacy.nope'"),
    ({"sections": ["dkim"]}, "unknown section 'dkim'"),
    ({"checks": [{"privacy.vrfy_disabled": "two"}]}, "must be a number"),
    ({"sections": ["08"], "pass_mark": 170}, "percentage"),
    ({"sections": ["08"], "passmark": 70}, "unknown keys"),
    ({}, "names no checks"),
])
def test_a_bad_assignment_is_refused_with_what_is_wrong(raw, message):
    with pytest.raises(AssignmentError, match=message):
        assignment(**raw)


def test_an_assignment_file_that_is_not_yaml_is_refused(tmp_path):
    bad = tmp_path / "a.yaml"
    bad.write_text("title: [unclosed\n")
    with pytest.raises(AssignmentError, match="not valid YAML"):
        Assignment.load(bad)
    with pytest.raises(AssignmentError, match="cannot read"):
        Assignment.load(tmp_path / "missing.yaml")


def test_the_example_assignment_loads():
    from labkit.topology import REPO_DIR
    a = Assignment.load(REPO_DIR / "assignments" / "relay-privacy.yaml")
    assert a.weights["relay.closed_from_outside"] == 3 and a.pass_mark == 70


def grade_of(lab, statuses, a):
    results = [checks.Result(i, i, "08", s, f"saw {s}") for i, s in zip(a.weights, statuses, strict=True)]
    return Grade(lab, a, Report(lab, results))


def test_points_come_from_passed_checks_and_an_error_makes_the_grade_incomplete():
    a = assignment(checks=[{"privacy.vrfy_disabled": 2}, "privacy.expn_disabled",
                           "privacy.etrn_disabled"], pass_mark=50)
    good = grade_of("alice", [Status.PASSED, Status.FAILED, Status.FAILED], a)
    assert (good.score, round(good.percent), good.verdict) == (2, 50, "PASS")
    bad = grade_of("bob", [Status.FAILED, Status.PASSED, Status.PASSED], a)
    assert (bad.score, bad.verdict) == (2, "PASS")
    down = grade_of("carol", [Status.ERROR, Status.PASSED, Status.PASSED], a)
    assert down.verdict == "INCOMPLETE" and not down.complete
    report = ClassReport(a, [good, bad, down])
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert [r["lab"] for r in rows] == ["alice", "bob", "carol"]
    assert rows[0]["privacy.vrfy_disabled"] == "2" and rows[2]["privacy.vrfy_disabled"] == "error"
    assert rows[2]["verdict"] == "INCOMPLETE" and not report.complete
    data = json.loads(report.to_json())
    assert data["labs"][1]["checks"][0]["points"] == 0
    assert "carol" in report.table() and "privacy.vrfy_disabled (error)" in report.table()
