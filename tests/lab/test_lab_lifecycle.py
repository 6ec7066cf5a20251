"""The local engine's life cycle: several labs, down leaves nothing, reset, stale labs, Ctrl-C."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from labkit import Lab
from labkit.engines.local import LocalEngine, state_root
from labkit.errors import HostBootError, LabExistsError, LabNotRunningError
from tests.lab.conftest import lab_name, wait_for

pytestmark = pytest.mark.lab


def leftovers(name: str) -> list[str]:
    """Everything of lab ``name`` still on this machine: namespaces, mounts, files, processes."""
    found = [f"netns {p.name}" for p in Path("/run/netns").glob(f"lk.{name}.*")]
    found += [f"mount {line.split()[1]}" for line in Path("/proc/mounts").read_text().splitlines()
              if f"/{name}/" in line.split()[1] and str(state_root()) in line.split()[1]]
    if (state_root() / name).exists():
        found.append(f"dir {state_root() / name}")
    out = subprocess.run(["pgrep", "-af", f"--machine=lk-{name}-"], capture_output=True, text=True)
    found += [f"process {ln}" for ln in out.stdout.splitlines()]
    return found


def test_a_second_lab_runs_beside_the_first_and_down_leaves_nothing(lab):
    second = Lab(lab_name("b"), progress=None)
    try:
        second.up()
        assert lab.is_running() and second.is_running()
        # Same addresses, separate worlds: each relay answers in its own lab.
        for each in (lab, second):
            res = each.run("internet", ["nc", "-w", "3", "192.168.56.20", "25"], input="QUIT\r\n")
            assert res.stdout.startswith("220 relay.example.com"), res.stdout
        second.write_file("relay", "/root/only-in-b", "b\n")
        assert not lab.run("relay", ["test", "-e", "/root/only-in-b"]).ok
    finally:
        second.down()
    assert leftovers(second.name) == []
    assert lab.is_running()


def test_up_refuses_a_lab_name_already_running(lab):
    with pytest.raises(LabExistsError, match="already running"):
        Lab(lab.name, progress=None).up()


def test_reset_restores_a_changed_host(lab):
    lab.write_file("relay", "/etc/mail/learner-was-here", "x\n")
    lab.run("relay", "echo 'garbage(' >> /etc/mail/sendmail.mc").check()
    lab.run("relay", ["systemctl", "stop", "sendmail"]).check()
    lab.reset("relay")
    assert not lab.run("relay", ["test", "-e", "/etc/mail/learner-was-here"]).ok
    assert "garbage(" not in lab.read_file("relay", "/etc/mail/sendmail.mc")
    assert lab.run("relay", ["systemctl", "is-active", "sendmail"]).stdout.strip() == "active"
    res = lab.run("internet", ["nc", "-w", "3", "192.168.56.20", "25"], input="QUIT\r\n")
    assert res.stdout.startswith("220 relay.example.com")


def test_a_stale_lab_is_recognised_and_cleared_by_up(lab):  # noqa: ARG001 - after the main lab
    name = lab_name("s")
    stale = Lab(name, progress=None)
    stale.up()
    engine = stale.engine
    assert isinstance(engine, LocalEngine)
    # A stopped session: every process is killed; namespaces, mounts and files stay.
    for host in stale.topology.hosts:
        for pid in engine.host_pids(host):
            subprocess.run(["kill", "-KILL", str(pid)])
    for pid in engine._nspawn_pids().values():
        subprocess.run(["kill", "-KILL", str(pid)])
    wait_for(lambda: not engine.is_running(), timeout=15, what="the killed lab to stop")
    assert leftovers(name), "a killed lab should leave namespaces and mounts behind"
    with pytest.raises(LabNotRunningError):
        stale.run("relay", ["true"])
    try:
        stale.up()  # recognises the stale lab, clears it, starts afresh
        assert stale.run("relay", ["systemctl", "is-active", "sendmail"]).stdout.strip() == "active"
    finally:
        stale.down()
    assert leftovers(name) == []


def test_ctrl_c_during_up_leaves_nothing():
    name = lab_name("c")
    proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", "up", "--lab", name],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: Path(f"/run/netns/lk.{name}.relay").exists() or proc.poll() is not None,
             timeout=30, interval=0.05, what="up to start making the lab")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "interrupted" in out
    assert leftovers(name) == []


def test_a_service_that_does_not_start_is_named_with_its_journal(lab):
    """What `up` reports when a host boots but one of its services fails."""
    override = "/etc/systemd/system/labkit-dns-forwarder.service.d/broken.conf"
    lab.write_file("relay", override,
                   "[Service]\nRestart=no\nExecStart=\nExecStart=/usr/sbin/dnsmasq --no-such-option\n")
    try:
        lab.run("relay", "systemctl daemon-reload; systemctl restart labkit-dns-forwarder")
        wait_for(lambda: lab.run("relay", ["systemctl", "is-failed", "labkit-dns-forwarder"]).ok,
                 timeout=15, what="the broken service to fail")
        engine = lab.engine
        assert isinstance(engine, LocalEngine)
        with pytest.raises(HostBootError) as err:
            engine._check_services("relay")
        message = str(err.value)
        assert message.startswith("relay: service labkit-dns-forwarder did not start")
        assert "its journal ends:" in message and "dnsmasq" in message
    finally:
        lab.run("relay", f"rm -f {override}; systemctl daemon-reload; "
                "systemctl restart labkit-dns-forwarder").check()


def _capabilities(text: str) -> dict[str, str]:
    return dict(line.split(":\t") for line in text.splitlines() if line.startswith("Cap"))


def test_a_command_on_a_host_has_the_capabilities_of_the_hosts_own_processes(lab):
    own = _capabilities(lab.run("internet", ["cat", "/proc/1/status"]).check().stdout)
    entered = _capabilities(lab.run("internet", ["cat", "/proc/self/status"]).check().stdout)
    assert entered["CapBnd"] == own["CapBnd"]
    assert int(entered["CapEff"], 16) & ~int(own["CapBnd"], 16) == 0
    assert not int(entered["CapBnd"], 16) >> 16 & 1  # no CAP_SYS_MODULE


def test_a_root_shell_on_a_host_cannot_load_modules_or_rewire_the_network(lab):
    """A kernel module needs CAP_SYS_MODULE, which the shell lacks (this machine's kernel
    loads no modules at all: finit_module answers ENOSYS even to the machine's root, so
    the capability is what is shown); CAP_NET_ADMIN, which the host's own root lacks too,
    is refused for real."""
    script = ("grep CapEff /proc/self/status; ip link add lk-probe type dummy; "
              "echo rc=$?\n")
    shell = subprocess.run(lab.engine.shell_argv("internet"), input=script,
                           capture_output=True, text=True, timeout=30)
    out = shell.stdout + shell.stderr
    eff = int(next(ln for ln in out.splitlines() if ln.startswith("CapEff")).split()[1], 16)
    assert not eff >> 16 & 1 and not eff >> 12 & 1, out  # CAP_SYS_MODULE, CAP_NET_ADMIN
    assert "Operation not permitted" in out and "rc=2" in out, out


def test_a_root_shell_on_a_host_cannot_make_or_open_the_servers_disk(lab):
    """The host's root keeps CAP_MKNOD, as under systemd-nspawn anywhere; the lab's device
    policy refuses it any block device and any character device a host does not need."""
    script = ("mknod /tmp/disk b 254 0; echo rc=$?; mknod /tmp/kmsg c 1 11; echo rc=$?; "
              "echo fine > /dev/null && head -c 1 /dev/urandom > /dev/null && echo ok\n")
    shell = subprocess.run(lab.engine.shell_argv("internet"), input=script,
                           capture_output=True, text=True, timeout=30)
    out = shell.stdout + shell.stderr
    assert out.count("Operation not permitted") == 2 and "rc=0" not in out, out
    assert "ok" in out.splitlines(), out


def test_every_process_of_a_host_is_under_the_labs_device_policy(lab):
    from labkit.engines import devices
    from labkit.engines.local import EXEC_CGROUP, unified_root
    assert devices.attached(unified_root() / "labkit" / lab.name) == 1
    leader = lab.engine._leader("relay")
    top = f"/labkit/{lab.name}/"
    assert f"::{top}relay" in Path(f"/proc/{leader}/cgroup").read_text()
    # a command entered on the host: in the lab's cgroup for commands, seen from the
    # host's cgroup namespace (its root is the host's init.scope)
    entered = lab.run("relay", ["cat", "/proc/self/cgroup"]).check().stdout
    unified = next(ln for ln in entered.splitlines() if ln.startswith("0::"))
    assert unified.endswith(f"/{EXEC_CGROUP}"), entered
