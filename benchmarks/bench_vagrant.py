#!/usr/bin/env python3
"""Measure the lab as VMs on this machine: the kit's box, ``labkit up --engine vagrant``
under libvirt, the engine contract suite and the course's probes against the VMs, and
``labkit down``. Prints the figures as Markdown (docs/vagrant.md keeps them).

    python3 benchmarks/bench_vagrant.py            # LABKIT_LIBVIRT_EMULATE=1 where KVM is not there

Builds the box (or takes it from the cache), starts libvirt if this machine has no
systemd, brings the whole lab up as VMs (every host, one after the other, provisioned
from the box's own repository), records each phase's time and each VM's memory (the
resident size of its QEMU process), runs tests/lab/test_engine_contract.py against the
running lab (LABKIT_TEST_LAB), a message from internet to a user on server followed to
the mailbox, the relay matrix from internet, then takes the lab down and checks that no
domain and no lab network is left. Run as root, with no other Vagrant lab up.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labkit import Lab, box, topology  # noqa: E402
from labkit.engines import libvirtd  # noqa: E402


def qemu_rss_mb() -> dict[str, float]:
    """Resident memory of each VM's QEMU process, by libvirt domain name."""
    out: dict[str, float] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if not cmd or not cmd[0].endswith(b"qemu-system-x86_64"):
            continue
        name = next((a.split(b"=", 1)[1].split(b",")[0].decode() for a in cmd
                     if a.startswith(b"guest=")), pid)
        rss = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("VmRSS:"))
        out[name] = rss / 1024
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", default="vmbench")
    ap.add_argument("--keep", action="store_true", help="leave the lab up")
    args = ap.parse_args()
    os.environ.setdefault("VAGRANT_DEFAULT_PROVIDER", "libvirt")
    figures: list[tuple[str, str]] = []
    t = time.monotonic()
    built = box.build(topology.load(), progress=lambda m: print(m, file=sys.stderr))
    figures.append(("box", built.summary()))
    figures.append(("box build (this run)", f"{time.monotonic() - t:.0f} s"))
    libvirtd.ensure_running(lambda m: print(m, file=sys.stderr))
    lab = Lab(args.lab, engine="vagrant", progress=lambda m: print(m, file=sys.stderr))
    t = time.monotonic()
    lab.up()
    up_s = time.monotonic() - t
    figures.append(("labkit up --engine vagrant (every host, one after the other)",
                    f"{up_s:.0f} s ({up_s / len(lab.topology.hosts):.0f} s a host)"))
    for name, mb in sorted(qemu_rss_mb().items()):
        figures.append((f"memory of VM {name} (QEMU's resident size)", f"{mb:.0f} MB"))
    t = time.monotonic()
    contract = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/lab/test_engine_contract.py"], cwd=REPO, text=True, capture_output=True,
        env={**os.environ, "LABKIT_ENGINE": "vagrant", "LABKIT_TEST_LAB": args.lab})
    summary = (contract.stdout.strip().splitlines() or ["(no output)"])[-1]
    figures.append(("engine contract suite against the VMs",
                    f"{summary} ({time.monotonic() - t:.0f} s)"))
    if contract.returncode:
        print(contract.stdout[-4000:], file=sys.stderr)
    t = time.monotonic()
    fate = lab.send("internet", "jo@example.com", wait=120)
    figures.append(("a message from internet to jo, followed",
                    f"{fate.status} {fate.where} ({time.monotonic() - t:.0f} s)"))
    t = time.monotonic()
    matrix = lab.relay_matrix("internet", wait=60)
    figures.append(("relay matrix from internet (baseline: an open relay)",
                    f"{len(matrix.leaked)} of {len(matrix.attempts)} tricks relayed "
                    f"({time.monotonic() - t:.0f} s)"))
    if not args.keep:
        t = time.monotonic()
        lab.down()
        left = subprocess.run(["virsh", "-c", libvirtd.URI, "list", "--all", "--name"],
                              capture_output=True, text=True).stdout.split()
        nets = [n for n in subprocess.run(["virsh", "-c", libvirtd.URI, "net-list", "--all",
                                           "--name"], capture_output=True,
                                          text=True).stdout.split() if n.startswith("labkit-")]
        figures.append(("labkit down --engine vagrant",
                        f"{time.monotonic() - t:.0f} s; domains left: {left or 'none'}, "
                        f"lab networks left: {nets or 'none'}"))
    print("| what | measured |\n|---|---|")
    for what, value in figures:
        print(f"| {what} | {value} |")
    return 0 if contract.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
