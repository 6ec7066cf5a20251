"""A lab of the local engine, used by someone who is not root: every verb is a request to
the lab service (labkit.service.server), which checks who asks and for which lab.

Connections opened FROM a lab host come back as the host's own socket (passed over the
service's Unix socket), so probes, checks and the course work unchanged; a shell or a
command on a host gets the caller's terminal (its three descriptors passed the same way).
"""

from __future__ import annotations

import os
import socket
import sys

from labkit import errors
from labkit.engines.base import Engine, HostStatus, Progress, RunResult, ServiceState
from labkit.errors import LabkitError
from labkit.service import protocol


class ServiceError(LabkitError):
    """The lab service refused a request, or is not there."""


def socket_path() -> str:
    return os.environ.get("LABKIT_SERVICE", protocol.DEFAULT_SOCKET)


def available() -> bool:
    """True when a lab service listens here (a class server), for a caller who is not root."""
    return os.geteuid() != 0 and os.path.exists(socket_path())


def request(op: str, lab: str = "", fds: list[int] | None = None, **args) -> tuple[object, list[int]]:
    """Send one request; the result and the descriptors that came back. A refusal raises
    the error class the service named (LabNotRunningError, ...) or ServiceError."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.connect(socket_path())
        except OSError as exc:
            raise ServiceError(f"the lab service does not answer at {socket_path()}: "
                               f"{exc.strerror or exc} (the instructor starts it with "
                               "labkit class serve)") from exc
        protocol.send(sock, {"op": op, "lab": lab, "args": args}, fds)
        reply, back = protocol.recv(sock)
    finally:
        sock.close()
    if reply.get("ok"):
        return reply.get("result"), back
    kind, message = reply.get("kind", ""), reply.get("error", "refused")
    if reply.get("errno"):
        raise OSError(reply["errno"], message)
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, LabkitError):
        try:
            error = cls(message)
        except TypeError:  # an error class made from other arguments
            error = ServiceError(message)
        raise error
    raise ServiceError(message)


class ServiceEngine(Engine):
    """The local engine's lab ``lab``, through the lab service."""

    kind = "local"

    def _call(self, op: str, **args) -> object:
        return request(op, self.lab, **args)[0]

    def up(self, progress: Progress | None = None) -> None:
        if progress:
            progress(f"asking the lab service to start lab {self.lab!r} ...")
        self._call("up")

    def down(self) -> None:
        self._call("down")

    def is_running(self) -> bool:
        return bool(self._call("is_running"))

    def status(self) -> list[HostStatus]:
        hosts = []
        for h in self._call("status"):
            services = [ServiceState(**s) for s in h.pop("services")]
            hosts.append(HostStatus(**h, services=services))
        return hosts

    def run(self, host: str, argv: list[str], input: str | None = None,
            timeout: float = 60) -> RunResult:
        r = self._call("run", host=host, argv=list(argv), input=input, timeout=timeout)
        return RunResult(host, list(argv), r["returncode"], r["stdout"], r["stderr"])

    def run_privileged(self, host: str, argv: list[str], input: str | None = None,
                       timeout: float = 60) -> RunResult:
        r = self._call("run_privileged", host=host, argv=list(argv), input=input,
                       timeout=timeout)
        return RunResult(host, list(argv), r["returncode"], r["stdout"], r["stderr"])

    def reset(self, host: str, progress: Progress | None = None) -> None:
        self._call("reset", host=host)
        if progress:
            progress(f"{host} reset to its baseline")

    def connect(self, host: str, address: str, port: int, timeout: float = 10.0,
                source: str | None = None) -> socket.socket:
        _, fds = request("connect", self.lab, host=host, address=address, port=port,
                         timeout=timeout, source=source)
        if len(fds) != 1:
            raise ServiceError("the lab service sent no connection")
        sock = socket.socket(fileno=fds[0])
        sock.settimeout(timeout)
        return sock

    def source_address(self, sock: socket.socket) -> tuple[str, int] | None:
        address, port = sock.getsockname()[:2]
        return str(address), int(port)

    def shell_argv(self, host: str) -> list[str]:
        return [sys.executable, "-m", "labkit.service.attach", self.lab, host]

    def host_command(self, host: str, argv: list[str]) -> list[str]:
        return [sys.executable, "-m", "labkit.service.attach", self.lab, host, "--", *argv]
