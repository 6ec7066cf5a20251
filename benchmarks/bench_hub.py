#!/usr/bin/env python3
"""Measure the class's hub: the memory of each learner's JupyterLab server (and of a
kernel that has run a check), with N learners logged in. Prints Markdown.

    python3 benchmarks/bench_hub.py --learners 5

Starts a class of its own (labs bench-hub01 ...), serves the hub on 127.0.0.1, logs each
learner in through the hub's API, starts their server, runs one graded check in a kernel
of each, measures the proportional set size (PSS) of every process of each learner's
system user, then stops the hub and the class and removes the users. Run as root.
"""

from __future__ import annotations

import argparse
import os
import pwd
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_lab import pss_kb  # noqa: E402

from tests.lab.test_hub import execute, free_port_block, login, start_server  # noqa: E402


def user_pss_mb(name: str) -> tuple[float, int]:
    uid = pwd.getpwnam(name).pw_uid
    total, count = 0, 0
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if p.stat().st_uid == uid:
                    total += pss_kb(int(p.name))
                    count += 1
            except OSError:
                continue
    return total / 1024, count


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--learners", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="labkit-bench-hub-"))
    tmp.chmod(0o755)
    names = [f"benchhub{i:02d}" for i in range(1, args.learners + 1)]
    env = {**os.environ, "LABKIT_CLASS": str(tmp / "class"), "LABKIT_HUB": str(tmp / "hub"),
           "LABKIT_SERVICE": str(tmp / "service.sock"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # this checkout's labkit
    (tmp / "roster.csv").write_text("".join(f"{n},pw-{n}\n" for n in names))
    labkit = [sys.executable, "-m", "labkit.cli", "class"]
    subprocess.run([*labkit, "up", "--roster", str(tmp / "roster.csv")], env=env, check=True,
                   capture_output=True)
    port = free_port_block()
    hub = subprocess.Popen([*labkit, "serve", "--ip", "127.0.0.1", "--port", str(port)],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = tmp / "hub.log"
    threading.Thread(target=lambda: log.write_text("".join(hub.stdout)), daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        import requests
        for _ in range(120):
            try:
                if requests.get(f"{url}/hub/api", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if hub.poll() is not None:
                raise SystemExit(f"the hub stopped: see {log}")
            time.sleep(0.5)
        for n in names:
            token = login(url, n, f"pw-{n}")
            t0 = time.monotonic()
            start_server(url, n, token)
            started = time.monotonic() - t0
            idle, _ = user_pss_mb(n)
            execute(url, n, token, "from labkit import Lab, checks\n"
                    "checks.run_checks(Lab(progress=None), [checks.get('privacy.vrfy_disabled')])",
                    delete=False)
            busy, procs = user_pss_mb(n)
            rows.append((n, started, idle, busy, procs))
    finally:
        hub.send_signal(signal.SIGINT)
        hub.wait(60)
        subprocess.run([*labkit, "down"], env=env, capture_output=True)
        for n in names:
            subprocess.run(["userdel", "--remove", n], capture_output=True)
    print(f"| measure | figure ({len(rows)} learners logged in, {os.cpu_count()} cores) |")
    print("|---|---|")
    print(f"| a learner's server started in, median | {statistics.median(r[1] for r in rows):.1f} s |")
    print(f"| JupyterLab server alone (PSS), median | {statistics.median(r[2] for r in rows):.0f} MB |")
    print(f"| with one kernel that ran a check (PSS of both), median | "
          f"{statistics.median(r[3] for r in rows):.0f} MB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
