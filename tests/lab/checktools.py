"""What the check test modules share: running checks by id, and the admins' own tools
run in a lab host's network namespace."""

from __future__ import annotations

import subprocess

from labkit import checks


def run(lab, *ids: str) -> checks.Report:
    """Run the checks ``ids`` against ``lab``."""
    return checks.run_checks(lab, [checks.get(i) for i in ids])


def statuses(report: checks.Report) -> dict[str, str]:
    """check id -> passed / failed / error."""
    return {r.check_id: r.status.value for r in report.results}


def in_netns(lab, vantage: str, argv: list[str], input: str | None = None) -> str:
    """A tool of this machine run in ``vantage``'s network namespace (the way an admin
    on that host would run it); its stdout and stderr."""
    res = subprocess.run(["ip", "netns", "exec", lab.engine.netns(vantage), *argv], input=input,
                         capture_output=True, text=True, timeout=120)
    return res.stdout + res.stderr


def nmap(lab, vantage: str, target: str, script: str, args: str = "") -> str:
    """nmap's NSE ``script`` against ``target``'s port 25, run from ``vantage``."""
    address = str(lab.topology.address_for(target, vantage))
    return in_netns(lab, vantage, ["nmap", "-n", "-Pn", "-p25", "--script", script,
                                   *(["--script-args", args] if args else []), address])
