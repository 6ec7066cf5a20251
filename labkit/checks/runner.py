"""Choosing checks and running them against a lab, concurrently where they touch nothing
in common."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from labkit.checks.base import REGISTRY, Check, Result, Status, UnknownCheckError
from labkit.checks.report import Report
from labkit.course.hardening import section as course_section

if TYPE_CHECKING:
    from labkit.lab import Lab

#: Checks run at once against one lab (each opens a session or two; the hardened relay
#: accepts 5 connections a second and 20 children, so more gains nothing).
DEFAULT_JOBS = 6


def all_checks() -> list[Check]:
    """Every check of the course, in course order."""
    return sorted(REGISTRY.values(), key=lambda c: c.section)


def get(check_id: str) -> Check:
    """The check ``check_id``; an error naming close ids if there is none."""
    try:
        return REGISTRY[check_id]
    except KeyError:
        family = check_id.split(".")[0]
        near = [c for c in REGISTRY if c.startswith(family + ".")]
        raise UnknownCheckError(
            f"no check {check_id!r}" + (f"; checks of {family}: {', '.join(near)}" if near
                                        else "; list them with: labkit check --list")) from None


def for_section(key: str) -> list[Check]:
    """The checks of a section, by number ("08", "8") or name ("privacy")."""
    number = course_section(key).number
    found = [c for c in all_checks() if c.section == number]
    if not found:
        raise UnknownCheckError(f"section {number} has no graded checks")
    return found


def select(ids: Iterable[str] = (), sections: Iterable[str] = ()) -> list[Check]:
    """Checks by id and by section, each once, in course order; every check if neither."""
    ids, sections = list(ids), list(sections)
    if not ids and not sections:
        return all_checks()
    chosen = {c.id: c for s in sections for c in for_section(s)}
    chosen.update({i: get(i) for i in ids})
    return [c for c in all_checks() if c.id in chosen]


def run_checks(lab: Lab, checks: Iterable[Check], jobs: int = DEFAULT_JOBS,
               on_result: Callable[[Result], None] | None = None) -> Report:
    """Run ``checks`` against ``lab``: up to ``jobs`` at once, then the exclusive ones (the
    measured DoS checks) one by one. ``on_result`` is called as each result comes in.

    A lab that is not running gives every check an ``error`` result at once.
    """
    checks = list(checks)
    started_at = datetime.datetime.now(datetime.UTC)
    started = time.monotonic()
    results: dict[str, Result] = {}

    def done(result: Result) -> Result:
        results[result.check_id] = result
        if on_result:
            on_result(result)
        return result

    running = _is_running(lab)
    if running is not True:
        for c in checks:
            done(Result(c.id, c.title, c.section, Status.ERROR,
                        f"could not observe: {running}",
                        hint=f"start the lab first: {lab.engine.command_hint('up')}",
                        lesson=c.lesson, weight=c.weight))
    else:
        shared = [c for c in checks if not c.exclusive]
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for future in [pool.submit(c.run, lab) for c in shared]:
                done(future.result())
        for c in checks:
            if c.exclusive:
                done(c.run(lab))
    return Report(lab.name, [results[c.id] for c in checks], started_at,
                  time.monotonic() - started)


def _is_running(lab: Lab) -> bool | str:
    try:
        return True if lab.is_running() else f"lab {lab.name!r} is not running"
    except Exception as exc:  # noqa: BLE001 - reported as the reason for every error
        return f"{type(exc).__name__}: {exc}"
