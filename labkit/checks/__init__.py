"""Graded checks: does the lab show each control of the course, as a probe observes it?

One module per course section, one function per check, registered as data (id, title,
section, hosts, weight, hint, lesson):

>>> from labkit import Lab, checks
>>> report = checks.run_checks(Lab(), checks.for_section("08"))
>>> print(report.table())          # PASS / FAIL / ERROR, with what each probe saw
>>> report["privacy.vrfy_disabled"].evidence

Each result is passed, failed or error (could not observe); see :mod:`labkit.checks.base`.
"""

from labkit.checks import (  # noqa: F401 - each module registers its section's checks
    capstone,
    dos,
    logs,
    milter,
    postfix,
    privacy,
    privileges,
    rbl,
    relay,
    sasl,
    smrsh,
    starttls,
)
from labkit.checks.base import (
    REGISTRY,
    CannotObserve,
    Check,
    Result,
    Status,
    UnknownCheckError,
    Verdict,
    check,
    failed,
    passed,
)
from labkit.checks.report import ChecksFailedError, Report
from labkit.checks.runner import all_checks, for_section, get, run_checks, select

__all__ = ["REGISTRY", "CannotObserve", "Check", "ChecksFailedError", "Report", "Result",
           "Status", "UnknownCheckError", "Verdict", "all_checks", "check", "failed",
           "for_section", "get", "passed", "run_checks", "select"]
