"""What a graded check is, what it gives back, and the registry of every check.

A check is a function of a :class:`~labkit.lab.Lab` that PROBES the lab and returns a
:class:`Verdict` (passed or failed, with what it saw). It is registered with
:func:`check`, which records it as data (:class:`Check`: id, title, section, hosts,
weight, hint, lesson) so checks can be listed, run and reported on.

Running a check (:meth:`Check.run`) always gives a :class:`Result` in one of three
states, never an exception:

- ``passed``: the control is in place, as the probe observed it;
- ``failed``: the probe observed the control missing (the evidence shows how);
- ``error``: the check could not observe (a host down, a DNS server silent, a timeout,
  a bug): it says nothing about the control, and is never counted as a pass or a fail.

A check never changes the lab: what it needs is provisioned.
"""

from __future__ import annotations

import html
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from labkit.errors import LabkitError

if TYPE_CHECKING:
    from labkit.lab import Lab


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"


#: How each state is shown in HTML.
COLOURS = {Status.PASSED: "#0a7d22", Status.FAILED: "#b00020", Status.ERROR: "#a15c00"}


class CannotObserve(Exception):
    """Raised by a check that sees it cannot tell (the DNSBL does not answer, a probe's
    precondition is missing): its result is ``error`` with this message."""


class UnknownCheckError(LabkitError):
    """No check has that id, or no check belongs to that section."""


@dataclass(frozen=True)
class Verdict:
    """What a check function returns: did the lab show the control, what it saw.

    ``summary`` is one line for a table (what was observed, e.g. "VRFY root -> 250
    2.1.5 <root@...>"); ``evidence`` the full listing or transcript; ``hint`` a hint of
    this observation's own, shown before the check's general hint.
    """
    ok: bool
    summary: str
    evidence: str = ""
    hint: str = ""


def passed(summary: str, evidence: str = "") -> Verdict:
    return Verdict(True, summary, evidence)


def failed(summary: str, evidence: str = "", hint: str = "") -> Verdict:
    return Verdict(False, summary, evidence, hint)


_AUTH_LINE = re.compile(r"^(C: AUTH \S+) \S+$")


def mask_secrets(evidence: str) -> str:
    """Evidence with every credential a client sent masked as ``********``: the argument
    of ``AUTH MECH arg``, and each line answering a server's 334 challenge (as aiosmtpd
    masks them before logging)."""
    out, after_334 = [], False
    for line in evidence.splitlines():
        if line.startswith("C: ") and after_334:
            line = "C: ********"
        else:
            line = _AUTH_LINE.sub(r"\1 ********", line)
        if line.startswith("S: "):
            after_334 = line.startswith("S: 334")
        out.append(line)
    return "\n".join(out)


@dataclass
class Result:
    """The result of one check against one lab."""
    check_id: str
    title: str
    section: str
    status: Status
    summary: str
    evidence: str = ""
    hint: str = ""
    lesson: str = ""
    seconds: float = 0.0
    weight: float = 1.0

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED

    def to_dict(self) -> dict:
        d = asdict(self)
        d["status"] = self.status.value
        d["seconds"] = round(self.seconds, 3)
        return d

    def line(self) -> str:
        return f"{self.status.value.upper():6} {self.check_id}: {self.summary}"

    def __str__(self) -> str:
        lines = [self.line(), f"  {self.title} (section {self.section}, {self.seconds:.1f} s)"]
        if self.status is not Status.PASSED and self.hint:
            lines.append(f"  what to do: {self.hint}")
        if self.evidence:
            lines.append("  evidence:")
            lines += [f"    {ln}" for ln in self.evidence.splitlines()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return self.html()

    def html(self, evidence: bool = True) -> str:
        """The result as HTML (escaped): state, id, title, observation, hint where it did
        not pass, and the evidence folded (unless ``evidence`` is False)."""
        colour = COLOURS
        e = html.escape
        hint = (f"<div><b>What to do:</b> {e(self.hint)}</div>"
                if self.status is not Status.PASSED and self.hint else "")
        evidence = (f"<details><summary>evidence</summary><pre style='white-space:pre-wrap'>"
                    f"{e(self.evidence)}</pre></details>" if self.evidence and evidence else "")
        return (f"<div style='border-left:4px solid {colour[self.status]};padding:2px 8px;"
                f"margin:4px 0'><b style='color:{colour[self.status]}'>"
                f"{e(self.status.value.upper())}</b> <code>{e(self.check_id)}</code> "
                f"{e(self.title)}<div>{e(self.summary)}</div>{hint}{evidence}</div>")


@dataclass(frozen=True)
class Check:
    """One graded check, as data: run it with :meth:`run`."""
    id: str
    title: str
    section: str
    func: Callable[[Lab], Verdict] = field(repr=False, compare=False)
    hosts: tuple[str, ...] = ("relay",)
    weight: float = 1.0
    hint: str = ""
    lesson: str = ""
    #: True for checks that load a server (the measured DoS checks): they run alone, so
    #: their load neither slows the other checks nor is disturbed by them.
    exclusive: bool = False
    #: True for a guard check: it keeps a control from being overdone (the LAN must still
    #: relay, postmaster must still be reachable), so it passes on the baseline too and
    #: fails on an over-hardened lab.
    guard: bool = False

    def run(self, lab: Lab) -> Result:
        """Run the check against ``lab``; always a Result, never an exception."""
        started = time.monotonic()
        try:
            verdict = self.func(lab)
            if not isinstance(verdict, Verdict):
                raise TypeError(f"check {self.id} returned {type(verdict).__name__}, "
                                "not a Verdict")
            status = Status.PASSED if verdict.ok else Status.FAILED
            summary, evidence = verdict.summary, verdict.evidence
            hint = " ".join(h for h in (verdict.hint, self.hint) if h)
        except CannotObserve as exc:
            status, summary, evidence = Status.ERROR, f"could not observe: {exc}", ""
            hint = "fix what the message names (see: labkit status), then run the check again"
        except Exception as exc:  # noqa: BLE001 - every failure to observe is an error
            status = Status.ERROR
            summary = f"could not observe: {type(exc).__name__}: {_first_line(exc)}"
            transcript = getattr(exc, "transcript", None)
            evidence = str(transcript) if transcript else ""
            if not isinstance(exc, (OSError, LabkitError)) and "Smtp" not in type(exc).__name__:
                evidence += "\n" + traceback.format_exc()
            hint = "is the lab up and every service running? (labkit status)"
        return Result(self.id, self.title, self.section, status, summary,
                      mask_secrets(evidence.strip()), hint, self.lesson,
                      time.monotonic() - started, self.weight)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


#: Every registered check, by id, in registration (course) order.
REGISTRY: dict[str, Check] = {}
_ID = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")


def check(id: str, title: str, section: str, hosts: tuple[str, ...] = ("relay",),
          weight: float = 1.0, hint: str = "", lesson: str = "", exclusive: bool = False,
          guard: bool = False) -> Callable[[Callable[[Lab], Verdict]], Callable[[Lab], Verdict]]:
    """Register the decorated function as the check ``id`` (``family.name``)."""
    if not _ID.match(id):
        raise ValueError(f"check id {id!r} is not family.name in lower case")

    def register(func: Callable[[Lab], Verdict]) -> Callable[[Lab], Verdict]:
        if id in REGISTRY:
            raise ValueError(f"check id {id!r} is registered twice")
        REGISTRY[id] = Check(id, title, section, func, tuple(hosts), weight, hint, lesson,
                             exclusive, guard)
        return func
    return register
