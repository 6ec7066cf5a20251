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
