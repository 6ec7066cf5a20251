#!/usr/bin/env python3
"""Rehearse what ``vagrant up`` does inside each VM, in booted containers, and time it.

    python3 benchmarks/bench_vm_provisioning.py          # as root
    python3 benchmarks/bench_vm_provisioning.py --keep   # leave the lab running afterwards

This machine cannot boot VMs at a useful speed, so the Vagrant figures in
docs/vagrant.md come from this rehearsal. Each host starts as a plain Debian 12 system
like a Vagrant box (mmdebstrap's ``important`` variant plus openssh-server, sudo and
rsync; no lab package, no provisioning), boots with systemd on the lab's networks, and
then runs the Vagrantfile's own provisioning step, ``provision.sh HOST`` from a copy of
the repository at /labkit, in a booted system: installing the role's packages with
apt-get, writing the baseline and restarting the services. Hosts are provisioned in the
Vagrantfile's order (internet first). Afterwards a message is sent from internet through
the relay to a mailbox on server, and one from client out to the outside MX, to show
that the lab so provisioned works.

The packages are downloaded once, into the box, before anything is timed (a VM downloads
them at provisioning time; that part depends on the mirror, so it is not counted). The
boxes' VM-only steps, vm-isolate.sh and its --lift, are not run: they manage a NAT
interface the containers do not have.

Prints the figures as a Markdown table. Copy it into docs/vagrant.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labkit import Lab  # noqa: E402
from labkit import topology as topolib  # noqa: E402
from labkit.engines.local import LocalEngine  # noqa: E402
from labkit.engines.vm_rehearsal import rehearse  # noqa: E402


def pss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        m = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
        total += int(m.group(1)) if m else 0
    return total / 1024


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure(topo: topolib.Topology, lab_name: str, keep: bool) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    r = rehearse(topo, lab_name, progress)
    engine = LocalEngine(topo, lab_name)
    try:
        if r.box_build:
            rows.append(("box: Debian 12 `important` + ssh, sudo, rsync, the lab's packages "
                         "downloaded (mmdebstrap, once)", f"{r.box_build:.0f} s"))
        for host, took in r.boot.items():
            rows.append((f"{host}: boot of the plain box (systemd-nspawn, no kernel)", f"{took:.1f} s"))
        for host, took in r.provision.items():
            rows.append((f"{host}: `provision.sh {host}` in the booted box "
                         "(apt-get install from the box's cache, baseline, restarts)", f"{took:.1f} s"))
        rows.append(("all four hosts provisioned one after another",
                     f"{sum(r.provision.values()):.0f} s"))
        time.sleep(5)
        for host in topo.hosts:
            rows.append((f"{host}: memory after provisioning (PSS of its processes)",
                         f"{pss_mb(engine.host_pids(host)):.0f} MB"))
        lab = Lab(lab_name, progress=None)
        inbound = lab.send("internet", "jack@example.com", subject="rehearsal in")
        outbound = lab.send("client", "someone@example.net", subject="rehearsal out")
        rows.append(("internet → relay → server mailbox", inbound.status))
        rows.append(("client → server → relay → outside MX", outbound.status))
        if inbound.status != "delivered" or outbound.status != "at-sink":
            raise RuntimeError(f"mail does not flow in the rehearsed lab:\n{inbound}\n{outbound}")
    finally:
        if not keep:
            engine.down()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", default=f"vmrh{os.getpid()}", help="lab name to use")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root (mmdebstrap and systemd-nspawn)")
    topo = topolib.load()
    rows = measure(topo, args.lab, args.keep)
    print(f"Measured {time.strftime('%Y-%m-%d')} on {platform.node()}: "
          f"{os.cpu_count()} cores, Python {platform.python_version()}.\n")
    print("| step | figure |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    if args.keep:
        print(f"\nThe lab is still running: LABKIT_LAB={args.lab} labkit status; "
              f"labkit down --lab {args.lab}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
