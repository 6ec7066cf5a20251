"""What is true on a lab host: file modes and owners, listeners, processes, queues, logs.

Each function runs ordinary commands on the host through the engine (stat, ss, ps,
mailq, journalctl) and parses their output, so what a probe reports is what the learner
would see typing the same command in ``labkit shell``.
"""

from __future__ import annotations

import re
import stat as statmod
from dataclasses import dataclass

from labkit.engines.base import Engine
from labkit.errors import LabkitError


class HostProbeError(LabkitError):
    """A host inspection could not be made (file missing, command failed)."""


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


def _socket_pids(engine: Engine, host: str, ss_filter: list[str]) -> list[int]:
    out = engine.run(host, ["ss", "-Htnp", *ss_filter]).stdout
    return sorted({int(p) for p in re.findall(r"pid=(\d+)", out)})


def _users_of(engine: Engine, host: str, pids: list[int]) -> list[ProcessInfo]:
    wanted = set(pids)
    return [p for p in processes(engine, host) if p.pid in wanted]


def session_process_users(engine: Engine, vantage: str, host: str,
                          port: int = 25) -> SessionUsers:
    """Which user serves an SMTP session on ``host``: one is held open from ``vantage``,
    and the process holding its socket on ``host`` is looked up (``ss``, then ``ps``)."""
    from labkit.probes import smtp_session
    listen = _users_of(engine, host, _socket_pids(engine, host, ["-l", f"sport = :{port}"]))
    with smtp_session(engine, vantage, host, port) as session:
        session.ehlo()
        addr, src_port = session.sock.getsockname()[:2]
        held = _users_of(engine, host, _socket_pids(
            engine, host, ["state", "established", "dst", f"{addr}:{src_port}"]))
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
