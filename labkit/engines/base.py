"""The engine interface: what every engine (local, vagrant) gives labkit.

An engine starts and stops a whole lab of the topology's hosts, runs commands on a
host, copies files to and from it, and resets a host to its baseline. Everything
above this layer (probes, configuration, checks, notebooks) uses only these verbs, so
it works the same on every engine.
"""

from __future__ import annotations

import abc
import contextlib
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from labkit.errors import CommandError, LabkitError
from labkit.topology import Topology

LAB_NAME = re.compile(r"^[a-z][a-z0-9-]{0,11}$")
Progress = Callable[[str], None]


def check_lab_name(name: str) -> str:
    """Return ``name`` if it is a valid lab name, else raise with the rule."""
    if not LAB_NAME.match(name):
        raise LabkitError(
            f"invalid lab name {name!r}: use 1 to 12 lower-case letters, digits or '-', "
            "starting with a letter (e.g. 'lab', 'alice', 'w3')")
    return name


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt, like Ctrl-C, while inside."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt(f"signal {signum}")
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@dataclass
class ServiceState:
    name: str
    active: bool
    state: str  # systemd's word: active, failed, inactive, activating, ...


@dataclass
class HostStatus:
    name: str
    fqdn: str
    running: bool
    addresses: list[str]
    services: list[ServiceState] = field(default_factory=list)
    detail: str = ""


@dataclass
class RunResult:
    """What a command run on a lab host did."""
    host: str
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> RunResult:
        """Return self if the command succeeded, else raise :class:`CommandError`."""
        if self.returncode != 0:
            raise CommandError(self.host, self.argv, self.returncode, self.stdout, self.stderr)
        return self


class Engine(abc.ABC):
    """One lab on one engine. Create with a topology and a lab name."""

    kind: str = "abstract"

    def __init__(self, topology: Topology, lab: str) -> None:
        self.topology = topology
        self.lab = check_lab_name(lab)

    @abc.abstractmethod
    def up(self, progress: Progress | None = None) -> None:
        """Start every host and wait until each host's services are active.

        Raises :class:`~labkit.errors.LabExistsError` if the lab is running, and
        :class:`~labkit.errors.HostBootError` (with the host's journal) if a host or a
        service fails; in every failure, and on Ctrl-C, nothing is left half-made.
        """

    @abc.abstractmethod
    def down(self) -> None:
        """Stop every host and remove everything the lab made. A lab not running is fine."""

    @abc.abstractmethod
    def is_running(self) -> bool:
        """True if the lab's hosts are up."""

    @abc.abstractmethod
    def status(self) -> list[HostStatus]:
        """Each host: running or not, its addresses, its services' states."""

    @abc.abstractmethod
    def run(self, host: str, argv: list[str], input: str | None = None,
            timeout: float = 60) -> RunResult:
        """Run ``argv`` as root on ``host``; never raises for a non-zero exit."""

    @abc.abstractmethod
    def shell_argv(self, host: str) -> list[str]:
        """The command that opens an interactive root shell on ``host``."""

    @abc.abstractmethod
    def reset(self, host: str, progress: Progress | None = None) -> None:
        """Put ``host`` back to its baseline (every change on it is lost)."""

    @abc.abstractmethod
    def host_command(self, host: str, argv: list[str]) -> list[str]:
        """A command line for this machine that runs ``argv`` on ``host``."""

    @abc.abstractmethod
    def connect(self, host: str, address: str, port: int, timeout: float = 10.0) -> socket.socket:
        """A TCP connection to ``address``:``port`` opened FROM ``host`` (its addresses,
        its routes): the one network primitive every probe is built on.

        Raises OSError as a socket would (refused, unreachable, timed out).
        """

    # --- derived verbs, the same for every engine -------------------------------

    def read_file(self, host: str, path: str) -> str:
        """The content of ``path`` on ``host`` (text)."""
        return self.run(host, ["cat", "--", path]).check().stdout

    def write_file(self, host: str, path: str, content: str, mode: str = "0644") -> None:
        """Write ``content`` to ``path`` on ``host`` (parent directories created)."""
        script = 'mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1"'
        self.run(host, ["sh", "-c", script, "sh", path, mode], input=content).check()

    def popen(self, host: str, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start ``argv`` on ``host`` without waiting (for long-lived sessions)."""
        return subprocess.Popen(self.host_command(host, argv), **kwargs)
