"""The engine interface: what every engine (local, vagrant) gives labkit.

An engine starts and stops a whole lab of the topology's hosts, runs commands on a
host, copies files to and from it, and resets a host to its baseline. Everything
above this layer (probes, configuration, checks, notebooks) uses only these verbs, so
it works the same on every engine.
"""

from __future__ import annotations

import abc
import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from labkit.errors import CommandError, LabExistsError, LabkitError
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


def engine_option(kind: str) -> str:
    """The ``--engine`` option a ``labkit`` command line needs to reach a lab of engine
    ``kind``, with its leading space: always `` --engine KIND`` for an engine other than
    ``local``; for ``local``, '' unless $LABKIT_ENGINE makes another engine the default."""
    if kind != "local" or os.environ.get("LABKIT_ENGINE", "local") not in ("", "local"):
        return f" --engine {kind}"
    return ""


def lab_option(lab: str) -> str:
    """The ``--lab`` option a ``labkit`` command line needs for lab ``lab``, with its
    leading space ('' for the default lab, ``lab``)."""
    return "" if lab == "lab" else f" --lab {lab}"


def labkit_command(verb: str, kind: str, lab: str) -> str:
    """The ``labkit`` command line that runs ``verb`` on lab ``lab`` of engine ``kind``,
    e.g. ``labkit down --engine vagrant --lab alice``: what error messages and hints
    tell a learner to type."""
    return f"labkit {verb}{engine_option(kind)}{lab_option(lab)}"


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
    #: True if labs of this engine run side by side under different names.
    labs_side_by_side: bool = True

    def __init__(self, topology: Topology, lab: str) -> None:
        self.topology = topology
        self.lab = check_lab_name(lab)

    def command_hint(self, verb: str) -> str:
        """The ``labkit`` command line that runs ``verb`` on this lab, e.g. ``labkit down
        --engine vagrant --lab alice`` (see :func:`labkit_command`)."""
        return labkit_command(verb, self.kind, self.lab)

    def already_running_error(self) -> LabExistsError:
        """The error :meth:`up` raises when this lab is already running: it names the lab
        and its engine, and says how to stop it (and, where labs run side by side, that
        another name starts another lab). The same words on every engine."""
        return LabExistsError(
            f"lab {self.lab!r} is already running on the {self.kind} engine: use it, or stop "
            f"it first with '{self.command_hint('down')}'"
            + (", or pick another name with --lab" if self.labs_side_by_side else ""))

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

    def run_privileged(self, host: str, argv: list[str], input: str | None = None,
                       timeout: float = 60) -> RunResult:
        """Run ``argv`` on ``host`` with more than the host's own root may do: for the kit's
        probes that change a host's network for a few seconds (the impostor's nftables
        redirect), never for a learner's command. By default the same as :meth:`run`
        (a VM's root has every capability already)."""
        return self.run(host, argv, input, timeout)

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
    def connect(self, host: str, address: str, port: int, timeout: float = 10.0,
                source: str | None = None) -> socket.socket:
        """A TCP connection to ``address``:``port`` opened FROM ``host`` (its addresses,
        its routes): the one network primitive every probe is built on. ``source``: one
        of ``host``'s addresses to connect from (its DNSBL-listed one, say).

        Raises OSError as a socket would (refused, unreachable, timed out).
        """

    def has_stopped_hosts(self) -> bool:
        """True if this lab, while not running, keeps its hosts stopped to boot again as
        they were (Vagrant's halted VMs). False by default: the local engine keeps
        nothing of a lab that is not running but leftovers for ``up`` to clear."""
        return False

    def source_address(self, sock: socket.socket) -> tuple[str, int] | None:
        """The (address, port) that a connection made by :meth:`connect` comes from, on
        the host that opened it: what its target sees as the connection's peer.

        None when the engine cannot tell, which is the default: an engine whose ``sock``
        is not the host's own socket (a forward carried over SSH, say) must not guess
        from the local end. An engine whose ``connect`` returns the host's own socket
        answers with that socket's address.
        """
        return None

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
