#!/usr/bin/env python3
"""Time a configuration change on each MTA, from apply to serving again.

    python3 benchmarks/bench_mta.py     # as root; starts and removes a lab of its own

Sendmail: one define in sendmail.mc, through the whole pipeline (m4 aside, sendmail -bt,
make, restart, greeting). Postfix: one postconf -e, through check, reload and a test
session. Also the time to refuse a broken change (it never touches the running MTA).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labkit import Lab  # noqa: E402
from labkit.mta import Postfix, Sendmail  # noqa: E402


def timed(fn, rounds: int = 3) -> float:
    times = []
    for i in range(rounds):
        t0 = time.monotonic()
        fn(i)
        times.append(time.monotonic() - t0)
    return statistics.median(times)


def main() -> int:
    lab = Lab(f"bm{os.getpid() % 10000}", progress=None)
    lab.up()
    try:
        sm, pf = Sendmail(lab.engine), Postfix(lab.engine)
        rows = [
            ("Sendmail: apply a sendmail.mc change, serving again",
             timed(lambda i: sm.change(lambda mc: mc.set_define(
                 "confPRIVACY_FLAGS", "novrfy" if i % 2 == 0 else "noexpn")))),
            ("Sendmail: refuse a misspelt FEATURE (m4 step)",
             timed(lambda i: sm.change(lambda mc: mc.add_feature("no_such_x"), check=False))),
            ("Postfix: apply a postconf -e change, serving again",
             timed(lambda i: pf.set(disable_vrfy_command="yes" if i % 2 == 0 else "no"))),
            ("Postfix: refuse a misspelt parameter (check step)",
             timed(lambda i: pf.set(disable_vrfy_comand="yes", check=False))),
        ]
    finally:
        lab.down()
    print("| change | median of 3 |\n|---|---|")
    for name, secs in rows:
        print(f"| {name} | {secs:.1f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
