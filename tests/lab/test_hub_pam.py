"""``labkit class serve --auth pam``: the hub's logins are the server's own users, checked
by PAM for real (Debian's pam_unix against /etc/shadow) with the configuration the command
writes: the roster's learners log in as users, the members of labkit-instructors as the
hub's admins, and nobody else."""

from __future__ import annotations

import asyncio
import grp
import subprocess
import uuid

import pytest
from jupyterhub.auth import PAMAuthenticator
from traitlets.config import PyFileConfigLoader

from labkit import classroom, hub
from labkit.service.server import INSTRUCTORS


def _user(name: str, password: str, *groups: str) -> None:
    subprocess.run(["useradd", "--create-home", *(["--groups", ",".join(groups)] if groups
                                                  else []), name], check=True)
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)


@pytest.fixture(scope="module")
def pam(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pam")
    tag = uuid.uuid4().hex[:6]
    learner, other, teacher = f"lkpl{tag}", f"lkpo{tag}", f"lkpi{tag}"
    made_group = False
    try:
        grp.getgrnam(INSTRUCTORS)
    except KeyError:
        subprocess.run(["groupadd", INSTRUCTORS], check=True)
        made_group = True
    mp = pytest.MonkeyPatch()
    mp.setenv("LABKIT_CLASS", str(tmp / "class"))
    mp.setenv("LABKIT_HUB", str(tmp / "hub"))
    try:
        _user(learner, "learner-pw")
        _user(other, "other-pw")
        _user(teacher, "teacher-pw", INSTRUCTORS)
        classroom.save(classroom.Roster([classroom.Learner(learner, "roster-pw")]))
        said: list[str] = []
        config, _roster = hub.prepare(hub.HubConfig(auth="pam"), said.append)
        loaded = PyFileConfigLoader(config.name, path=str(config.parent)).load_config()
        yield {"auth": PAMAuthenticator(config=loaded), "learner": learner, "other": other,
               "teacher": teacher, "said": said, "config": config}
    finally:
        mp.undo()
        for name in (learner, other, teacher):
            subprocess.run(["userdel", "--remove", name], capture_output=True)
        if made_group:
            subprocess.run(["groupdel", INSTRUCTORS], capture_output=True)


def _login(pam, name: str, password: str):
    return asyncio.run(pam["auth"].get_authenticated_user(
        None, {"username": name, "password": password}))


def test_a_learner_logs_in_with_their_own_password(pam):
    user = _login(pam, pam["learner"], "learner-pw")
    assert user and user["name"] == pam["learner"] and not user["admin"]


def test_the_rosters_password_of_the_day_is_not_theirs_under_pam(pam):
    assert _login(pam, pam["learner"], "roster-pw") is None
    assert _login(pam, pam["learner"], "wrong") is None


def test_a_user_of_the_server_outside_the_class_is_refused(pam):
    assert _login(pam, pam["other"], "other-pw") is None


def test_an_instructor_logs_in_as_an_admin(pam):
    user = _login(pam, pam["teacher"], "teacher-pw")
    assert user and user["admin"], user
    assert any(pam["teacher"] in line for line in pam["said"]), pam["said"]


def test_the_learner_gets_the_course_in_their_home(pam):
    import pwd
    home = pwd.getpwnam(pam["learner"]).pw_dir
    assert (pam["config"].stat().st_mode & 0o777) == 0o600
    assert subprocess.run(["test", "-f", f"{home}/course/notebooks/README.ipynb"]).returncode == 0


def test_a_roster_name_without_a_user_is_refused_with_the_names(tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CLASS", str(tmp_path / "class"))
    monkeypatch.setenv("LABKIT_HUB", str(tmp_path / "hub"))
    ghost = f"lkpg{uuid.uuid4().hex[:6]}"
    classroom.save(classroom.Roster([classroom.Learner(ghost, "x")]))
    with pytest.raises(hub.HubError, match=ghost):
        hub.prepare(hub.HubConfig(auth="pam"))
