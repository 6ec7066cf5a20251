"""Lab tests: one real lab per test session, under a name of this run's own.

A lab that cannot start FAILS these tests with its reason (never a skip).
"""

from __future__ import annotations

import os
import time

import pytest

from labkit import Lab


def lab_name(suffix: str = "") -> str:
    """A lab name unique to this test run (labs of other runs are left alone)."""
    return f"t{os.getpid() % 100000}{suffix}"


@pytest.fixture(scope="session")
def lab():
    the_lab = Lab(lab_name())
    try:
        the_lab.up()
    except BaseException:
        the_lab.down()
        raise
    yield the_lab
    the_lab.down()


def wait_for(predicate, timeout: float = 30, interval: float = 0.5, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test with ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
