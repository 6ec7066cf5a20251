"""The labkit command: help, and clear errors before any lab exists."""

import subprocess
import sys

import pytest

from labkit import preflight
from labkit.cli import main
from labkit.errors import PreflightError


def labkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit.cli", *args],
                          capture_output=True, text=True, timeout=60)


def test_help_lists_every_verb():
    out = labkit("--help").stdout
    for verb in ("up", "down", "status", "shell", "exec", "reset", "list", "images"):
        assert verb in out


def test_invalid_lab_name_is_explained():
    res = labkit("status", "--lab", "Bad_Name!")
    assert res.returncode == 1
    assert "invalid lab name 'Bad_Name!'" in res.stderr


def test_unknown_host_is_named():
    res = labkit("exec", "--lab", "nosuchlab", "mailhub", "--", "true")
    assert res.returncode == 1
    assert "unknown host 'mailhub'" in res.stderr


def test_status_of_a_lab_not_running_says_how_to_start_it():
    res = labkit("status", "--lab", "nosuchlab")
    assert res.returncode == 3
    assert "labkit up --lab nosuchlab" in res.stdout


def test_exec_without_command_is_explained(capsys):
    assert main(["exec", "--lab", "nosuchlab", "relay"]) == 1
    assert "exec needs a command" in capsys.readouterr().err


def test_not_root_is_one_clear_line(monkeypatch):
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 1000)
    with pytest.raises(PreflightError, match="needs root.*sudo labkit up"):
        preflight.require_local_engine()


def test_missing_tool_names_its_debian_package(monkeypatch):
    monkeypatch.setattr(preflight.os, "geteuid", lambda: 0)
    real = preflight.shutil.which
    monkeypatch.setattr(preflight.shutil, "which",
                        lambda t: None if t == "systemd-nspawn" else real(t))
    with pytest.raises(PreflightError, match="apt-get install systemd-container"):
        preflight.require_local_engine()
