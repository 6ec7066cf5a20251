#!/usr/bin/env python3
"""Time a full probe sweep of the relay from `internet`, against the same sweep by swaks.

    python3 benchmarks/bench_probes.py            # starts its own lab, prints a table

The sweep: greeting and EHLO; VRFY, EXPN, ETRN; the relay-attempt matrix; STARTTLS; AUTH
with PLAIN, LOGIN, CRAM-MD5 and DIGEST-MD5. The swaks column runs one swaks per step from
`internet` (swaks has no VRFY/EXPN/ETRN: those steps use one netcat session each). Every
run goes to the lab's own addresses only and is bounded by --rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labkit import Lab  # noqa: E402
from labkit.probes import relay_variants  # noqa: E402


def labkit_sweep(lab: Lab) -> dict[str, float]:
    t: dict[str, float] = {}
    t0 = time.monotonic()
    with lab.smtp("internet", "relay") as s:
        s.ehlo()
        t["greeting, EHLO"] = time.monotonic() - t0
        t1 = time.monotonic()
        s.vrfy("root"), s.expn("root"), s.etrn("example.com")
        t["VRFY, EXPN, ETRN"] = time.monotonic() - t1
    t1 = time.monotonic()
    lab.relay_matrix("internet", "relay", wait=0)
    t["relay matrix (19 tricks, no wait for the sink)"] = time.monotonic() - t1
    t1 = time.monotonic()
    lab.tls("internet", "relay")
    t["STARTTLS"] = time.monotonic() - t1
    t1 = time.monotonic()
    lab.auth("internet", "relay")
    t["AUTH, 4 mechanisms"] = time.monotonic() - t1
    t["whole sweep"] = time.monotonic() - t0
    return t


def swaks_sweep(lab: Lab) -> dict[str, float]:
    relay = "192.168.56.20"
    pw = str(lab.topology.mail["password"])

    def swaks(*args: str) -> None:
        lab.run("internet", ["swaks", "--server", relay, "--hide-all", "--timeout", "10", *args])

    def nc(command: str) -> None:
        lab.run("internet", ["sh", "-c", f"(sleep 0.2; printf 'EHLO x\\r\\n{command}\\r\\n"
                             f"QUIT\\r\\n') | nc -w 5 {relay} 25"])

    t: dict[str, float] = {}
    t0 = time.monotonic()
    swaks("--quit-after", "EHLO")
    t["greeting, EHLO"] = time.monotonic() - t0
    t1 = time.monotonic()
    for command in ("VRFY root", "EXPN root", "ETRN example.com"):
        nc(command)
    t["VRFY, EXPN, ETRN"] = time.monotonic() - t1
    t1 = time.monotonic()
    topo = lab.topology
    for v in relay_variants("victim@example.net", topo.domains["organisation"],
                            "relay.example.com", relay, "192.168.56.10"):
        swaks("--from", v.mail_from or "<>", "--to", v.rcpt_to, "--quit-after", "RCPT")
    t["relay matrix (19 tricks, no wait for the sink)"] = time.monotonic() - t1
    t1 = time.monotonic()
    swaks("--tls", "--quit-after", "TLS")
    t["STARTTLS"] = time.monotonic() - t1
    t1 = time.monotonic()
    for mech in ("PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5"):
        swaks("--auth", mech, "--auth-user", "jo", "--auth-password", pw, "--quit-after", "AUTH")
    t["AUTH, 4 mechanisms"] = time.monotonic() - t1
    t["whole sweep"] = time.monotonic() - t0
    return t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    lab = Lab(f"bp{os.getpid() % 10000}", progress=None)
    lab.up()
    try:
        ours = [labkit_sweep(lab) for _ in range(args.rounds)]
        theirs = [swaks_sweep(lab) for _ in range(args.rounds)]
    finally:
        lab.down()
    print(f"Probe sweep of the relay from internet, median of {args.rounds} rounds\n")
    print("| step | labkit probes | swaks invocations |\n|---|---|---|")
    for step in ours[0]:
        a = statistics.median(r[step] for r in ours)
        b = statistics.median(r[step] for r in theirs)
        print(f"| {step} | {a:.2f} s | {b:.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
