"""The labkit command against a running lab: status, exec, shell."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.lab


def labkit(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labkit.cli", *args], input=input,
                          capture_output=True, text=True, timeout=120)


def test_status_shows_every_host_address_and_service(lab):
    res = labkit("status", "--lab", lab.name)
    assert res.returncode == 0, res.stdout + res.stderr
    for text in ("relay.example.com", "192.168.56.20 (outside)", "192.168.57.20 (inside)",
                 "ok sendmail: active", "ok postfix: active", "ok unbound: active",
                 "ok rbldnsd: active", "ok labkit-mx-sink: active"):
        assert text in res.stdout


def test_status_reports_a_stopped_service(lab):
    lab.run("server", ["systemctl", "stop", "postfix"]).check()
    try:
        res = labkit("status", "--lab", lab.name)
        assert res.returncode == 1
        assert "!! postfix: inactive" in res.stdout
    finally:
        lab.run("server", ["systemctl", "start", "postfix"]).check()


def test_exec_runs_a_command_on_the_host_and_passes_its_exit_code(lab):
    res = labkit("exec", "--lab", lab.name, "relay", "--", "hostname", "-f")
    assert res.returncode == 0 and res.stdout.strip() == "relay.example.com"
    assert labkit("exec", "--lab", lab.name, "relay", "--", "false").returncode == 1


def test_shell_opens_a_root_shell_on_the_host(lab):
    res = labkit("shell", "--lab", lab.name, "server", input="id -un; hostname -f\nexit\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-2:] == ["root", "server.example.com"]
