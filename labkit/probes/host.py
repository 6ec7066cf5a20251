"""What is true on a lab host: file modes and owners, listeners, processes, queues, logs.

Each function runs ordinary commands on the host through the engine (stat, ss, ps,
mailq, journalctl) and parses their output, so what a probe reports is what the learner
would see typing the same command in ``labkit shell``.
"""

from __future__ import annotations

import ipaddress
import re
import stat as statmod
import time
from dataclasses import dataclass

from labkit.engines.base import Engine
from labkit.errors import AmbiguousSessionError, HostProbeError, SessionNotFoundError

SESSION_SETTLE = 2.0  # seconds to let just-closed sessions leave ESTABLISHED


@dataclass(frozen=True)
class FileInfo:
    path: str
    mode: int  # permission bits, e.g. 0o640
    owner: str
    group: str
    kind: str  # "file", "directory", "symlink", ...

    @property
    def octal(self) -> str:
        return f"{self.mode:04o}"

    @property
    def world_readable(self) -> bool:
        return bool(self.mode & 0o004)

    @property
    def world_writable(self) -> bool:
        return bool(self.mode & 0o002)

    @property
    def group_writable(self) -> bool:
        return bool(self.mode & 0o020)

    def __str__(self) -> str:
        return f"{self.octal} {self.owner}:{self.group} {self.kind} {self.path}"


def file_info(engine: Engine, host: str, path: str) -> FileInfo:
    """Mode, owner, group and kind of ``path`` on ``host`` (links not followed)."""
    res = engine.run(host, ["stat", "-c", "%f|%U|%G|%F", "--", path])
    if not res.ok:
        raise HostProbeError(f"on {host}: {res.stderr.strip() or 'cannot stat ' + path}")
    raw_mode, owner, group, kind = res.stdout.strip().split("|", 3)
    mode = int(raw_mode, 16)
    kinds = {statmod.S_IFDIR: "directory", statmod.S_IFREG: "file", statmod.S_IFLNK: "symlink"}
    return FileInfo(path, statmod.S_IMODE(mode), owner, group,
                    kinds.get(statmod.S_IFMT(mode), kind))


@dataclass(frozen=True)
class Listener:
    protocol: str  # tcp or udp
    address: str
    port: int
    process: str  # program name, "" if unknown

    def __str__(self) -> str:
        return f"{self.protocol} {self.address}:{self.port} {self.process}"


def listeners(engine: Engine, host: str) -> list[Listener]:
    """Every listening TCP socket and bound UDP socket on ``host``, with its program."""
    res = engine.run(host, ["ss", "-Hlntup"]).check()
    found = []
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        proto, local = parts[0], parts[4]
        addr, _, port = local.rpartition(":")
        m = re.search(r'users:\(\("([^"]+)"', line)
        found.append(Listener(proto, addr.strip("[]").split("%")[0], int(port),
                              m.group(1) if m else ""))
    return sorted(set(found), key=lambda x: (x.port, x.protocol, x.address))


@dataclass(frozen=True)
class ProcessInfo:
    pid: int  # inside the host
    ppid: int
    user: str
    command: str


def processes(engine: Engine, host: str) -> list[ProcessInfo]:
    """Every process on ``host`` (pid, parent, user, command line)."""
    res = engine.run(host, ["ps", "-e", "-o", "pid=,ppid=,user:32=,args="]).check()
    procs = []
    for line in res.stdout.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[0].isdigit():
            procs.append(ProcessInfo(int(parts[0]), int(parts[1]), parts[2], parts[3]))
    return procs


@dataclass(frozen=True)
class SessionUsers:
    """Who runs an MTA's listener, and who serves one SMTP session."""
    listener: tuple[str, ...]
    session: tuple[str, ...]
    commands: tuple[str, ...]

    def __str__(self) -> str:
        return (f"listener runs as {', '.join(self.listener) or '?'}; the session is served "
                f"by {', '.join(self.session) or '?'} ({'; '.join(self.commands)})")


@dataclass(frozen=True)
class TcpSession:
    """One established TCP connection as ``ss -tnp`` shows it on a host."""
    local: tuple[str, int]  # (address, port) on the host
    peer: tuple[str, int]   # (address, port) of the other end
    pids: tuple[int, ...]   # processes holding the socket (host PIDs), if ss could tell

    def __str__(self) -> str:
        pids = ",".join(map(str, self.pids)) or "?"
        return f"{self.local[0]}:{self.local[1]} <- {self.peer[0]}:{self.peer[1]} (pid {pids})"


def _address(text: str) -> str:
    """An address as ss prints it, normalised: brackets and %interface dropped, an
    IPv4-mapped IPv6 address given as IPv4."""
    text = text.strip("[]").split("%")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _endpoint(text: str) -> tuple[str, int] | None:
    addr, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return _address(addr), int(port)


def parse_ss_sessions(text: str) -> list[TcpSession]:
    """The TCP connections of ``ss -Htnp`` output, one per line, in its order.

    Reads lines with a State column (``ss -Htnp``) and without (``ss -Htnp state
    established``, which drops it); lines that are not a connection are skipped.
    """
    found = []
    for line in text.splitlines():
        words = line.split()
        if len(words) < 4:
            continue
        first = 2 if words[0].isdigit() else 3  # Recv-Q first: no State column
        if len(words) < first + 2:
            continue
        local, peer = _endpoint(words[first]), _endpoint(words[first + 1])
        if local is None or peer is None:
            continue
        pids = tuple(sorted({int(p) for p in re.findall(r"pid=(\d+)", line)}))
        found.append(TcpSession(local, peer, pids))
    return found


def find_session(ss_output: str, host: str, port: int, peer_address: str,
                 peer_port: int | None = None) -> TcpSession:
    """The one connection to ``port`` on ``host`` that comes from ``peer_address`` (and
    from ``peer_port``, when it is known), among the established connections that
    ``ss -Htnp`` printed on ``host``.

    Raises :class:`~labkit.errors.SessionNotFoundError` if none matches, and
    :class:`~labkit.errors.AmbiguousSessionError` if several do (only possible when
    ``peer_port`` is unknown: several sessions from the same address are open at once).
    Neither error ever picks a session by guess.
    """
    peer = _address(peer_address)
    matches = [s for s in parse_ss_sessions(ss_output)
               if s.local[1] == port and s.peer[0] == peer
               and (peer_port is None or s.peer[1] == peer_port)]
    source = f"{peer}:{peer_port}" if peer_port is not None else peer
    if not matches:
        raise SessionNotFoundError(
            f"on {host}: no established connection to port {port} from {source} (ss shows "
            "none): the session was closed, or it does not reach this host at that address")
    if len(matches) > 1:
        listed = "; ".join(str(s) for s in matches)
        raise AmbiguousSessionError(
            f"on {host}: {len(matches)} established connections to port {port} come from "
            f"{source} ({listed}), and this engine cannot tell which one is the probe's: "
            f"close the other sessions from {source} to {host}:{port} and try again")
    return matches[0]


def _socket_pids(engine: Engine, host: str, ss_filter: list[str]) -> list[int]:
    out = engine.run(host, ["ss", "-Htnp", *ss_filter]).stdout
    return sorted({int(p) for p in re.findall(r"pid=(\d+)", out)})


def _users_of(engine: Engine, host: str, pids: list[int]) -> list[ProcessInfo]:
    wanted = set(pids)
    return [p for p in processes(engine, host) if p.pid in wanted]


def session_process_users(engine: Engine, vantage: str, host: str,
                          port: int = 25) -> SessionUsers:
    """Which user serves an SMTP session on ``host``: one is held open from ``vantage``,
    and the process holding its socket on ``host`` is looked up (``ss``, then ``ps``).

    The session is found on ``host`` by its peer: the source address and port of the
    connection when the engine knows them (:meth:`Engine.source_address`, the local
    engine), else the vantage host's address on a network it shares with ``host`` (from
    the topology) alone. Raises :class:`~labkit.errors.SessionNotFoundError` if no such
    session is open on ``host``, and :class:`~labkit.errors.AmbiguousSessionError` if,
    the source port being unknown, more than one session from that address to ``port``
    is open at once.
    """
    from labkit.probes import smtp_session
    listen = _users_of(engine, host, _socket_pids(engine, host, ["-l", f"sport = :{port}"]))
    with smtp_session(engine, vantage, host, port) as session:
        session.ehlo()
        source = engine.source_address(session.sock)
        if source is not None:
            peer, peer_port = source
        else:
            peer, peer_port = str(engine.topology.address_for(vantage, host)), None
        argv = ["ss", "-Htnp", "state", "established", "sport", "=", f":{port}"]
        deadline = time.monotonic() + SESSION_SETTLE
        while True:
            out = engine.run(host, argv).check().stdout
            try:
                found = find_session(out, host, port, peer, peer_port)
                break
            except (SessionNotFoundError, AmbiguousSessionError):
                # A session from the same peer closed just before may be ESTABLISHED
                # for a moment more: look again before refusing.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        held = _users_of(engine, host, list(found.pids))
    return SessionUsers(tuple(sorted({p.user for p in listen})),
                        tuple(sorted({p.user for p in held})),
                        tuple(p.command for p in held))


@dataclass(frozen=True)
class QueueEntry:
    queue_id: str
    sender: str
    recipients: tuple[str, ...]
    reason: str


def mail_queue(engine: Engine, host: str) -> list[QueueEntry]:
    """The MTA queue on ``host`` (Sendmail's mailq or Postfix's postqueue)."""
    is_postfix = engine.run(host, ["test", "-x", "/usr/sbin/postqueue"]).ok
    if is_postfix:
        return _parse_postqueue(engine.run(host, ["postqueue", "-p"]).stdout)
    return _parse_mailq(engine.run(host, ["mailq"]).stdout)


def _parse_postqueue(text: str) -> list[QueueEntry]:
    entries = []
    for block in text.strip().split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if not lines or not re.match(r"^[0-9A-F]{6,}[*!]?\s", lines[0]):
            continue
        head = lines[0].split()
        reason = " ".join(ln.strip(" ()") for ln in lines[1:] if ln.strip().startswith("("))
        rcpts = tuple(ln.strip() for ln in lines[1:] if not ln.strip().startswith("("))
        entries.append(QueueEntry(head[0].rstrip("*!"), head[-1], rcpts, reason))
    return entries


def _parse_mailq(text: str) -> list[QueueEntry]:
    entries, current = [], None
    for line in text.splitlines():
        m = re.match(r"^([0-9A-Za-z]{14})[*X-]?\s+\d+\s+.*?<(.*)>$", line)
        if m:
            current = [m.group(1), m.group(2), [], ""]
            entries.append(current)
        elif current and line.strip().startswith("("):
            current[3] = line.strip(" ()")
        elif current and line.strip() and not line.startswith(("-", "\t\tTotal", "MSP", "MTA")):
            current[2].append(line.strip())
    return [QueueEntry(e[0], e[1], tuple(e[2]), e[3]) for e in entries]


def mailbox(engine: Engine, host: str, user: str) -> str:
    """The mbox of ``user`` on ``host`` ('' if there is none)."""
    res = engine.run(host, ["cat", f"/var/mail/{user}"])
    return res.stdout if res.ok else ""


def log_mark(engine: Engine, host: str) -> str:
    """A mark in ``host``'s journal; :func:`logs_since` returns what came after it."""
    res = engine.run(host, ["journalctl", "-n", "0", "--show-cursor", "--no-pager"]).check()
    m = re.search(r"-- cursor: (\S+)", res.stdout)
    if not m:
        raise HostProbeError(f"on {host}: the journal gave no cursor")
    return m.group(1)


def logs_since(engine: Engine, host: str, mark: str, unit: str | None = None,
               identifier: str | None = None) -> list[str]:
    """Journal lines of ``host`` written after ``mark`` (optionally one unit or syslog tag)."""
    args = ["journalctl", "--no-pager", "-o", "short", f"--after-cursor={mark}"]
    if unit:
        args += ["-u", unit]
    if identifier:
        args += ["-t", identifier]
    res = engine.run(host, args)
    return [ln for ln in res.stdout.splitlines() if ln and not ln.startswith("-- ")]
