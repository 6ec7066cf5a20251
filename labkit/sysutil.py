"""Small helpers for the host machine: commands, mounts, safe removal of trees."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def run(argv: list[str], check: bool = True, timeout: float = 60,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command on this machine, capturing its output as text."""
    return subprocess.run(argv, check=check, timeout=timeout, input=input,
                          capture_output=True, text=True,
                          stdin=None if input is not None else subprocess.DEVNULL)


def _unescape_mount_path(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
        .replace("\\134", "\\")


def mounts() -> list[tuple[str, str, str, str]]:
    """(source, mount point, type, options) of every mount in this mount namespace."""
    result = []
    with open("/proc/self/mounts") as f:
        for line in f:
            src, target, fstype, opts = line.split()[:4]
            result.append((src, _unescape_mount_path(target), fstype, opts))
    return result


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    prefix = str(path.resolve()) if path.exists() else str(path)
    found = [m[1] for m in mounts() if m[1] == prefix or m[1].startswith(prefix + "/")]
    return sorted(set(found), key=len, reverse=True)


def unmount_under(path: Path) -> None:
    """Unmount everything mounted at or below ``path`` (lazily if busy)."""
    for target in mounts_under(path):
        if run(["umount", target], check=False).returncode != 0:
            run(["umount", "-l", target], check=False)


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything below it, never crossing into a mounted file system.

    Anything still mounted below it is unmounted first, so a half-built image with /proc
    or /dev bound in it is removed safely.
    """
    if not path.exists() and not path.is_symlink():
        return
    unmount_under(path)
    run(["rm", "-rf", "--one-file-system", str(path)], timeout=600)


def overlay_lowerdirs() -> set[Path]:
    """Lower directories of every overlay mounted on this machine (images in use)."""
    used: set[Path] = set()
    for _src, _target, fstype, opts in mounts():
        if fstype != "overlay":
            continue
        for opt in opts.split(","):
            if opt.startswith("lowerdir="):
                for d in opt[len("lowerdir="):].split(":"):
                    used.add(Path(d))
    return used


def disk_usage_mb(path: Path) -> float:
    """Disk space used below ``path`` in MB (du -s, one file system)."""
    out = run(["du", "-sxk", str(path)], check=False, timeout=300).stdout.split()
    return int(out[0]) / 1024 if out else 0.0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def children(pid: int) -> list[int]:
    """Direct children of ``pid``."""
    kids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            kids += [int(k) for k in text]
    except OSError:
        pass
    return kids
