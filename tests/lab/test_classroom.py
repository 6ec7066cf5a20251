"""A class on one server: a lab per learner started together, watched, and stopped, with
nothing left behind; Ctrl-C during the start removes the labs it had started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from labkit import Lab
from tests.lab.conftest import lab_name

pytestmark = pytest.mark.lab


def labkit(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit.cli", "class", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def roster(tmp_path):
    names = [lab_name(f"c{i}") for i in range(1, 4)]
    path = tmp_path / "roster.csv"
    path.write_text("name,password\n" + "".join(f"{n},pw-{n}\n" for n in names))
    env = {**os.environ, "LABKIT_CLASS": str(tmp_path / "class")}
    yield names, path, env
    for n in names:
        Lab(n, progress=None).down()


def test_a_class_of_three_starts_shows_and_stops_leaving_nothing(roster):
    names, path, env = roster
    res = labkit("up", "--roster", str(path), "--at-once", "3", env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 of 3 labs running" in res.stdout
    assert all(f"{n}: up in" in res.stderr for n in names), res.stderr
    res = labkit("status", env=env)
    assert res.returncode == 0, res.stdout
    for n in names:
        row = next(ln for ln in res.stdout.splitlines() if ln.startswith(n))
        assert "running" in row and "5/5" in row
    res = labkit("roster", env=env)
    assert f"{names[0]},pw-{names[0]}" in res.stdout
    res = labkit("down", env=env)
    assert res.returncode == 0 and "3 labs down" in res.stdout
    assert not any(Lab(n, progress=None).engine.has_leftovers() for n in names)


def test_ctrl_c_while_a_class_starts_leaves_no_lab(roster):
    names, path, env = roster
    proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", "class", "up", "--roster",
                             str(path), "--at-once", "1"], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # the first lab is up: interrupt while the second starts
        if "[1/3]" in line or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert not any(Lab(n, progress=None).engine.has_leftovers() for n in names), err
