"""Bounded, measured load on an SMTP server: connections in quick succession, sessions
held open, commands timed one by one.

The measured denial-of-service checks (section 03) need more than one session: how long
each greeting of a quick series of connections takes (ConnectionRateThrottle), how many idle
sessions a server serves at once (MaxDaemonChildren), how long each refused RCPT takes
(BadRcptThrottle). Every function here is bounded twice, by parameters with safe
defaults: in COUNT (connections or commands, never more than ``most``) and in TIME (it
returns by ``time_limit`` seconds plus one connect or read timeout). It opens connections
only through the ``connect`` callable it is given, in the lab through the engine from a
vantage host (see :func:`vantage_connect`), so the load stays inside the lab.

Nothing here judges: each function returns what it measured (:class:`LoadReport`), with
the bounds it used, for a check to decide on.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from labkit.probes.smtp import Reply, SmtpError, SmtpSession, SmtpTimeout

if TYPE_CHECKING:
    from labkit.engines.base import Engine

#: Opens one TCP connection to the server under load (a socket, or OSError).
Connect = Callable[[], socket.socket]

#: Hard ceilings, whatever a caller asks: no probe of this module opens more connections
#: or runs longer than this.
MAX_CONNECTIONS = 60
MAX_SECONDS = 60.0


def vantage_connect(engine: Engine, vantage: str, target: str = "relay", port: int = 25,
                    timeout: float = 5.0) -> Connect:
    """A :data:`Connect` that opens connections from lab host ``vantage`` to ``target``
    (a lab host, or an address) through the engine, as every probe does."""
    from labkit.probes import resolve_target
    address = resolve_target(engine, vantage, target)
    return lambda: engine.connect(vantage, address, port, timeout)


@dataclass(frozen=True)
class Attempt:
    """One connection of a load: when it was opened (seconds after the load began), how
    long its greeting took, or why it was not served."""
    index: int
    opened: float
    latency: float | None = None
    greeting: Reply | None = None
    error: str | None = None

    @property
    def served(self) -> bool:
        """The server greeted this connection (whatever the greeting's code)."""
        return self.greeting is not None

    def __str__(self) -> str:
        where = f"#{self.index + 1:<2} opened at +{self.opened:5.2f} s: "
        if self.greeting is not None and self.latency is not None:
            return where + f"greeting after {self.latency:5.2f} s ({self.greeting.code})"
        return where + f"not served: {self.error}"


@dataclass
class LoadReport:
    """What a load measured: each attempt, the bounds used, how long it took in all."""
    attempts: list[Attempt]
    bounds: str
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def served(self) -> list[Attempt]:
        return [a for a in self.attempts if a.served]

    @property
    def not_served(self) -> list[Attempt]:
        return [a for a in self.attempts if not a.served]

    def listing(self) -> str:
        """The bounds, each attempt on a line, and any notes: a check's evidence."""
        lines = [f"bounds: {self.bounds}",
                 f"{len(self.attempts)} connections in {self.seconds:.1f} s, "
                 f"{len(self.served)} served"]
        lines += [str(a) for a in self.attempts]
        return "\n".join(lines + self.notes)


def _bounded(most: int, time_limit: float) -> tuple[int, float]:
    return max(1, min(int(most), MAX_CONNECTIONS)), max(0.1, min(float(time_limit), MAX_SECONDS))


def _greet(sock: socket.socket, timeout: float) -> SmtpSession:
    return SmtpSession(sock, timeout=max(0.05, timeout))


def _close_quietly(sock: socket.socket | None, session: SmtpSession | None = None) -> None:
    """Say QUIT without waiting for the answer, and close."""
    if session is not None:
        try:
            session.sock.settimeout(0.5)
            session.sock.sendall(b"QUIT\r\n")
        except OSError:
            pass
        session.close()
    elif sock is not None:
        try:
            sock.close()
        except OSError:
            pass


def hold_sessions(connect: Connect, most: int = 40, greeting_timeout: float = 5.0,
                  time_limit: float = 20.0, stop_after: int = 3,
                  align: bool = False) -> LoadReport:
    """Open sessions one after another and hold each one open, idle, after its greeting,
    until ``stop_after`` connections in a row are not served (refused, or no greeting
    within ``greeting_timeout``), ``most`` were tried, or ``time_limit`` seconds passed.
    ``latency`` is from a connection's opening to its greeting.

    ``align`` starts the first connection just after a wall-clock second begins: a server
    that counts connections per calendar second (Sendmail's ConnectionRateThrottle) then
    sees the series from the start of its count. Holding matters there too: Sendmail's
    throttle sleeps, and a child that exits (a session closed) cuts that sleep short.

    Every session is closed (QUIT, close) before this returns, whatever happens.
    """
    most, time_limit = _bounded(most, time_limit)
    bounds = (f"at most {most} connections one after another, held open, greeting timeout "
              f"{greeting_timeout:.1f} s, stop after {stop_after} not served in a row, "
              f"{time_limit:.0f} s in all")
    start = time.monotonic()
    deadline = start + time_limit
    if align:
        time.sleep(1.0 - time.time() % 1.0 + 0.005)
        start = time.monotonic()
    held: list[SmtpSession] = []
    attempts: list[Attempt] = []
    in_a_row = 0
    try:
        for i in range(most):
            now = time.monotonic()
            if now >= deadline or in_a_row >= max(1, stop_after):
                break
            sock = None
            try:
                sock = connect()
                session = _greet(sock, min(greeting_timeout, deadline - now))
            except OSError as exc:
                attempts.append(Attempt(i, now - start, error=f"connection failed: "
                                                              f"{exc.strerror or exc}"))
            except SmtpTimeout:
                attempts.append(Attempt(i, now - start,
                                        error=f"no greeting within {greeting_timeout:.1f} s"))
                _close_quietly(sock)
            except SmtpError as exc:
                attempts.append(Attempt(i, now - start, error=str(exc)))
                _close_quietly(sock)
            else:
                attempts.append(Attempt(i, now - start, time.monotonic() - now, session.greeting))
                held.append(session)
                in_a_row = 0
                continue
            in_a_row += 1
    finally:
        for session in held:
            _close_quietly(None, session)
    return LoadReport(attempts, bounds, time.monotonic() - start)


def wait_until_served(connect: Connect, time_limit: float = 20.0, interval: float = 1.0,
                      greeting_timeout: float = 5.0) -> float | None:
    """Seconds until the server greets a new connection again (after a load that made it
    refuse), trying every ``interval`` seconds; None if it did not within ``time_limit``."""
    _, time_limit = _bounded(1, time_limit)
    start = time.monotonic()
    while True:
        now = time.monotonic()
        try:
            sock = connect()
        except OSError:
            sock = None
        if sock is not None:
            session = None
            try:
                session = _greet(sock, min(greeting_timeout, max(0.1, start + time_limit - now)))
                return time.monotonic() - start
            except SmtpError:
                pass
            finally:
                _close_quietly(sock, session)
        if time.monotonic() + interval > start + time_limit:
            return None
        time.sleep(interval)


@dataclass(frozen=True)
class TimedReply:
    """A command, the server's reply, and how long the reply took."""
    command: str
    reply: Reply
    seconds: float

    def __str__(self) -> str:
        return f"{self.command} -> {self.reply} ({self.seconds:.2f} s)"


def timed_commands(session: SmtpSession, commands: Sequence[str], most: int = 10,
                   time_limit: float = 30.0) -> list[TimedReply]:
    """Send ``commands`` one by one on ``session`` (at most ``most`` of them, and none
    after ``time_limit`` seconds), timing each reply."""
    most, time_limit = _bounded(most, time_limit)
    deadline = time.monotonic() + time_limit
    timed: list[TimedReply] = []
    for line in list(commands)[:most]:
        now = time.monotonic()
        if now >= deadline:
            break
        reply = session.command(line, timeout=max(0.1, min(session.timeout, deadline - now)))
        timed.append(TimedReply(line, reply, time.monotonic() - now))
    return timed
