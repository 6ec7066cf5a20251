"""The vagrant engine without a VM: what it parses, the command lines it builds, and its
verbs driven against a FAKE ``vagrant`` and a FAKE ``ssh`` put first on PATH.

The fakes are small Python scripts written into a temporary directory. Each records its
argv (and for vagrant the environment Vagrant reads) as one JSON line in a log file.

- fake ``vagrant``: ``up`` prints Vagrant-like lines and creates each machine's
  ``machines/NAME/libvirt/id`` under $VAGRANT_DOTFILE_PATH (FAKE_UP_FAIL=HOST makes it
  fail on that host, FAKE_UP_SLOW=1 makes it wait to be interrupted); ``status
  --machine-readable``, ``ssh-config`` and ``destroy -f`` print canned outputs.
- fake ``ssh``: ``-N`` (the master) creates the ControlPath file, ``-O exit`` removes it,
  ``-W ADDR:PORT`` relays its stdin/stdout to a real TCP connection to ADDR:PORT (as the
  mux client does, it says "master session id" once connected, and a refusal goes to the
  master's log), and a command ``sudo -n -- CMD`` runs CMD with ``sh -c`` HERE, with stub
  ``systemctl``/``make``/``newaliases``/``journalctl`` first on PATH: so the quoting the
  engine applies is undone by a real shell, as sshd's would.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from labkit import topology as topolib
from labkit.cli import build_parser
from labkit.engines import ENGINES, get_engine
from labkit.engines import vagrant as vagrantmod
from labkit.engines.vagrant import (
    VagrantEngine,
    format_ssh_config,
    parse_machine_readable,
    parse_ssh_config,
)
from labkit.errors import HostBootError, LabExistsError, LabNotRunningError, PreflightError

REPO = Path(__file__).resolve().parents[2]
SAMPLE_HOSTS = ["internet", "relay", "server", "client"]  # in the samples of Vagrant's output
HOSTS = ["internet", "relay", "mx2", "server", "client"]  # the topology's

# --- what Vagrant 2.3 prints -----------------------------------------------------------

SSH_CONFIG = """\
Host internet
  HostName 127.0.0.1
  User vagrant
  Port 2222
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /home/ann/mta lab/vagrant/.vagrant-labs/lab/machines/internet/virtualbox/private_key
  IdentitiesOnly yes
  LogLevel FATAL
  PubkeyAcceptedKeyTypes +ssh-rsa
  HostKeyAlgorithms +ssh-rsa

Host relay
  HostName 127.0.0.1
  User vagrant
  Port 2200
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /home/ann/lab/vagrant/.vagrant-labs/lab/machines/relay/virtualbox/private_key
  IdentitiesOnly yes
  LogLevel FATAL
  PubkeyAcceptedKeyTypes +ssh-rsa
  HostKeyAlgorithms +ssh-rsa

Host server
  HostName 127.0.0.1
  User vagrant
  Port 2201
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /home/ann/lab/vagrant/.vagrant-labs/lab/machines/server/virtualbox/private_key
  IdentityFile /home/ann/.vagrant.d/insecure_private_key
  IdentitiesOnly yes
  LogLevel FATAL

Host client
  HostName 192.168.121.57
  User vagrant
  Port 22
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /home/ann/lab/vagrant/.vagrant-labs/lab/machines/client/libvirt/private_key
  IdentitiesOnly yes
  LogLevel FATAL

"""
# The IdentityFile with a space, as Vagrant writes it: quoted.
SSH_CONFIG = SSH_CONFIG.replace("IdentityFile /home/ann/mta lab/vagrant/.vagrant-labs/lab/machines/"
                                "internet/virtualbox/private_key",
                                'IdentityFile "/home/ann/mta lab/vagrant/.vagrant-labs/lab/machines/'
                                'internet/virtualbox/private_key"')

STATUS = """\
1700000000,internet,metadata,provider,virtualbox
1700000000,relay,metadata,provider,virtualbox
1700000000,server,metadata,provider,virtualbox
1700000000,client,metadata,provider,virtualbox
1700000001,internet,provider-name,virtualbox
1700000001,internet,state,running
1700000001,internet,state-human-short,running
1700000001,internet,state-human-long,The VM is running. To stop this VM%!(VAGRANT_COMMA) you can run `vagrant halt` to\\nshut it down forcefully%!(VAGRANT_COMMA) or you can run `vagrant suspend` to simply\\nsuspend the virtual machine.
1700000001,relay,provider-name,virtualbox
1700000001,relay,state,running
1700000001,relay,state-human-short,running
1700000001,server,provider-name,virtualbox
1700000001,server,state,poweroff
1700000001,server,state-human-short,poweroff
1700000001,client,provider-name,virtualbox
1700000001,client,state,not_created
1700000001,client,state-human-short,not created
1700000001,,ui,info,Current machine states:\\n\\ninternet                  running (virtualbox)\\nrelay                     running (virtualbox)\\nserver                    poweroff (virtualbox)\\nclient                    not created (virtualbox)
"""  # noqa: E501 - Vagrant's lines as they are


def test_ssh_config_of_four_machines_is_parsed_with_their_options():
    hosts = parse_ssh_config(SSH_CONFIG)
    assert list(hosts) == SAMPLE_HOSTS
    relay = dict(hosts["relay"])
    assert relay["HostName"] == "127.0.0.1" and relay["Port"] == "2200" and relay["User"] == "vagrant"
    assert relay["IdentityFile"] == ("/home/ann/lab/vagrant/.vagrant-labs/lab/machines/relay/"
                                     "virtualbox/private_key")
    assert ("IdentityFile", "/home/ann/mta lab/vagrant/.vagrant-labs/lab/machines/internet/virtualbox/"
            "private_key") in hosts["internet"]  # quotes removed
    assert [v for k, v in hosts["server"] if k == "IdentityFile"] == [
        "/home/ann/lab/vagrant/.vagrant-labs/lab/machines/server/virtualbox/private_key",
        "/home/ann/.vagrant.d/insecure_private_key"]  # both keys kept, in order
    assert dict(hosts["client"])["HostName"] == "192.168.121.57"
    assert [k for k, _ in hosts["relay"]] == [
        "HostName", "User", "Port", "UserKnownHostsFile", "StrictHostKeyChecking",
        "PasswordAuthentication", "IdentityFile", "IdentitiesOnly", "LogLevel",
        "PubkeyAcceptedKeyTypes", "HostKeyAlgorithms"]


def test_the_ssh_config_written_has_one_host_block_per_machine_and_reads_back_the_same():
    hosts = parse_ssh_config(SSH_CONFIG)
    text = format_ssh_config(hosts)
    assert [ln for ln in text.splitlines() if ln.startswith("Host ")] == [f"Host {h}" for h in SAMPLE_HOSTS]
    assert ('  IdentityFile "/home/ann/mta lab/vagrant/.vagrant-labs/lab/machines/internet/'
            'virtualbox/private_key"') in text.splitlines()
    assert "  Port 2201" in text.splitlines()
    assert parse_ssh_config(text) == hosts


def test_a_proxy_command_is_kept_as_vagrant_wrote_it():
    proxy = "ssh 'lab host' -l 'ann' -i '/home/ann/.ssh/id_ed25519' nc %h %p"
    hosts = parse_ssh_config(f"Host relay\n  HostName 192.168.121.20\n  ProxyCommand {proxy}\n")
    assert dict(hosts["relay"])["ProxyCommand"] == proxy
    assert f"  ProxyCommand {proxy}" in format_ssh_config(hosts).splitlines()


@pytest.mark.parametrize("reason,kind,code", [
    ("Connection refused", ConnectionRefusedError, errno.ECONNREFUSED),
    ("Connection timed out", TimeoutError, errno.ETIMEDOUT),
    ("No route to host", OSError, errno.EHOSTUNREACH),
    ("open failed", OSError, errno.ENETUNREACH),          # sshd: connect() failed at once
    ("Name or service not known", socket.gaierror, socket.EAI_NONAME),
])
def test_why_the_vm_could_not_connect_becomes_the_oserror_a_socket_raises(reason, kind, code):
    exc = vagrantmod._os_error(reason, "192.168.57.30:25 from internet")
    assert type(exc) is kind and exc.errno == code
    assert "192.168.57.30:25 from internet" in str(exc)


def test_machine_readable_status_is_parsed():
    machines = parse_machine_readable(STATUS)
    assert list(machines) == SAMPLE_HOSTS
    assert {n: m.state for n, m in machines.items()} == {
        "internet": "running", "relay": "running", "server": "poweroff", "client": "not_created"}
    assert [n for n, m in machines.items() if m.running] == ["internet", "relay"]
    assert machines["client"].human == "not created"
    assert all(m.provider == "virtualbox" for m in machines.values())
    assert "" not in machines  # the ui line has no target


# --- the fakes ----------------------------------------------------------------------------

FAKE_VAGRANT = r'''
import json, os, signal, sys, time
from pathlib import Path
HOSTS = ["internet", "relay", "mx2", "server", "client"]
log = open(os.environ["FAKE_LOG"], "a")
log.write(json.dumps({"prog": "vagrant", "argv": sys.argv[1:], "cwd": os.getcwd(),
          "env": {k: os.environ.get(k) for k in ("VAGRANT_CWD", "VAGRANT_DOTFILE_PATH",
                                                 "LABKIT_TOPOLOGY")}}) + "\n")
log.flush()
dot = Path(os.environ["VAGRANT_DOTFILE_PATH"])
cmd = sys.argv[1:]
if cmd == ["up"]:
    for h in HOSTS:
        print(f"Bringing machine '{h}' up with 'libvirt' provider...", flush=True)
    for h in HOSTS:
        print(f"==> {h}: Creating domain with the following settings...", flush=True)
        (dot / "machines" / h / "libvirt").mkdir(parents=True, exist_ok=True)
        (dot / "machines" / h / "libvirt" / "id").write_text(f"id-{h}")
        if os.environ.get("FAKE_UP_SLOW"):
            def stop(signum, frame):
                log.write(json.dumps({"prog": "vagrant", "event": "up interrupted"}) + "\n")
                log.flush()
                sys.exit(1)
            signal.signal(signal.SIGINT, stop)
            time.sleep(60)
        print(f"    {h}: Running provisioner: labkit (shell)...", flush=True)
        if os.environ.get("FAKE_UP_FAIL") == h:
            print(f"    {h}: E: Unable to locate package sendmail", flush=True)
            print("The SSH command responded with a non-zero exit status. Vagrant", file=sys.stderr)
            print("assumes that this means the command failed.", file=sys.stderr)
            sys.exit(1)
    sys.exit(0)
if cmd == ["status", "--machine-readable"]:
    states = dict(kv.split("=") for kv in os.environ.get("FAKE_STATES", "").split(",") if kv)
    for h in HOSTS:
        state = states.get(h, "running" if (dot / "machines" / h / "libvirt" / "id").exists()
                           else "not_created")
        print(f"1700000000,{h},provider-name,libvirt")
        print(f"1700000000,{h},state,{state}")
        print(f"1700000000,{h},state-human-short,{state.replace('_', ' ')}")
    sys.exit(0)
if cmd == ["ssh-config"]:
    for i, h in enumerate(HOSTS):
        print(f"Host {h}\n  HostName 127.0.0.1\n  User vagrant\n  Port {2222 + i}\n"
              f"  IdentityFile {dot}/machines/{h}/libvirt/private_key\n  IdentitiesOnly yes\n"
              "  LogLevel FATAL\n")
    sys.exit(0)
if cmd == ["destroy", "-f"]:
    for h in HOSTS:
        ident = dot / "machines" / h / "libvirt" / "id"
        if ident.exists():
            print(f"==> {h}: Removing domain...")
            ident.unlink()
    sys.exit(0)
print(f"fake vagrant: unexpected {cmd}", file=sys.stderr)
sys.exit(2)
'''

FAKE_SSH = r'''
import json, os, socket, subprocess, sys, threading, time
from pathlib import Path
argv = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({"prog": "ssh", "argv": argv}) + "\n")
opts = {}
i = 0
while i < len(argv) and argv[i].startswith("-"):
    a = argv[i]
    if a in ("-F", "-o", "-E", "-W", "-O"):
        val = argv[i + 1]
        if a == "-o":
            k, v = val.split("=", 1)
            opts.setdefault(k, v)      # the first value wins, as in ssh
        else:
            opts.setdefault(a, val)
        i += 2
    else:
        opts[a] = True
        i += 1
host, command = argv[i], argv[i + 1:]
control = Path(opts["ControlPath"])
if "-O" in opts:
    if opts["-O"] == "exit" and control.exists():
        control.unlink()
        sys.exit(0)
    sys.exit(0 if control.exists() else 255)
if "-N" in opts:                                   # the master
    if os.environ.get("FAKE_SSH_DOWN"):
        Path(opts["-E"]).write_text("ssh: connect to host 127.0.0.1 port 2223: Connection refused\n")
        sys.exit(255)
    control.write_text(opts["-E"])                 # the fake socket remembers the master's log
    sys.exit(0)
if "-W" in opts:
    addr, port = opts["-W"].rsplit(":", 1)
    if os.environ.get("FAKE_SSH_HANG"):
        time.sleep(60)
    try:
        tcp = socket.create_connection((addr, int(port)), timeout=5)
    except OSError as exc:
        with open(control.read_text(), "a") as mlog:
            mlog.write(f"channel 2: open failed: connect failed: {exc.strerror}\r\n")
        print("Stdio forwarding request failed: Session open refused by peer", file=sys.stderr)
        sys.exit(255)
    tcp.settimeout(None)
    print("debug1: mux_client_request_stdio_fwd: master session id: 2", file=sys.stderr, flush=True)
    ours = socket.socket(fileno=os.dup(0))
    def pump(src, dst):
        while data := src.recv(65536):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    t = threading.Thread(target=pump, args=(tcp, ours))
    t.start()
    pump(ours, tcp)
    t.join()
    sys.exit(0)
(remote,) = command
prefix = "sudo -n -- "
if not remote.startswith(prefix):
    print(f"fake ssh: not run with sudo: {remote}", file=sys.stderr)
    sys.exit(99)
env = dict(os.environ, PATH=os.environ["FAKE_STUBS"] + ":" + os.environ["PATH"])
sys.exit(subprocess.run(["sh", "-c", remote[len(prefix):]], env=env).returncode)
'''

FAKE_STUB = r'''
import json, os, sys
name = os.path.basename(sys.argv[0])
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({"prog": name, "argv": sys.argv[1:]}) + "\n")
if name == "systemctl" and sys.argv[1] == "is-active":
    bad = os.environ.get("FAKE_FAILED", "").split(",")
    words = ["failed" if s in bad else "active" for s in sys.argv[2:]]
    print("\n".join(words))
    sys.exit(0 if "failed" not in words else 3)
if name == "journalctl":
    print("Nov 23 10:00:00 relay dnsmasq[123]: bad option")
'''


def _script(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """A directory of fakes first on PATH, a log of their calls, and a fresh labs root."""
    bin_dir, stubs = tmp_path / "bin", tmp_path / "stubs"
    bin_dir.mkdir()
    stubs.mkdir()
    _script(bin_dir / "vagrant", FAKE_VAGRANT)
    _script(bin_dir / "ssh", FAKE_SSH)
    stub = _script(stubs / "stub", FAKE_STUB)
    for name in ("systemctl", "make", "newaliases", "postfix", "journalctl"):
        (stubs / name).symlink_to(stub)
    log = tmp_path / "calls.jsonl"
    log.touch()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_STUBS", str(stubs))
    # A short root, so that the master sockets fit under it (see the control_path test).
    labs = Path(tempfile.mkdtemp(prefix="lk-labs-"))
    monkeypatch.setenv("LABKIT_VAGRANT_LABS", str(labs))
    for var in ("FAKE_UP_FAIL", "FAKE_UP_SLOW", "FAKE_STATES", "FAKE_FAILED", "FAKE_SSH_DOWN",
                "FAKE_SSH_HANG"):
        monkeypatch.delenv(var, raising=False)

    class Fakes:
        root = tmp_path


        @staticmethod
        def calls(prog: str | None = None) -> list[dict]:
            rows = [json.loads(ln) for ln in log.read_text().splitlines()]
            return [r for r in rows if prog is None or r.get("prog") == prog]

    Fakes.labs = labs
    yield Fakes
    shutil.rmtree(labs, ignore_errors=True)


@pytest.fixture
def engine(fakes):  # noqa: ARG001 - the fakes must be on PATH
    engine = VagrantEngine(topolib.load(), "unit")
    yield engine
    shutil.rmtree(engine.control_dir, ignore_errors=True)


@pytest.fixture
def running(engine):
    """The engine as after `up`: an ssh-config from `vagrant ssh-config` (the fake's)."""
    engine.write_ssh_config()
    return engine


# --- command lines ---------------------------------------------------------------------

def test_run_and_shell_command_lines_are_exact(running):
    cfg = str(running.dotfile_dir / "ssh-config")
    ctl = str(running.control_path("relay"))
    assert ctl == str(running.dotfile_dir.resolve() / "ssh" / "relay")
    base = ["ssh", "-F", cfg, "-o", "ControlMaster=auto", "-o", f"ControlPath={ctl}",
            "-o", "ControlPersist=10m", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR"]
    argv = ["printf", "%s\n", "it's \"quoted\"", "$HOME", "a  b", ""]
    assert running.host_command("relay", argv) == [
        *base, "relay", """sudo -n -- printf '%s\n' 'it'"'"'s "quoted"' '$HOME' 'a  b' ''"""]
    assert running.shell_argv("relay") == [*base, "-t", "relay", "sudo -n -- /bin/bash --login"]
    assert running.forward_argv("relay", "192.168.56.10", 53) == [
        *base, "-v", "-W", "192.168.56.10:53", "relay"]
    assert shlex.split(running.host_command("relay", argv)[-1]) == ["sudo", "-n", "--", *argv]


def test_master_sockets_live_in_the_lab_directory_unless_the_path_is_too_long(fakes, monkeypatch):
    monkeypatch.setenv("LABKIT_VAGRANT_LABS", "/work/mta-lab/vagrant/.vagrant-labs")
    engine = VagrantEngine(topolib.load(), "alice")
    assert engine.control_path("relay") == Path("/work/mta-lab/vagrant/.vagrant-labs/alice/ssh/relay")
    monkeypatch.setenv("LABKIT_VAGRANT_LABS", "/home/" + "x" * 80 + "/vagrant/.vagrant-labs")
    sock = engine.control_path("internet")
    assert sock.parent.parent == Path(tempfile.gettempdir()) and sock.name == "internet"
    assert sock.parent.name.startswith("labkit-ssh-") and len(str(sock)) + 17 < 100


def test_the_ssh_config_file_is_the_lab_own_with_vagrant_settings(running, fakes):
    hosts = parse_ssh_config(running.ssh_config_path.read_text())
    assert list(hosts) == HOSTS
    assert dict(hosts["server"])["Port"] == "2225"
    assert dict(hosts["relay"])["IdentityFile"] == f"{running.dotfile_dir}/machines/relay/libvirt/private_key"
    assert running.dotfile_dir == fakes.labs / "unit"


# --- run through the fake ssh ------------------------------------------------------------

def test_run_quotes_every_word_and_reports_exit_codes_streams_and_timeouts(running, fakes):
    res = running.run("relay", ["printf", "%s|", "it's \"quoted\"", "$HOME", "a  b", "", "*"])
    assert (res.returncode, res.stdout, res.stderr) == (0, """it's "quoted"|$HOME|a  b||*|""", "")
    res = running.run("relay", ["sh", "-c", "cat; echo oops >&2; exit 7"], input="from stdin\n")
    assert (res.returncode, res.stdout, res.stderr) == (7, "from stdin\n", "oops\n")
    assert not res.ok and res.host == "relay"
    started = time.monotonic()
    res = running.run("relay", ["sleep", "20"], timeout=0.5)
    assert res.returncode == 124 and "timed out" in res.stderr
    assert time.monotonic() - started < 5
    ssh = fakes.calls("ssh")
    masters = [c["argv"] for c in ssh if "-N" in c["argv"]]
    assert len(masters) == 1, "one master connection for the host, reused by every command"
    assert "ControlMaster=auto" in masters[0] and "ControlPersist=10m" in masters[0]
    assert masters[0][-3:] == ["-f", "-N", "relay"]
    assert len([c for c in ssh if c["argv"][-1].startswith("sudo -n -- ")]) == 3


def test_read_and_write_file_go_through_run(running, tmp_path):
    target = tmp_path / "deep" / "dir" / "f.txt"
    running.write_file("relay", str(target), "a 'b'\n", mode="0600")
    assert target.read_text() == "a 'b'\n" and oct(target.stat().st_mode)[-3:] == "600"
    assert running.read_file("relay", str(target)) == "a 'b'\n"


def test_a_lab_not_up_or_a_vm_unreachable_is_lab_not_running(engine, fakes, monkeypatch):
    with pytest.raises(LabNotRunningError, match="not running under Vagrant"):
        engine.run("relay", ["true"])
    engine.write_ssh_config()
    monkeypatch.setenv("FAKE_SSH_DOWN", "1")
    with pytest.raises(LabNotRunningError, match="port 2223: Connection refused"):
        engine.run("relay", ["true"])


def test_vms_without_an_ssh_config_get_one_from_vagrant_on_first_use(engine, fakes):
    engine.up(None)
    engine.ssh_config_path.unlink()
    assert engine.run("server", ["echo", "back"]).stdout == "back\n"
    assert fakes.calls("vagrant")[-1]["argv"] == ["ssh-config"]
    assert list(parse_ssh_config(engine.ssh_config_path.read_text())) == HOSTS


# --- connect through the fake ssh -W -----------------------------------------------------

@pytest.fixture
def echo_server():
    """A loopback TCP server: says hello, then answers each chunk upper-cased."""
    srv = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"220 hello\r\n")
                while data := conn.recv(4096):
                    conn.sendall(data.upper())

    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1]
    srv.close()


def test_connect_carries_bytes_both_ways_through_ssh_W(running, fakes, echo_server):
    sock = running.connect("relay", "127.0.0.1", echo_server, timeout=5)
    try:
        assert sock.gettimeout() == 5
        assert sock.getpeername() == ("127.0.0.1", echo_server)
        assert sock.recv(100) == b"220 hello\r\n"
        sock.sendall(b"ehlo there\r\n")
        got = b""
        while len(got) < 12:
            got += sock.recv(100)
        assert got == b"EHLO THERE\r\n"
    finally:
        sock.close()
    forwards = [c["argv"] for c in fakes.calls("ssh") if "-W" in c["argv"]]
    assert forwards == [running.forward_argv("relay", "127.0.0.1", echo_server)[1:]]


def test_connect_refused_is_connection_refused_error(running, fakes):
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with pytest.raises(ConnectionRefusedError, match=f"127.0.0.1:{port} from relay: Connection refused"):
        running.connect("relay", "127.0.0.1", port, timeout=5)


def test_connect_that_never_opens_times_out(running, fakes, monkeypatch):
    monkeypatch.setenv("FAKE_SSH_HANG", "1")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        running.connect("relay", "192.168.57.30", 25, timeout=0.7)
    assert time.monotonic() - started < 4


# --- up / down / status against the fake vagrant -----------------------------------------

def test_up_runs_vagrant_in_the_lab_state_streams_output_and_waits_for_services(engine, fakes):
    lines: list[str] = []
    engine.up(lines.append)
    calls = fakes.calls("vagrant")
    assert [c["argv"] for c in calls] == [["up"], ["ssh-config"]]
    for c in calls:
        assert c["env"]["VAGRANT_CWD"] == str(REPO / "vagrant") == c["cwd"]
        assert c["env"]["VAGRANT_DOTFILE_PATH"] == str(fakes.labs / "unit")
        assert c["env"]["LABKIT_TOPOLOGY"] == str(REPO / "labkit" / "topology.yaml")
    assert "  ==> relay: Creating domain with the following settings..." in lines
    assert "  relay: up" in lines and lines[-1].startswith("lab 'unit' up in ")
    assert list(parse_ssh_config(engine.ssh_config_path.read_text())) == HOSTS
    checked = [c["argv"] for c in fakes.calls("systemctl")]
    for host in engine.topology.hosts.values():
        if host.services:
            assert ["is-active", *host.services] in checked
    assert engine.is_running()


def test_a_failing_up_names_the_host_with_vagrant_last_lines_and_destroys(engine, fakes, monkeypatch):
    monkeypatch.setenv("FAKE_UP_FAIL", "relay")
    with pytest.raises(HostBootError) as err:
        engine.up(None)
    msg = str(err.value)
    assert msg.startswith("relay: vagrant up failed (exit 1); its output ends:")
    assert "relay: E: Unable to locate package sendmail" in msg
    assert "assumes that this means the command failed." in msg
    assert [c["argv"] for c in fakes.calls("vagrant")] == [["up"], ["destroy", "-f"]]
    assert not engine.dotfile_dir.exists()


def test_ctrl_c_during_up_stops_vagrant_and_destroys(fakes, monkeypatch):
    monkeypatch.setenv("FAKE_UP_SLOW", "1")
    code = "from labkit import topology as t; from labkit.engines.vagrant import VagrantEngine; " \
           "VagrantEngine(t.load(), 'unit').up(print)"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 15
    while not (fakes.labs / "unit" / "machines" / "internet" / "libvirt" / "id").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "up did not start vagrant"
        time.sleep(0.05)
    time.sleep(0.3)  # the fake is now waiting in `vagrant up`
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "KeyboardInterrupt" in out, out
    events = fakes.calls("vagrant")
    assert [e.get("argv") or e["event"] for e in events] == [["up"], "up interrupted", ["destroy", "-f"]]
    assert "did not start; removing what was made" in out
    assert not (fakes.labs / "unit").exists()


def test_up_refuses_a_running_lab_and_a_second_lab_with_vms(engine, fakes):
    engine.up(None)
    with pytest.raises(LabExistsError, match="already running"):
        engine.up(None)
    other = VagrantEngine(engine.topology, "other")
    with pytest.raises(LabExistsError, match="'unit' has VMs under Vagrant"):
        other.up(None)
    assert [c["argv"][0] for c in fakes.calls("vagrant")].count("up") == 1


def test_both_engines_refuse_a_running_lab_with_the_same_words(engine, fakes, monkeypatch):
    from labkit.engines import local as localmod
    monkeypatch.delenv("LABKIT_ENGINE", raising=False)
    engine.up(None)
    with pytest.raises(LabExistsError) as vagrant_err:
        engine.up(None)
    assert str(vagrant_err.value) == (
        "lab 'unit' is already running on the vagrant engine: use it, or stop it first with "
        "'labkit down --engine vagrant --lab unit'")
    local = localmod.LocalEngine(engine.topology, "unit")
    monkeypatch.setattr(localmod.preflight, "require_local_engine", lambda: None)
    monkeypatch.setattr(localmod.LocalEngine, "is_running", lambda self: True)
    with pytest.raises(LabExistsError) as local_err:
        local.up(None)
    assert str(local_err.value) == (
        "lab 'unit' is already running on the local engine: use it, or stop it first with "
        "'labkit down --lab unit', or pick another name with --lab")
    assert str(localmod.LocalEngine(engine.topology, "lab").already_running_error()) == (
        "lab 'lab' is already running on the local engine: use it, or stop it first with "
        "'labkit down', or pick another name with --lab")


def test_the_vagrant_engine_does_not_know_a_connection_source_port(running, fakes, echo_server):
    sock = running.connect("relay", "127.0.0.1", echo_server, timeout=5)
    try:
        assert running.source_address(sock) is None  # the VM opened it, not this socket
    finally:
        sock.close()


def test_status_reads_vagrant_states_and_services(engine, fakes, monkeypatch):
    engine.up(None)
    monkeypatch.setenv("FAKE_STATES", "server=poweroff,client=not_created")
    monkeypatch.setenv("FAKE_FAILED", "labkit-dns-forwarder")
    status = {s.name: s for s in engine.status()}
    assert list(status) == HOSTS
    assert [n for n, s in status.items() if s.running] == ["internet", "relay", "mx2"]
    assert status["server"].detail == "libvirt: poweroff"
    assert [(s.name, s.active, s.state) for s in status["relay"].services] == [
        ("sendmail", True, "active"), ("labkit-dns-forwarder", False, "failed"),
        ("labkit-milter", True, "active")]
    assert [(s.name, s.state) for s in status["server"].services] == [("postfix", "down")]
    assert status["relay"].addresses == ["192.168.56.20 (outside)", "192.168.57.20 (inside)"]
    assert fakes.calls("vagrant")[-1]["argv"] == ["status", "--machine-readable"]


def test_down_destroys_closes_connections_and_removes_the_lab_state(engine, fakes):
    engine.up(None)
    engine.run("relay", ["true"])
    assert engine.control_path("relay").exists()
    engine.down()
    assert [c["argv"] for c in fakes.calls("vagrant")][-1] == ["destroy", "-f"]
    assert any(c["argv"][-3:] == ["-O", "exit", "relay"] for c in fakes.calls("ssh"))
    assert not engine.dotfile_dir.exists() and not engine.is_running()
    n = len(fakes.calls("vagrant"))
    engine.down()  # nothing left: no vagrant call at all
    assert len(fakes.calls("vagrant")) == n


def test_a_service_that_does_not_start_after_up_is_named_with_its_journal(engine, fakes, monkeypatch):
    monkeypatch.setenv("FAKE_FAILED", "labkit-dns-forwarder")
    with pytest.raises(HostBootError) as err:
        engine.up(None)
    assert str(err.value).startswith("relay: service labkit-dns-forwarder did not start; its journal ends:")
    assert "dnsmasq[123]: bad option" in str(err.value)
    assert fakes.calls("vagrant")[-1]["argv"] == ["destroy", "-f"]


# --- reset --------------------------------------------------------------------------------

def _baseline(root: Path, tarball: Path, members: list[str]) -> None:
    with tarfile.open(tarball, "w:gz") as tar:
        for m in members:
            tar.add(root / m, arcname=m)


def test_reset_restores_the_baseline_rebuilds_and_restarts(running, fakes, tmp_path, monkeypatch):
    root = tmp_path / "vm"
    (root / "etc/mail").mkdir(parents=True)
    (root / "etc/mail/sendmail.mc").write_text("baseline mc\n")
    (root / "etc/aliases").write_text("postmaster: root\n")
    tarball = tmp_path / "mail-config.tar.gz"
    _baseline(root, tarball, ["etc/mail", "etc/aliases"])
    (root / "etc/mail/sendmail.mc").write_text("garbage(\n")
    (root / "etc/mail/learner-was-here").write_text("x\n")
    (root / "etc/aliases").write_text("changed\n")
    (root / "etc/hostname").write_text("relay\n")
    dropin = root / "etc/systemd/system/labkit-milter.service.d/unprivileged.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text("[Service]\nUser=labkit-milter\n")  # section 10's, not the baseline's
    (root / "etc/systemd/system/sendmail.service.d").mkdir()  # not the course's: kept
    monkeypatch.setattr(vagrantmod, "BASELINE", str(tarball))
    monkeypatch.setattr(vagrantmod, "RESET_ROOT", str(root))
    said: list[str] = []
    running.reset("relay", said.append)
    assert not dropin.parent.exists()
    assert (root / "etc/systemd/system/sendmail.service.d").exists()
    assert (root / "etc/mail/sendmail.mc").read_text() == "baseline mc\n"
    assert not (root / "etc/mail/learner-was-here").exists()
    assert (root / "etc/aliases").read_text() == "postmaster: root\n"
    assert (root / "etc/hostname").exists()  # only what the tarball holds is touched
    calls = [(c["prog"], c["argv"]) for c in fakes.calls() if c["prog"] not in ("ssh", "vagrant")]
    assert calls == [("make", ["-s", "-C", f"{root}/etc/mail"]), ("newaliases", []),
                     ("systemctl", ["restart", "sendmail", "labkit-dns-forwarder", "labkit-milter"]),
                     ("systemctl", ["is-active", "sendmail", "labkit-dns-forwarder",
                                    "labkit-milter"])]
    assert said == ["relay reset to its baseline mail configuration"]


def test_reset_of_a_postfix_host_replaces_etc_postfix(running, fakes, tmp_path, monkeypatch):
    root = tmp_path / "vm"
    (root / "etc/postfix").mkdir(parents=True)
    (root / "etc/postfix/main.cf").write_text("smtpd_banner = $myhostname ESMTP Postfix\n")
    (root / "etc/aliases").write_text("postmaster: root\n")
    (root / "etc/aliases.db").write_text("db\n")
    tarball = tmp_path / "mail-config.tar.gz"
    _baseline(root, tarball, ["etc/postfix", "etc/aliases", "etc/aliases.db"])
    (root / "etc/postfix/main.cf").write_text("smtpd_banner = hardened\n")
    (root / "etc/postfix/sasl_passwd").write_text("new\n")
    monkeypatch.setattr(vagrantmod, "BASELINE", str(tarball))
    monkeypatch.setattr(vagrantmod, "RESET_ROOT", str(root))
    running.reset("server")
    assert "ESMTP Postfix" in (root / "etc/postfix/main.cf").read_text()
    assert not (root / "etc/postfix/sasl_passwd").exists()
    calls = [(c["prog"], c["argv"]) for c in fakes.calls() if c["prog"] not in ("ssh", "vagrant")]
    assert calls == [("newaliases", []), ("postfix", ["status"]), ("postfix", ["reload"]),
                     ("systemctl", ["restart", "postfix"]), ("systemctl", ["is-active", "postfix"])]


# --- preflight and registration -------------------------------------------------------------

def test_preflight_names_what_is_missing(engine, fakes, tmp_path, monkeypatch):
    only = tmp_path / "only"
    only.mkdir()
    monkeypatch.setenv("PATH", str(only))
    need = r"install Vagrant and VirtualBox or libvirt, see docs/vagrant\.md"
    with pytest.raises(PreflightError, match=need):
        engine.up(None)
    (only / "vagrant").symlink_to(fakes.root / "bin" / "vagrant")
    with pytest.raises(PreflightError, match="'ssh'.*openssh-client"):
        engine.up(None)
    assert fakes.calls() == []


def test_vagrant_is_a_registered_engine():
    assert "vagrant" in ENGINES
    assert isinstance(get_engine("vagrant", topolib.load(), "lab"), VagrantEngine)
    args = build_parser().parse_args(["status", "--engine", "vagrant"])
    assert args.engine == "vagrant"


def test_the_reset_script_is_valid_sh():
    subprocess.run(["sh", "-n", "-c", vagrantmod.RESET_SCRIPT], check=True)
    assert textwrap.dedent(vagrantmod.RESET_SCRIPT).strip().startswith("set -eu")
