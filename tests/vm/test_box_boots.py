"""The lab's own Vagrant box, booted for real: built (or taken from the cache), libvirt
started, the relay brought up as a VM under QEMU's software emulation (KVM does not run
guests on the CI machine) by the project's Vagrantfile and provisioned from the box's own
repository with no network, answering SMTP from this machine; then destroyed, leaving
nothing. One VM is what fits the suite's time; the whole lab as VMs is
benchmarks/bench_vagrant.py (figures in docs/vagrant.md)."""

from __future__ import annotations

import os
import smtplib
import subprocess
import time
import uuid

import pytest

from labkit import box, topology
from labkit.engines import libvirtd
from labkit.topology import REPO_DIR

pytestmark = pytest.mark.vm

HOST = "relay"


def _vagrant(args: list[str], env: dict, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(["vagrant", *args], env=env, cwd=REPO_DIR / "vagrant",
                          capture_output=True, text=True, timeout=timeout)


def _domains() -> str:
    return subprocess.run(["virsh", "-c", libvirtd.URI, "list", "--all", "--name"],
                          capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def relay_vm(tmp_path_factory):
    built = box.build(topology.load())
    assert built.path.exists() and built.packages > 100, built
    libvirtd.ensure_running()
    dotfile = tmp_path_factory.mktemp("vagrant") / f"vm{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "VAGRANT_DOTFILE_PATH": str(dotfile), "LABKIT_LIBVIRT_EMULATE": "1",
           "VAGRANT_DEFAULT_PROVIDER": "libvirt", "VAGRANT_CHECKPOINT_DISABLE": "1"}
    started = time.monotonic()
    up = _vagrant(["up", HOST], env)
    info = {"up": up, "env": env, "seconds": time.monotonic() - started, "box": built}
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-2000:]
        yield info
    finally:
        _vagrant(["destroy", "-f"], env, timeout=300)


def test_the_relay_is_provisioned_from_the_box_with_no_network(relay_vm):
    out = relay_vm["up"].stdout
    assert "nothing to lift, the packages come from the box's own repository" in out, out[-3000:]
    assert f"[provision {HOST}] done" in out, out[-3000:]
    print(f"vagrant up {HOST}: {relay_vm['seconds']:.0f} s under emulation; box "
          f"{relay_vm['box'].summary()}")


def test_the_relay_vm_answers_smtp_from_this_machine(relay_vm):
    address = str(topology.load().host(HOST).interfaces[0].address)
    with smtplib.SMTP(address, 25, timeout=120) as s:
        code, banner = s.ehlo("test.example.net")
        assert code == 250, banner
        assert b"relay.example.com" in banner
    # the admin's own tool sees the same server
    swaks = subprocess.run(["swaks", "--server", address, "--quit-after", "EHLO",
                            "--ehlo", "test.example.net"], capture_output=True, text=True,
                           timeout=180)
    assert "ESMTP Sendmail" in swaks.stdout and "250-relay.example.com" in swaks.stdout, \
        swaks.stdout


def test_the_relay_vm_has_no_route_off_the_lab(relay_vm):
    routes = _vagrant(["ssh", HOST, "-c", "ip -4 route show; ip -6 route show default"],
                      relay_vm["env"], timeout=300)
    assert routes.returncode == 0, routes.stderr
    assert "default" not in routes.stdout, routes.stdout
    assert "192.168.56.0/24" in routes.stdout, routes.stdout


def test_destroying_the_vm_leaves_no_domain_and_no_lab_network(relay_vm):
    gone = _vagrant(["destroy", "-f"], relay_vm["env"], timeout=300)
    assert gone.returncode == 0, gone.stderr
    assert "_relay" not in _domains()
    nets = subprocess.run(["virsh", "-c", libvirtd.URI, "net-list", "--all", "--name"],
                          capture_output=True, text=True).stdout
    assert "labkit-" not in nets, nets
