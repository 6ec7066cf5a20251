#!/usr/bin/env python3
"""Measure a class on this machine: how many labs fit, what each costs, and how fast a
check run is while all the others are up. Prints the figures as Markdown.

    python3 benchmarks/bench_class.py --learners 40 --at-once 4

Starts ``--learners`` labs with ``labkit class`` (names bench01 ..., a class folder of
its own), records the time of each start and of all together, the memory of every lab
(proportional set size of every process of its hosts, shared libraries split fairly),
the machine's available memory before and after, then runs every check of the course
against one lab while the others are up and idle, and stops the class. Run as root, on a
machine where no other class runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_lab import host_memory_mb  # noqa: E402

from labkit import Lab, checks, classroom  # noqa: E402


def available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--learners", type=int, default=40)
    ap.add_argument("--at-once", type=int, default=4)
    ap.add_argument("--keep", action="store_true", help="leave the class running")
    args = ap.parse_args()
    os.environ["LABKIT_CLASS"] = tempfile.mkdtemp(prefix="labkit-bench-class-")
    roster = classroom.Roster(classroom.numbered(args.learners, prefix="bench"))
    before = available_mb()
    t0 = time.monotonic()
    results = classroom.class_up(roster, args.at_once,
                                 lambda m: print(m, file=sys.stderr, flush=True))
    total = time.monotonic() - t0
    ok = [r for r in results if r.ok]
    after = available_mb()
    labs = [Lab(r.name, progress=None) for r in ok]
    per_lab = [sum(host_memory_mb(lab.engine, h) for h in lab.topology.hosts) for lab in labs]
    one = labs[len(labs) // 2] if labs else None
    # "The others up and idle": wait until the start's load has settled (Sendmail's
    # baseline refuses connections above its RefuseLA, and every lab host sees the load
    # of the whole machine), 5 minutes at most.
    settle = time.monotonic()
    while os.getloadavg()[0] > 2 * (os.cpu_count() or 1) and time.monotonic() - settle < 300:
        time.sleep(5)
    settled = time.monotonic() - settle
    load = os.getloadavg()[0]
    report = checks.run_checks(one, checks.all_checks()) if one else None
    rows = [
        ("machine", f"{platform.node()}, {os.cpu_count()} cores, "
                    f"{before / 1024:.1f} GiB available before"),
        ("labs started", f"{len(ok)} of {args.learners} ({args.at_once} at a time)"),
        ("all started in", f"{total:.0f} s"),
        ("one lab's start, median (min-max)",
         f"{statistics.median(r.seconds for r in ok):.1f} s "
         f"({min(r.seconds for r in ok):.1f}-{max(r.seconds for r in ok):.1f} s)" if ok else "-"),
        ("memory per lab, median (PSS)", f"{statistics.median(per_lab):.0f} MB" if per_lab else "-"),
        ("memory of all labs (PSS)", f"{sum(per_lab) / 1024:.2f} GB"),
        ("available memory used", f"{(before - after) / 1024:.2f} GB"),
        ("load settled after the start", f"{settled:.0f} s (load average {load:.1f})"),
        ("every check on one lab, the others idle (baseline lab)",
         f"{report.seconds:.1f} s: {report.totals()}" if report else "-"),
    ]
    failed = [r for r in results if not r.ok]
    print("| measure | figure |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    for r in failed:
        print(f"\nfailed: {r.name}: {r.detail}")
    if report:
        for r in report.results:
            if r.status is checks.Status.ERROR:
                print(f"\nerror: {r.check_id}: {r.summary}")
    if not args.keep:
        t1 = time.monotonic()
        classroom.class_down(at_once=args.at_once)
        print(f"\nclass down in {time.monotonic() - t1:.0f} s")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
