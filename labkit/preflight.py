"""Checks that this machine can run a lab, each failing with one line saying what to do."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from labkit import sysutil
from labkit.errors import PreflightError

#: Tool -> the Debian package that provides it.
LOCAL_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "mmdebstrap": "mmdebstrap",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "mount": "mount",
}
NSPAWN_RUNTIME_DIR = Path("/run/systemd/nspawn")


def require_root() -> None:
    if os.geteuid() != 0:
        raise PreflightError(
            "the local engine needs root (network namespaces, mounts, containers): "
            "run it as root, e.g. 'sudo labkit up'")


def missing_tools() -> dict[str, str]:
    """Tools the local engine needs that are not on PATH, with their Debian package."""
    return {tool: pkg for tool, pkg in LOCAL_TOOLS.items() if shutil.which(tool) is None}


def require_local_engine() -> None:
    """Raise :class:`PreflightError` naming the first thing missing for the local engine."""
    require_root()
    missing = missing_tools()
    if missing:
        pkgs = " ".join(sorted(set(missing.values())))
        raise PreflightError(
            f"missing {', '.join(missing)}: install with 'apt-get install {pkgs}' "
            "(or run the README's set-up command)")
    filesystems = Path("/proc/filesystems").read_text()
    if "overlay" not in filesystems:
        sysutil.run(["modprobe", "overlay"], check=False)
        if "overlay" not in Path("/proc/filesystems").read_text():
            raise PreflightError(
                "the kernel has no overlay file system: load it with 'modprobe overlay' "
                "(package kmod), or use a kernel built with CONFIG_OVERLAY_FS")
    if not Path("/proc/self/ns/net").exists():
        raise PreflightError("the kernel has no network namespaces (CONFIG_NET_NS)")


def ensure_nspawn_runtime_dir() -> None:
    """systemd-nspawn without a host systemd needs a tmpfs at /run/systemd/nspawn."""
    if not os.path.ismount(NSPAWN_RUNTIME_DIR):
        NSPAWN_RUNTIME_DIR.mkdir(parents=True, exist_ok=True)
        sysutil.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs",
                     str(NSPAWN_RUNTIME_DIR)])


#: What one lab draws on root's inotify limits (every host's systemd, journald and
#: friends run as root): measured, 6 labs booted under Debian's 128 instances and the
#: 7th did not; 53 labs up held 1210 instances, about 23 each; with margin.
INOTIFY_PER_LAB = {"max_user_instances": 32, "max_user_watches": 4096}
#: Labs a limit must have room for before one starts: a class starts several at once
#: (each checks the room before any of them holds its instances).
INOTIFY_ROOM_FOR = 4
#: What labkit raises a too-low limit to: room for 40 labs, or for 16 more than run now.
INOTIFY_RAISE_TO = {"max_user_instances": 1024, "max_user_watches": 524288}
INOTIFY_RAISE_ROOM = 16
INOTIFY_SYSCTL = Path("/proc/sys/fs/inotify")


def root_inotify_use(proc: Path = Path("/proc")) -> dict[str, int]:
    """How many inotify instances and watches root's processes hold now."""
    instances = watches = 0
    for pid in proc.iterdir():
        if not pid.name.isdigit():
            continue
        try:
            if pid.stat().st_uid != 0:
                continue
            for fd in (pid / "fd").iterdir():
                if os.readlink(fd) == "anon_inode:inotify":
                    instances += 1
                    info = (pid / "fdinfo" / fd.name).read_text()
                    watches += sum(1 for ln in info.splitlines() if ln.startswith("inotify"))
        except OSError:  # a process that ended meanwhile, or not ours to read
            continue
    return {"max_user_instances": instances, "max_user_watches": watches}


def ensure_inotify_room(progress=None, sysctl: Path = INOTIFY_SYSCTL,
                        in_use: dict[str, int] | None = None) -> list[str]:
    """Make sure root's inotify limits leave room for a few more labs (a class starts
    several at once): raise a limit that is too low, to room for many more (saying so
    through ``progress``), or raise :class:`PreflightError` with the exact sysctl to run
    when it cannot be raised. Returns what it raised.

    Without this, a lab beyond the limit waits 90 s for hosts whose systemd cannot start
    ("Failed to create inotify object: Too many open files")."""
    in_use = root_inotify_use() if in_use is None else in_use
    raised = []
    for name, per_lab in INOTIFY_PER_LAB.items():
        path = sysctl / name
        limit = int(path.read_text())
        needed = in_use[name] + per_lab * INOTIFY_ROOM_FOR
        if limit >= needed:
            continue
        target = max(INOTIFY_RAISE_TO[name], in_use[name] + per_lab * INOTIFY_RAISE_ROOM)
        try:
            path.write_text(f"{target}\n")
        except OSError as exc:
            raise PreflightError(
                f"root's fs.inotify.{name} is {limit} and {in_use[name]} are in use: one "
                f"more lab needs about {per_lab} more, and labkit cannot raise it "
                f"({exc.strerror}). Run: sysctl -w fs.inotify.{name}={target} (to keep it: "
                f"echo fs.inotify.{name}={target} > /etc/sysctl.d/60-labkit.conf)") from exc
        raised.append(f"fs.inotify.{name} {limit} -> {target}")
        if progress:
            progress(f"  raised fs.inotify.{name} from {limit} to {target}: every lab's "
                     f"hosts draw on root's inotify {name.split('_')[-1]} ({in_use[name]} in use)")
    return raised
