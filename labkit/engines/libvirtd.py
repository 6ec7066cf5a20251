"""libvirt's daemons, on a machine whose init is not systemd.

On a laptop, Debian's ``libvirt-daemon-system`` runs libvirtd as a service and this
module has nothing to do. On a machine without systemd (a CI machine, a container),
:func:`ensure_running` configures and starts ``virtlogd`` and ``libvirtd`` by hand
(Debian 12's libvirt 9.0 is the monolithic daemon), with what such a machine needs:
QEMU run as root, no security driver (no AppArmor), no cgroup controllers (no
systemd-machined: VMs stay in the caller's cgroups), no polkit on the socket (root's
alone). :func:`stop` stops them again, after the VMs are gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from labkit.errors import LabkitError

URI = "qemu:///system"
QEMU_CONF = Path("/etc/libvirt/qemu.conf")
LIBVIRTD_CONF = Path("/etc/libvirt/libvirtd.conf")
BEGIN, END = "# labkit: begin (a machine without systemd)", "# labkit: end"
QEMU_SETTINGS = ('user = "root"', 'group = "root"', 'security_driver = "none"',
                 "cgroup_controllers = [ ]", "namespaces = [ ]")
LIBVIRTD_SETTINGS = ('auth_unix_ro = "none"', 'auth_unix_rw = "none"',
                     'unix_sock_rw_perms = "0700"',
                     'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"')
PIDFILES = {"libvirtd": Path("/run/libvirtd.pid"), "virtlogd": Path("/run/virtlogd.pid")}

Progress = Callable[[str], None]


class LibvirtError(LabkitError):
    """libvirt cannot be started or reached here."""


def systemd_runs() -> bool:
    return Path("/run/systemd/system").is_dir()


def is_running() -> bool:
    """True if libvirt answers on qemu:///system."""
    try:
        return subprocess.run(["virsh", "-c", URI, "version"], capture_output=True,
                              timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _with_block(text: str, lines: tuple[str, ...]) -> str:
    """``text`` with labkit's block of ``lines`` at its end (an older block replaced)."""
    if BEGIN in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head.rstrip("\n") + "\n" + tail.lstrip("\n")
    return text.rstrip("\n") + "\n" + "\n".join([BEGIN, *lines, END]) + "\n"


def configure() -> bool:
    """Put labkit's settings in qemu.conf and libvirtd.conf; True if a file changed."""
    changed = False
    for path, lines in ((QEMU_CONF, QEMU_SETTINGS), (LIBVIRTD_CONF, LIBVIRTD_SETTINGS)):
        if not path.exists():
            raise LibvirtError(f"{path} is missing: apt-get install libvirt-daemon-system "
                               "qemu-system-x86 (setup.sh does)")
        old = path.read_text()
        new = _with_block(old, lines)
        if new != old:
            path.write_text(new)
            changed = True
    return changed


def _alive(name: str) -> int | None:
    try:
        pid = int(PIDFILES[name].read_text().split()[0])
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError, IndexError):
        return None


def ensure_running(progress: Progress | None = None, wait: float = 60) -> bool:
    """libvirt answering on qemu:///system; started here (True) if it was not and
    systemd is not the init. With systemd, a LibvirtError says to start its service."""
    say = progress or (lambda _m: None)
    if is_running():
        return False
    if systemd_runs():
        raise LibvirtError("libvirt does not answer on qemu:///system: start it with "
                           "systemctl start libvirtd")
    if os.geteuid() != 0:
        raise LibvirtError("libvirt does not answer on qemu:///system, and starting it "
                           "needs root")
    changed = configure()
    if changed:
        stop()  # settings are read at start
    for name in ("virtlogd", "libvirtd"):
        if _alive(name) is None:
            PIDFILES[name].unlink(missing_ok=True)
            done = subprocess.run([f"/usr/sbin/{name}", "--daemon"], capture_output=True,
                                  text=True)
            if done.returncode:
                raise LibvirtError(f"{name} did not start: {done.stderr.strip()}")
    say("libvirt started (virtlogd, libvirtd) on this machine without systemd")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if is_running():
            return True
        time.sleep(1)
    raise LibvirtError(f"libvirtd started but does not answer on {URI} after {wait:.0f} s "
                       "(see /var/log/libvirt/libvirtd.log)")


def stop() -> None:
    """Stop libvirtd and virtlogd if they run (the VMs and networks first, please)."""
    for name in ("libvirtd", "virtlogd"):
        pid = _alive(name)
        if pid is None:
            continue
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if _alive(name) is None:
                break
            time.sleep(0.1)
