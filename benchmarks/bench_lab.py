#!/usr/bin/env python3
"""Measure the lab on this machine and print the figures as a Markdown table.

    python3 benchmarks/bench_lab.py               # cached images, 3 up/down rounds, 3 labs
    python3 benchmarks/bench_lab.py --cold        # also a first build into an empty cache
    python3 benchmarks/bench_lab.py --budget-mb 16384

Figures: first image build time and disk size per host, ``up`` time from the cache,
``down`` time, memory per host and per lab (proportional set size of every process of a
host, so shared libraries are split fairly between labs), and how many labs fit in a
memory budget. Run as root. Copy the table into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labkit import Lab  # noqa: E402
from labkit import images as imagelib  # noqa: E402
from labkit import topology as topolib  # noqa: E402
from labkit.engines.local import LocalEngine  # noqa: E402


def pss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    m = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else 0


def host_memory_mb(engine: LocalEngine, host: str) -> float:
    return sum(pss_kb(p) for p in engine.host_pids(host)) / 1024


def build_times_from_logs() -> dict[str, float]:
    times = {}
    for log in (imagelib.cache_dir() / "logs").glob("*.log"):
        m = re.search(r"success in ([\d.]+) seconds", log.read_text())
        if m:
            times[log.stem] = float(m.group(1))
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="up/down rounds (default 3)")
    ap.add_argument("--labs", type=int, default=3, help="labs run at once (default 3)")
    ap.add_argument("--budget-mb", type=int, default=16384, help="memory budget for labs")
    ap.add_argument("--cold", action="store_true", help="measure a first build too")
    args = ap.parse_args()
    topo = topolib.load()
    rows: list[tuple[str, str]] = []

    if args.cold:
        with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
            os.environ["LABKIT_CACHE"] = tmp
            t0 = time.monotonic()
            built = imagelib.ensure_images(topo, progress=lambda m: None)
            rows.append(("first build of all images (cold cache, 2 at a time)",
                         f"{time.monotonic() - t0:.0f} s"))
            sizes = imagelib.size_mb(built)
            del os.environ["LABKIT_CACHE"]
    imgs = imagelib.ensure_images(topo, progress=lambda m: None)
    sizes = imagelib.size_mb(imgs)
    for host, secs in sorted(build_times_from_logs().items()):
        rows.append((f"image build, {host} (last build, mmdebstrap)", f"{secs:.0f} s"))
    for host, mb in sizes.items():
        rows.append((f"image size, {host}", f"{mb:.0f} MB"))
    rows.append(("image size, all hosts", f"{sum(sizes.values()):.0f} MB"))

    ups, downs = [], []
    name = f"bench{os.getpid() % 10000}"
    for _ in range(args.rounds):
        lab = Lab(name, progress=None)
        t0 = time.monotonic()
        lab.up()
        ups.append(time.monotonic() - t0)
        time.sleep(3)  # let every service settle before measuring memory
        engine = lab.engine
        assert isinstance(engine, LocalEngine)
        mem = {h: host_memory_mb(engine, h) for h in topo.hosts}
        upper = sum(imagelib.sysutil.disk_usage_mb(engine._host_dir(h) / "upper")
                    for h in topo.hosts)
        t0 = time.monotonic()
        lab.down()
        downs.append(time.monotonic() - t0)
    rows.append((f"`labkit up`, whole lab from cache (median of {args.rounds})",
                 f"{statistics.median(ups):.1f} s (min {min(ups):.1f}, max {max(ups):.1f})"))
    rows.append((f"`labkit down` (median of {args.rounds})", f"{statistics.median(downs):.1f} s"))
    for host, mb in mem.items():
        rows.append((f"memory, {host} (PSS of its processes)", f"{mb:.0f} MB"))
    per_lab = sum(mem.values())
    rows.append(("memory, one lab", f"{per_lab:.0f} MB"))
    rows.append(("disk written per lab at start (overlay upper layers)", f"{upper:.1f} MB"))

    labs = [Lab(f"{name}x{i}", progress=None) for i in range(args.labs)]
    try:
        t0 = time.monotonic()
        for each in labs:
            each.up()
        rows.append((f"{args.labs} labs started one after another", f"{time.monotonic() - t0:.1f} s"))
        time.sleep(3)
        total = sum(host_memory_mb(each.engine, h) for each in labs for h in topo.hosts)
        rows.append((f"memory, {args.labs} labs at once", f"{total:.0f} MB "
                     f"({total / args.labs:.0f} MB per lab)"))
        per = max(total / args.labs, 1)
        rows.append((f"labs that fit in a {args.budget_mb} MB budget", f"{int(args.budget_mb // per)}"))
    finally:
        for each in labs:
            each.down()

    print(f"Measured {time.strftime('%Y-%m-%d')} on {platform.node() or 'this machine'}: "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, "
          f"kernel {platform.release()}\n")
    print("| figure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
