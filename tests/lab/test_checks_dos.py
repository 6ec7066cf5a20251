"""Section 03 (denial of service): the checks on partly right and differently right
configurations, when they cannot observe, beside an admin's own tool (swaks), and the load
helper (labkit.probes.load) kept within its bounds.

No test asserts a duration the checks do not decide themselves: the lab shares a busy
machine, so latencies are noisy.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from labkit import checks
from labkit.checks import Status
from labkit.mta import Sendmail
from labkit.probes import load
from tests.lab.checktools import run, statuses

pytestmark = pytest.mark.lab

DOS = [c.id for c in checks.for_section("03")]




# --- the load helper, against a server of the test's own (no lab) -------------------------

class FakeServer:
    """A TCP server on 127.0.0.1 that greets (or stays silent), and counts the
    connections it accepted and how many of them the client closed."""

    def __init__(self, greet: bool) -> None:
        self.greet = greet
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stop:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)
            if self.greet:
                conn.sendall(b"220 fake ESMTP\r\n")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=2)

    def closed_by_client(self) -> int:
        closed = 0
        for conn in self.accepted:
            conn.settimeout(1)
            try:
                while data := conn.recv(4096):
                    if not data:
                        break
                closed += 1
            except OSError:
                pass
        return closed

    def close(self) -> None:
        self.stop = True
        self.thread.join(2)
        for conn in self.accepted:
            conn.close()
        self.listener.close()


def test_load_helper_stays_within_its_count_and_time_bounds():
    silent, greeting = FakeServer(greet=False), FakeServer(greet=True)
    try:
        started = time.monotonic()
        series = load.hold_sessions(silent.connect, most=8, greeting_timeout=0.5,
                                    time_limit=1, stop_after=8, align=True)
        assert time.monotonic() - started < 1 + 2  # its time limit, plus one connect timeout
        assert len(series.attempts) <= 8 and not series.served
        assert "at most 8 connections" in series.listing()

        started = time.monotonic()
        held = load.hold_sessions(silent.connect, most=40, greeting_timeout=0.3, time_limit=1,
                                  stop_after=2)
        assert time.monotonic() - started < 1 + 2
        assert len(held.attempts) <= 2  # stopped after two not served in a row

        held = load.hold_sessions(greeting.connect, most=500, greeting_timeout=1, time_limit=10)
        assert len(held.attempts) == load.MAX_CONNECTIONS  # 500 asked, the ceiling holds
        assert all(a.served for a in held.attempts)
        time.sleep(0.3)
        assert len(greeting.accepted) == load.MAX_CONNECTIONS
        assert greeting.closed_by_client() == load.MAX_CONNECTIONS  # every session closed

        started = time.monotonic()
        assert load.wait_until_served(silent.connect, time_limit=1, interval=0.2,
                                      greeting_timeout=0.3) is None
        assert time.monotonic() - started < 1 + 2
    finally:
        silent.close()
        greeting.close()


class CfOnly:
    """A stand-in lab whose relay has only this sendmail.cf (for the check that reads it)."""

    def __init__(self, cf: str) -> None:
        self.cf = cf

    def read_file(self, host: str, path: str) -> str:
        assert (host, path) == ("relay", "/etc/mail/sendmail.cf")
        return self.cf


@pytest.mark.parametrize("cf, expected", [
    ("O DelayLA=8\nO RefuseLA=12\nO MinFreeBlocks=1000\n", Status.PASSED),
    ("O DelayLA=4\nO RefuseLA=6\nO MinFreeBlocks=250\n#O QueueLA=8\n", Status.PASSED),
    ("O DelayLA=12\nO RefuseLA=8\nO MinFreeBlocks=1000\n", Status.FAILED),  # refuses first
    ("#O DelayLA=0\n#O RefuseLA=12\nO MinFreeBlocks=1000\n", Status.FAILED),  # commented out
    ("O DelayLA=8\nO RefuseLA=12\nO MinFreeBlocks=100\n", Status.FAILED),  # Sendmail's default
], ids=["course", "other-sane-values", "refuse-below-delay", "commented", "default-blocks"])
def test_load_limits_check_judges_the_effective_values(cf, expected):
    result = checks.get("dos.load_limits_set").run(CfOnly(cf))
    assert result.status is expected, result.summary
    assert result.evidence.startswith("/etc/mail/sendmail.cf:")


# --- against the real lab ------------------------------------------------------------------

def swaks_oversized(lab, size: int) -> str:
    """swaks from internet sending a message of ``size`` bytes through the relay: its
    transcript (the message itself suppressed)."""
    line = "x" * 75
    script = (f"yes '{line}' 2>/dev/null | head -c {size} | swaks --timeout 60 --server "
              f"{lab.topology.host('relay').fqdn} --to jo@example.com --from friend@example.net "
              "--body - --suppress-data 2>&1")
    return lab.run("internet", script, timeout=120).stdout


@pytest.mark.parametrize("hardened", [False, True], ids=["baseline", "hardened"])
def test_size_check_agrees_with_swaks(state, hardened):
    if hardened:
        state.through("03")
    else:
        state.set()
    lab = state.lab
    result = run(lab, "dos.message_size_limited").results[0]
    transcript = swaks_oversized(lab, 10_100_000)  # above the course's 10000000 bytes
    if hardened:
        assert result.status is Status.PASSED, result.summary
        assert "552 5.2.3" in transcript, transcript[-2000:]
    else:
        assert result.status is Status.FAILED, result.summary
        assert "250 2.0.0" in transcript and "552" not in transcript, transcript[-2000:]


def test_only_max_message_size_set_passes_the_size_check_alone(state):
    state.set()
    state.changed()
    Sendmail(state.lab.engine).change(lambda mc: mc.set_define("confMAX_MESSAGE_SIZE", "10000000"))
    report = run(state.lab, *DOS)
    assert statuses(report) == {
        "dos.message_size_limited": "passed",
        "dos.recipients_limited": "failed",
        "dos.connection_rate_throttled": "failed",
        "dos.bad_recipients_throttled": "failed",
        "dos.daemon_children_limited": "failed",
        "dos.load_limits_set": "failed",
    }, {r.check_id: r.summary for r in report.results}
    assert "SIZE 10000000" in report["dos.message_size_limited"].summary
    assert "bounds:" in report["dos.daemon_children_limited"].evidence


def test_other_sane_limits_pass_and_a_tiny_size_limit_fails(state):
    state.set()
    state.changed()
    # The load limits are not the hardened state's, but high: every lab host sees the load
    # of the whole machine, and a RefuseLA of 6 closed the relay while the suite ran busy.
    limits = {"confMAX_MESSAGE_SIZE": "500000", "confMAX_RCPTS_PER_MESSAGE": "100",
              "confDELAY_LA": "40", "confREFUSE_LA": "60", "confMIN_FREE_BLOCKS": "5000",
              "confBAD_RCPT_THROTTLE": "2"}

    def edit(mc):
        for name, value in limits.items():
            mc.set_define(name, value)
    Sendmail(state.lab.engine).change(edit)
    report = run(state.lab, "dos.message_size_limited", "dos.recipients_limited",
                 "dos.load_limits_set", "dos.bad_recipients_throttled")
    assert statuses(report) == {"dos.message_size_limited": "failed",  # 500 kB: too small
                                "dos.recipients_limited": "passed",
                                "dos.load_limits_set": "passed",
                                "dos.bad_recipients_throttled": "passed"}
    assert "below" in report["dos.message_size_limited"].summary
    assert "RCPT 101 -> 452 4.5.3" in report["dos.recipients_limited"].summary


def test_measured_checks_give_error_when_sendmail_is_down(state):
    state.through("03")
    lab = state.lab
    lab.run("relay", "systemctl stop sendmail").check()
    try:
        state.changed()
        report = run(lab, *DOS)
    finally:
        lab.run("relay", "systemctl start sendmail").check()
    measured = [i for i in DOS if i != "dos.load_limits_set"]
    assert {i: report[i].status for i in measured} == {i: Status.ERROR for i in measured}
    assert report["dos.load_limits_set"].status is Status.PASSED  # read from the .cf


MEASURED = [c.id for c in checks.for_section("03") if c.exclusive]
RUNS = 10


@pytest.mark.parametrize("hardened", [False, True], ids=["baseline", "hardened"])
def test_measured_checks_do_not_flip_in_ten_runs_in_a_row(state, hardened):
    """The measured checks (connection rate, bad-recipient delay, sessions at once) give
    the same verdict run after run: on the baseline and on the hardened relay."""
    if hardened:
        state.through("03")
    else:
        state.set()
    expected = {i: "passed" if hardened else "failed" for i in MEASURED}
    runs = []
    for _ in range(RUNS):
        report = run(state.lab, *MEASURED)
        runs.append((statuses(report), report.table()))
    flips = [table for seen, table in runs if seen != expected]
    assert not flips, f"{len(flips)} of {RUNS} runs differ from {expected}:\n" + "\n".join(flips)
