"""What every configuration change gives back, and the error a refused change raises."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from labkit.engines.base import Engine
from labkit.errors import LabkitError

#: The shell pipelines that apply a change on a host (sendmail-apply.sh, postfix-transaction.sh).
SCRIPTS = Path(__file__).with_name("scripts")


@dataclass
class ApplyResult:
    """The outcome of applying a configuration to an MTA host.

    ``ok`` False means the change was refused and the host was left (or put back) as it
    was: ``stage`` says which step refused it (m4, cf, make, check, reload, restart,
    serving) and ``errors`` are the tool's own lines, with ``hints`` pointing into the
    learner's file. ``changes`` summarises what changed in the running configuration.
    ``warnings`` are complaints the MTA logged while starting with an applied change (a
    file it may not read, an unsafe key): the change is in place, but something is off.
    """

    host: str
    ok: bool
    stage: str = ""
    errors: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    diff: str = ""
    warnings: list[str] = field(default_factory=list)
    kept_as: str = ""  # where a refused hand edit was kept, if it was
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.ok:
            head = f"{self.host}: applied in {self.seconds:.1f} s"
            body = self.changes or ["(no change in the running configuration)"]
            body += [f"WARNING: {w}" for w in self.warnings]
            return "\n  ".join([head, *body])
        lines = [f"{self.host}: change REFUSED at the {self.stage} step; the previous working "
                 "configuration is still in place"]
        lines += [f"  {e}" for e in self.errors]
        lines += [f"  -> {h}" for h in self.hints]
        if self.kept_as:
            lines.append(f"  your edited file is kept as {self.kept_as}")
        return "\n".join(lines)


class ConfigRejected(LabkitError):
    """A configuration change was refused; the MTA keeps serving with the previous one."""

    def __init__(self, result: ApplyResult) -> None:
        super().__init__(str(result))
        self.result = result


def run_pipeline(engine: Engine, host: str, script: str, args: list[str]) -> tuple[ApplyResult, list[str]]:
    """Run a pipeline script on ``host``; its result and its output lines.

    The scripts print "STAGE name" before each step, "ROLLBACK" when they put the host
    back and "WARNING line" for a complaint the MTA logged; the last stage reached is
    where a refused change was refused.
    """
    started = time.monotonic()
    res = engine.run(host, ["bash", "-s", *args], input=script, timeout=120)
    out = res.stdout.splitlines()
    stages = [ln.split()[1] for ln in out if ln.startswith("STAGE ")]
    lines = [ln for ln in out if not ln.startswith(("STAGE ", "ROLLBACK", "WARNING "))
             and ln.strip()]
    result = ApplyResult(host, res.returncode == 0, stages[-1] if stages else "start",
                         warnings=[ln[8:] for ln in out if ln.startswith("WARNING ")],
                         seconds=time.monotonic() - started)
    if not result.ok and not lines and res.stderr.strip():
        lines = [res.stderr.strip()]
    return result, lines
