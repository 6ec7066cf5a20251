"""A submitted notebook's cells, run as a user of their own.

A submission is code a learner wrote; run by root, its cells could do anything on the
grading server. ``labkit grade --notebook`` (as root) therefore runs each submission's
kernel as a system user made for it, named as the submission's lab, without a login or a
password, in the learners' Python environment (``/opt/labkit/venv``, the one JupyterHub's
learners use). The cells reach their lab through a lab service of the grading's own, which
lets each such user act on the lab named after it and on no other: the same authority a
learner of a class has (labkit.service.server). The user, its processes and its files go
when the notebook is done.

Run as ``python -m labkit.checks.sandbox --lab LAB NOTEBOOK`` (by :func:`run_as`), it runs
the notebook and prints the errors its cells raised as a JSON list on its last line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from labkit.errors import LabkitError

#: The learners' environment (setup.sh): Debian's Python with labkit and the kernel.
VENV = Path("/opt/labkit/venv")


class SandboxError(LabkitError):
    """A submission cannot be run as a user of its own."""


def available() -> bool:
    """True if submissions can run as users of their own here: root, with the learners'
    environment installed."""
    return os.geteuid() == 0 and (VENV / "bin" / "python").exists()


class GradingService:
    """A lab service for the grading: each submission's user acts on its own lab only."""

    def __init__(self) -> None:
        from labkit.service import server
        self.users: set[str] = set()
        self._dir = tempfile.mkdtemp(prefix="labkit-grading-")
        os.chmod(self._dir, 0o755)
        self.socket = os.path.join(self._dir, "service.sock")
        authority = server.Authority(learners=lambda: set(self.users))
        self._running = server.Running(self.socket, server.LabService(authority))

    def close(self) -> None:
        self._running.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> GradingService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def submission_user(name: str, service: GradingService) -> Iterator[Path]:
    """A system user ``name`` for one submission, with a private folder as its home (the
    folder yielded), allowed its own lab on ``service``; then its processes ended, the
    user and the folder removed."""
    try:
        pwd.getpwnam(name)
        raise SandboxError(f"a user {name!r} already exists on this machine: not a "
                           "submission's own; remove it or grade from another process")
    except KeyError:
        pass
    home = Path(tempfile.mkdtemp(prefix=f"labkit-{name}-"))
    made = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                           "--home-dir", str(home), "--shell", "/usr/sbin/nologin", name],
                          capture_output=True, text=True)
    if made.returncode:
        shutil.rmtree(home, ignore_errors=True)
        raise SandboxError(f"useradd {name}: {made.stderr.strip()}")
    try:
        user = pwd.getpwnam(name)
        os.chown(home, user.pw_uid, user.pw_gid)
        home.chmod(0o700)
        service.users.add(name)
        yield home
    finally:
        service.users.discard(name)
        _end_processes(name)
        subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def _end_processes(name: str, wait: float = 10) -> None:
    """SIGKILL every process of user ``name`` (a kernel's leftovers), until none is left."""
    deadline = time.monotonic() + wait
    while subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True).returncode == 0:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)


def run_as(user: str, home: Path, notebook: Path, lab: str, service: GradingService,
           timeout: float = 300) -> list[str]:
    """Run every cell of ``notebook`` as ``user`` (a copy in its ``home``), in a kernel
    talking to ``lab`` through ``service``; the errors its cells raised, one line each."""
    from labkit.topology import REPO_DIR
    copy = home / notebook.name
    shutil.copyfile(notebook, copy)
    pw = pwd.getpwnam(user)
    os.chown(copy, pw.pw_uid, pw.pw_gid)
    env = {"PATH": f"{VENV}/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
           "LABKIT_SERVICE": service.socket, "LABKIT_LAB": lab, "PYTHONPATH": str(REPO_DIR)}
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    argv = [runuser, "-u", user, "--", str(VENV / "bin" / "python"), "-m",
            "labkit.checks.sandbox", "--lab", lab, "--timeout", str(timeout), str(copy)]
    try:
        done = subprocess.run(argv, env=env, cwd=home, capture_output=True, text=True,
                              timeout=timeout * 2 + 120)
    except subprocess.TimeoutExpired:
        return [f"the notebook did not finish in {timeout * 2 + 120:.0f} s"]
    last = done.stdout.strip().splitlines()[-1:] or [""]
    try:
        return list(json.loads(last[0]))
    except ValueError:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return [f"the notebook could not run (exit {done.returncode}): " + " | ".join(tail)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m labkit.checks.sandbox",
                                description="run a notebook's cells against a lab; print "
                                "the errors its cells raised as JSON")
    p.add_argument("--lab", required=True)
    p.add_argument("--timeout", type=float, default=300)
    p.add_argument("notebook", type=Path)
    args = p.parse_args(argv)
    from labkit.checks.grading import run_notebook
    errors = run_notebook(args.notebook, args.lab, args.timeout)
    print(json.dumps(errors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
