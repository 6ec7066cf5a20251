"""The engine contract: every verb of labkit.engines.base.Engine, through ``lab.engine``.

One suite for every engine. It runs on the engine named by $LABKIT_ENGINE (default
``local``, what CI runs); on a machine that can run the Vagrant VMs (see docs/vagrant.md):

    LABKIT_ENGINE=vagrant python3 -m pytest tests/lab/test_engine_contract.py

It starts one lab for the session (tests/lab/conftest.py), so under Vagrant the first
run includes `vagrant up` and its provisioning, and ends with `vagrant destroy -f`.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import time

import pytest

from labkit.engines.base import Engine, HostStatus, RunResult

pytestmark = pytest.mark.lab

AWKWARD = ["it's \"quoted\"", "$HOME", "a  b", "", "*", "back\\slash", "new\nline"]


@pytest.fixture
def engine(lab) -> Engine:
    return lab.engine


def test_run_gives_exit_code_stdout_stderr_and_takes_stdin(engine):
    for host in engine.topology.hosts:
        res = engine.run(host, ["sh", "-c", 'cat; echo "to stderr" >&2; exit 3'], input="from stdin\n")
        assert isinstance(res, RunResult) and res.host == host
        assert (res.returncode, res.stdout, res.stderr) == (3, "from stdin\n", "to stderr\n"), host
        assert not res.ok
    res = engine.run("relay", ["id", "-u"])
    assert res.ok and res.stdout == "0\n", "commands run as root"
    res = engine.run("relay", ["printf", "%s|", *AWKWARD])
    assert res.stdout == "|".join(AWKWARD) + "|", "each word reaches the host as it was"


def test_a_command_that_outlives_its_timeout_gives_124(engine):
    started = time.monotonic()
    res = engine.run("relay", ["sleep", "30"], timeout=1)
    assert res.returncode == 124
    assert time.monotonic() - started < 10


def test_write_file_then_read_file_round_trip_with_mode(engine):
    path = "/root/contract-test/sub dir/file.txt"
    content = "line one\n  it's \"two\"\n\ttab $HOME\n"
    try:
        engine.write_file("server", path, content, mode="0640")
        assert engine.read_file("server", path) == content
        assert engine.run("server", ["stat", "-c", "%a %U", path]).stdout.split() == ["640", "root"]
    finally:
        engine.run("server", ["rm", "-rf", "/root/contract-test"])


def test_host_command_and_popen_run_on_the_host(engine):
    engine.write_file("client", "/root/contract-marker", "on client\n")
    try:
        out = subprocess.run(engine.host_command("client", ["cat", "/root/contract-marker", "-"]),
                             input="piped\n", capture_output=True, text=True, timeout=30)
        assert (out.returncode, out.stdout) == (0, "on client\npiped\n")
        proc = engine.popen("client", ["sh", "-c", "read line; echo got:$line; exit 5"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        stdout, _ = proc.communicate("hello\n", timeout=30)
        assert (proc.returncode, stdout) == (5, "got:hello\n")
    finally:
        engine.run("client", ["rm", "-f", "/root/contract-marker"])


# (vantage, target host, address the vantage reaches it at): every host opens one.
REACHABLE = [
    ("internet", "relay", "192.168.56.20"),
    ("relay", "server", "192.168.57.30"),
    ("server", "relay", "192.168.57.20"),
    ("client", "server", "192.168.57.30"),
]


@pytest.mark.parametrize("vantage,target,address", REACHABLE)
def test_connect_from_a_host_carries_a_tcp_session(engine, vantage, target, address):
    sock = engine.connect(vantage, address, 25, timeout=10)
    try:
        assert isinstance(sock, socket.socket) and sock.gettimeout() == 10
        reader = sock.makefile("rb")
        banner = reader.readline().decode()
        assert banner.startswith(f"220 {engine.topology.host(target).fqdn}"), banner
        sock.sendall(b"QUIT\r\n")
        assert reader.readline().startswith(b"221"), "bytes go both ways"
    finally:
        sock.close()


def test_connect_to_a_closed_port_is_refused(engine):
    with pytest.raises(ConnectionRefusedError):
        engine.connect("internet", "192.168.56.20", 26, timeout=5)


def test_connect_to_a_host_out_of_reach_raises_oserror(engine):
    """internet has no route to the inside network, where server lives."""
    started = time.monotonic()
    with pytest.raises(OSError):
        engine.connect("internet", "192.168.57.30", 25, timeout=3).close()
    assert time.monotonic() - started < 10


def test_status_has_every_host_running_with_its_services(engine):
    assert engine.is_running()
    status = engine.status()
    assert [s.name for s in status] == list(engine.topology.hosts)
    for st in status:
        spec = engine.topology.host(st.name)
        assert isinstance(st, HostStatus) and st.running and st.fqdn == spec.fqdn
        assert st.addresses == [f"{i.address} ({i.network})" for i in spec.interfaces]
        assert [(s.name, s.active, s.state) for s in st.services] == [
            (name, True, "active") for name in spec.services]


def test_shell_argv_runs_a_shell_on_the_host(engine):
    engine.write_file("relay", "/root/contract-marker", "x\n")
    try:
        argv = engine.shell_argv("relay")
        out = subprocess.run(argv, input="true && test -f /root/contract-marker && exit 7\n",
                             capture_output=True, text=True, timeout=30)
        assert out.returncode == 7, (shlex.join(argv), out.stderr)
    finally:
        engine.run("relay", ["rm", "-f", "/root/contract-marker"])


def test_reset_restores_the_relay_mail_configuration(engine):
    access = engine.read_file("relay", "/etc/mail/access")
    engine.write_file("relay", "/etc/mail/contract-was-here", "x\n")
    engine.write_file("relay", "/etc/mail/access", access + "Connect:10 RELAY\n")
    engine.reset("relay")
    assert not engine.run("relay", ["test", "-e", "/etc/mail/contract-was-here"]).ok
    assert engine.read_file("relay", "/etc/mail/access") == access
    words = engine.run("relay", ["systemctl", "is-active", *engine.topology.host("relay").services])
    assert words.stdout.split() == ["active"] * len(engine.topology.host("relay").services)
