"""What every configuration change gives back, and the error a refused change raises."""

from __future__ import annotations

from dataclasses import dataclass, field

from labkit.errors import LabkitError


@dataclass
class ApplyResult:
    """The outcome of applying a configuration to an MTA host.

    ``ok`` False means the change was refused and the host was left (or put back) as it
    was: ``stage`` says which step refused it (m4, cf, make, check, reload, restart,
    serving) and ``errors`` are the tool's own lines, with ``hints`` pointing into the
    learner's file. ``changes`` summarises what changed in the running configuration.
    """

    host: str
    ok: bool
    stage: str = ""
    errors: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    diff: str = ""
    kept_as: str = ""  # where a refused hand edit was kept, if it was
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.ok:
            head = f"{self.host}: applied in {self.seconds:.1f} s"
            body = self.changes or ["(no change in the running configuration)"]
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
