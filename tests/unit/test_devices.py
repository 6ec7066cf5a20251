"""The lab hosts' device policy, loaded into this machine's kernel and tried on a cgroup
of the test's own."""

import os
import subprocess
import uuid

import pytest

from labkit.engines import devices
from labkit.engines.local import _remove_cgroup_tree, unified_root

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="a device program needs root")


@pytest.fixture
def confined():
    top = unified_root() / "labkit" / f"test-devices-{uuid.uuid4().hex[:8]}"
    top.mkdir(parents=True)
    try:
        devices.confine(top)
        yield top
    finally:
        _remove_cgroup_tree(top)


def _in(cgroup, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", f'echo $$ > "$0/cgroup.procs" && {script}', str(cgroup)],
                          capture_output=True, text=True, timeout=10)


def test_the_program_is_attached_once(confined):
    assert devices.attached(confined) == 1
    devices.confine(confined)
    assert devices.attached(confined) == 1


def test_a_confined_process_uses_the_devices_a_host_needs(confined):
    out = _in(confined, "head -c 4 /dev/zero | od -An -tx1 && echo x > /dev/null "
                        "&& head -c 4 /dev/urandom > /dev/null && echo ok")
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out


def test_a_confined_root_cannot_make_or_open_a_disk(confined, tmp_path):
    node = tmp_path / "disk"
    out = _in(confined, f"mknod {node} b 254 0")
    assert out.returncode != 0 and "Operation not permitted" in out.stderr, out
    assert not node.exists()


def test_a_confined_root_cannot_open_a_device_made_outside(confined, tmp_path):
    """/dev/kmsg made by the machine's root, opened from inside: refused, while the same
    node opens outside the cgroup."""
    node = tmp_path / "kmsg"
    subprocess.run(["mknod", str(node), "c", "1", "11"], check=True)
    outside = subprocess.run(["sh", "-c", f"exec 3< {node} && echo opened"],
                             capture_output=True, text=True, timeout=10)
    assert "opened" in outside.stdout, outside
    inside = _in(confined, f"exec 3< {node} && echo opened")
    assert "opened" not in inside.stdout and "Operation not permitted" in inside.stderr, inside

