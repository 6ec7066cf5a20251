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


# --- labs of every engine: list, down --all, status hints ---------------------------------

@pytest.fixture
def labs_here(tmp_path, monkeypatch):
    """Labs on this machine, without touching it: local labs 'alice' (stale) and 'lab'
    (running); vagrant states 'bob' (stopped VMs), 'carol' (running VMs) and 'lab' (no VMs)."""
    from labkit.engines import local as localmod
    from labkit.engines.local import LocalEngine
    from labkit.engines.vagrant import VagrantEngine
    vagrant_labs = tmp_path / "vagrant-labs"
    for name, has_vms in (("bob", True), ("carol", True), ("lab", False)):
        (vagrant_labs / name).mkdir(parents=True)
        if has_vms:
            ident = vagrant_labs / name / "machines" / "relay" / "libvirt" / "id"
            ident.parent.mkdir(parents=True)
            ident.write_text("id")
    monkeypatch.setenv("LABKIT_VAGRANT_LABS", str(vagrant_labs))
    monkeypatch.delenv("LABKIT_ENGINE", raising=False)
    monkeypatch.delenv("LABKIT_LAB", raising=False)
    monkeypatch.setattr(localmod, "list_labs", lambda: ["alice", "lab"])
    monkeypatch.setattr(LocalEngine, "is_running", lambda self: self.lab == "lab")
    monkeypatch.setattr(VagrantEngine, "is_running", lambda self: self.lab == "carol")
    return vagrant_labs


def test_list_shows_the_labs_of_every_engine_with_their_engine(labs_here, capsys):
    assert main(["list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "alice          local    stale (cleared by labkit up --lab alice or labkit down --lab alice)",
        "bob            vagrant  stopped (hosts kept: labkit up --engine vagrant --lab bob boots them again)",
        "carol          vagrant  running",
        "lab            local    running",
        "lab            vagrant  stale (cleared by labkit up --engine vagrant or "
        "labkit down --engine vagrant)",
    ]


def test_list_says_when_a_lab_state_cannot_be_read(labs_here, monkeypatch, capsys):
    from labkit.engines.vagrant import VagrantEngine

    def broken(self):
        raise PreflightError("the vagrant engine needs the 'vagrant' command\nsecond line")
    monkeypatch.setattr(VagrantEngine, "is_running", broken)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "bob            vagrant  unknown (the vagrant engine needs the 'vagrant' command)" in out


def test_list_of_no_lab(labs_here, monkeypatch, capsys):
    from labkit.engines import local as localmod
    monkeypatch.setattr(localmod, "list_labs", lambda: [])
    monkeypatch.setenv("LABKIT_VAGRANT_LABS", str(labs_here / "none"))
    assert main(["list"]) == 0
    assert capsys.readouterr().out == "no labs on this machine\n"


def test_down_all_takes_each_lab_down_with_its_own_engine(labs_here, monkeypatch, capsys):
    import labkit.engines as enginelib
    from labkit.errors import LabkitError
    downed: list[tuple[str, str]] = []

    class Fake:
        def __init__(self, kind: str, name: str) -> None:
            self.kind, self.name = kind, name

        def down(self) -> None:
            if (self.kind, self.name) == ("vagrant", "carol"):
                raise LabkitError("vagrant destroy -f failed for lab 'carol' (exit 1)")
            downed.append((self.kind, self.name))

    monkeypatch.setattr(enginelib, "get_engine", lambda kind, topo, name: Fake(kind, name))
    assert main(["down", "--all"]) == 1  # one failed; the others are still taken down
    assert downed == [("local", "alice"), ("vagrant", "bob"), ("local", "lab"), ("vagrant", "lab")]
    out, err = capsys.readouterr()
    assert "lab 'alice' (local) is down; nothing of it is left on this machine" in out.splitlines()
    assert "lab 'bob' (vagrant) is down; nothing of it is left on this machine" in out.splitlines()
    assert "labkit: error: lab 'carol' (vagrant): vagrant destroy -f failed" in err


def test_status_hint_says_vagrant_when_LABKIT_ENGINE_does(labs_here, monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_ENGINE", "vagrant")
    assert main(["status", "--lab", "nosuchlab"]) == 3
    assert capsys.readouterr().out == ("lab 'nosuchlab' is not running "
                                       "(start it: labkit up --engine vagrant --lab nosuchlab)\n")
    assert main(["status", "--lab", "nosuchlab", "--engine", "local"]) == 3
    assert "(start it: labkit up --engine local --lab nosuchlab)" in capsys.readouterr().out


def test_status_hint_says_vagrant_for_a_vagrant_lab(labs_here, capsys):
    assert main(["status", "--lab", "bob"]) == 3  # asked on the local engine, the default
    assert capsys.readouterr().out == (
        "lab 'bob' is not running on the local engine; it is a Vagrant lab: "
        "labkit status --engine vagrant --lab bob (start it: labkit up --engine vagrant --lab bob)\n")
    assert main(["status", "--lab", "alice"]) == 3
    assert capsys.readouterr().out == "lab 'alice' is not running (start it: labkit up --lab alice)\n"
