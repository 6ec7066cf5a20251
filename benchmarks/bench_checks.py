#!/usr/bin/env python3
"""Time every graded check of the course against one lab, per section and in all.

    python3 benchmarks/bench_checks.py            # as root; starts and removes a lab of its own
    python3 benchmarks/bench_checks.py --lab NAME # an existing lab, as it is (changes nothing)

With a lab of its own, it hardens the whole course first (the state a capstone is graded
in: every check passes) and then runs, three rounds each: every section's checks alone,
and every check of the course at once (concurrently where they touch nothing in common,
the measured DoS checks alone at the end), as ``labkit check`` does. Prints Markdown
tables of medians for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labkit import Lab, checks  # noqa: E402
from labkit.course.hardening import SECTIONS, harden_through  # noqa: E402


def timed(fn, rounds: int) -> tuple[float, object]:
    times, last = [], None
    for _ in range(rounds):
        t0 = time.monotonic()
        last = fn()
        times.append(time.monotonic() - t0)
    return statistics.median(times), last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", help="an existing lab to time, as it is")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    own = args.lab is None
    lab = Lab(args.lab or f"bc{os.getpid() % 10000}", progress=None)
    if own:
        lab.up()
    try:
        if own:
            t0 = time.monotonic()
            harden_through(lab.engine, SECTIONS[-1].number)
            print(f"whole course hardened in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        rows = []
        for number in sorted({c.section for c in checks.all_checks()}):
            chosen = checks.for_section(number)
            secs, report = timed(lambda chosen=chosen: checks.run_checks(lab, chosen),
                                 args.rounds)
            title = next(s.title for s in SECTIONS if s.number == number)
            rows.append((f"{number} {title}", len(chosen), secs, report.totals()))
        everything = checks.all_checks()
        secs, report = timed(lambda: checks.run_checks(lab, everything), args.rounds)
        slowest = sorted(report.results, key=lambda r: -r.seconds)[:5]
    finally:
        if own:
            lab.down()
    print(f"| section | checks | median of {args.rounds} | results (last round) |")
    print("|---|---|---|---|")
    for name, n, s, totals in rows:
        print(f"| {name} | {n} | {s:.1f} s | {totals.split(' of ')[0]} |")
    print(f"| **every check of the course, at once** | {len(everything)} | **{secs:.1f} s** "
          f"| {report.totals().split(' of ')[0]} |")
    print("\nslowest checks in the last round: "
          + ", ".join(f"{r.check_id} {r.seconds:.1f} s" for r in slowest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
