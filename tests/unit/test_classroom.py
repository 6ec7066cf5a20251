"""A class's roster: read from a file an instructor writes, numbered learners, kept private."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from labkit import classroom


def test_numbered_learners_each_get_a_password():
    learners = classroom.numbered(12)
    assert [x.name for x in learners][:2] == ["learner01", "learner02"]
    assert learners[-1].name == "learner12"
    assert len({x.password for x in learners}) == 12
    assert all(len(x.password) == 14 for x in learners)


def test_a_roster_file_gives_names_and_passwords(tmp_path):
    path = tmp_path / "class.csv"
    path.write_text("name,password\n# the Tuesday group\nalice,s3cret\nbob\ncarol: open sesame\n")
    learners = classroom.read_roster(path)
    assert [(x.name, x.password) for x in learners[::2]] == [("alice", "s3cret"),
                                                             ("carol", "open sesame")]
    assert learners[1].name == "bob" and learners[1].password  # one made for bob


def test_a_bad_roster_names_every_bad_line(tmp_path):
    path = tmp_path / "class.csv"
    path.write_text("alice\nBad_Name\nalice\n")
    with pytest.raises(classroom.ClassError) as err:
        classroom.read_roster(path)
    assert "line 2" in str(err.value) and "line 3: alice is listed twice" in str(err.value)


def test_the_roster_is_kept_for_root_only(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CLASS", str(tmp_path / "class"))
    with pytest.raises(classroom.ClassError, match="no class on this machine"):
        classroom.load()
    classroom.save(classroom.Roster(classroom.numbered(2)))
    assert classroom.roster_path().stat().st_mode & 0o777 == 0o600
    assert classroom.load().names == ["learner01", "learner02"]


def labkit(*args: str, tmp) -> subprocess.CompletedProcess:
    env = {**os.environ, "LABKIT_CLASS": str(tmp)}
    return subprocess.run([sys.executable, "-m", "labkit.cli", "class", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_class_commands_say_what_is_missing(tmp_path):
    res = labkit("status", tmp=tmp_path)
    assert res.returncode == 1 and "labkit class up --learners N" in res.stderr
    res = labkit("up", tmp=tmp_path)
    assert res.returncode == 1 and "needs --learners N or --roster FILE" in res.stderr
    res = labkit("up", "--learners", "0", tmp=tmp_path)
    assert res.returncode == 1 and "1 to 200 learners" in res.stderr
