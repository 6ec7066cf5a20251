"""The lab service: what labkit must do as root, done for learners who are not.

On a shared server each learner's JupyterLab and kernels run as a user of their own. What
their labkit needs root for (start or reset their lab, run a command on one of its hosts,
open a connection from a host, a shell on a host) it asks of this service, over a Unix
socket. The service learns who asks from the kernel (SO_PEERCRED), not from the request:

- root, and members of the group ``labkit-instructors``, may act on every lab;
- a learner of the class on this machine (``labkit class``) may act on the lab named after
  them, and on no other; anyone else on none.

A command runs on a host with that host's own capabilities (see the local engine), so a
learner is root in their own lab's hosts and nowhere else. The one thing done with more
(the TLS policy probe's nftables redirect, in the lab host's own network namespace) is
allowed only as the exact commands the probe uses.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import socketserver
import struct
import subprocess
import threading
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from labkit.errors import LabkitError
from labkit.probes import impostor
from labkit.service import protocol

INSTRUCTORS = "labkit-instructors"


class NotAllowed(LabkitError):
    """The caller may not act on that lab."""


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def default_learners() -> set[str]:
    """The learners of the class on this machine (none without a class)."""
    from labkit import classroom
    try:
        return set(classroom.load().names)
    except classroom.ClassError:
        return set()


class Authority:
    """Who may act on which lab."""

    def __init__(self, learners: Callable[[], set[str]] = default_learners) -> None:
        self.learners = learners

    def user(self, uid: int) -> str:
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return f"uid {uid}"

    def is_instructor(self, uid: int) -> bool:
        if uid == 0:
            return True
        try:
            name = pwd.getpwuid(uid).pw_name
            return name in grp.getgrnam(INSTRUCTORS).gr_mem
        except KeyError:
            return False

    def labs(self, uid: int) -> list[str] | None:
        """The labs ``uid`` may act on; None for every lab."""
        if self.is_instructor(uid):
            return None
        name = self.user(uid)
        return [name] if name in self.learners() else []

    def require(self, uid: int, lab: str) -> None:
        labs = self.labs(uid)
        if labs is not None and lab not in labs:
            who = self.user(uid)
            raise NotAllowed(f"{who} may not act on lab {lab!r}"
                             + (f" (only on {labs[0]!r})" if labs else
                                f" ({who} is not a learner of the class on this machine)"))


#: The only commands run with more than a lab host's own capabilities: the TLS policy
#: probe's redirect (labkit.probes.impostor), put in place and removed.
PRIVILEGED = (["nft", "-f", "-"], impostor.REMOVE_RULE_ARGV)


class LabService:
    """The requests, each checked against :class:`Authority` (see the module doc)."""

    def __init__(self, authority: Authority | None = None, engine_kind: str = "local") -> None:
        self.authority = authority or Authority()
        self.kind = engine_kind
        self._engines: dict[str, object] = {}
        self._lock = threading.Lock()

    def engine(self, lab: str):
        from labkit import topology
        from labkit.engines import get_engine
        with self._lock:
            if lab not in self._engines:
                self._engines[lab] = get_engine(self.kind, topology.load(), lab)
            return self._engines[lab]

    def handle(self, uid: int, request: dict, fds: list[int]) -> tuple[object, list[int]]:
        """The result of ``request`` from ``uid`` and the descriptors to send back."""
        op = request.get("op")
        if op == "whoami":
            labs = self.authority.labs(uid)
            return {"user": self.authority.user(uid), "labs": labs}, []
        if op == "issue":  # a certificate from the lab CA, for a host of the topology
            return self._issue(uid, str((request.get("args") or {}).get("host", ""))), []
        lab = str(request.get("lab", ""))
        self.authority.require(uid, lab)
        engine = self.engine(lab)
        a = request.get("args") or {}
        if op == "is_running":
            return engine.is_running(), []
        if op == "status":
            return [asdict(s) for s in engine.status()], []
        if op == "up":
            engine.up()
            return None, []
        if op == "down":
            engine.down()
            with self._lock:
                self._engines.pop(lab, None)
            return None, []
        if op == "reset":
            engine.reset(a["host"])
            return None, []
        if op in ("run", "run_privileged"):
            argv = [str(x) for x in a["argv"]]
            if op == "run_privileged" and argv not in PRIVILEGED:
                raise NotAllowed(f"not a command the service runs with privileges: {argv}")
            run = engine.run if op == "run" else engine.run_privileged
            res = run(a["host"], argv, a.get("input"), float(a.get("timeout", 60)))
            return {"returncode": res.returncode, "stdout": res.stdout, "stderr": res.stderr}, []
        if op == "fault_records":
            return self._fault_records(lab, a.get("records")), []
        if op == "connect":
            sock = engine.connect(a["host"], a["address"], int(a["port"]),
                                  float(a.get("timeout", 10)), a.get("source"))
            return None, [sock.detach()]
        if op == "attach":
            if len(fds) != 3:
                raise LabkitError("attach needs the caller's stdin, stdout and stderr")
            argv = [str(x) for x in a.get("argv") or []]
            cmd = engine.host_command(a["host"], argv) if argv else engine.shell_argv(a["host"])
            proc = subprocess.Popen(cmd, stdin=fds[0], stdout=fds[1], stderr=fds[2],
                                    start_new_session=True)
            return proc.wait(), []
        raise LabkitError(f"unknown request {op!r}")


    def _fault_records(self, lab: str, records: list | None) -> list[dict]:
        """The capstone's fault records of ``lab`` (root's store): read, or replaced by
        ``records`` (each of this lab, this engine, a fault of the catalogue)."""
        from labkit.course import faults
        if records is not None:
            names = {f.name for f in faults.catalogue()}
            recs = [faults.FaultRecord(**r) for r in records]
            for r in recs:
                if r.lab != lab or r.engine != self.kind or r.fault not in names:
                    raise NotAllowed(f"not a fault record of lab {lab!r}: {r}")
            faults.save_records(self.kind, lab, recs)
        return [asdict(r) for r in faults.lab_records(self.kind, lab)]

    def _issue(self, uid: int, host: str) -> dict:
        """The lab CA's key stays root's: a learner with a lab gets a certificate for one of
        the topology's hosts (the names are the topology's, never the caller's)."""
        from labkit import pki, topology
        if self.authority.labs(uid) == []:
            raise NotAllowed(f"{self.authority.user(uid)} has no lab on this machine")
        topo = topology.load()
        if host not in topo.hosts:
            raise NotAllowed(f"no host {host!r} in the lab's topology")
        issued = pki.issue_for_host(pki.LabCA(), topo.host(host))
        return {"cert_pem": issued.cert_pem, "key_pem": issued.key_pem}


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        try:
            request, fds = protocol.recv(sock)
        except OSError:
            return
        try:
            result, out_fds = self.server.service.handle(peer_uid(sock), request, fds)
            reply = {"ok": True, "result": result}
        except (LabkitError, OSError, KeyError, ValueError, TypeError) as exc:
            result, out_fds = None, []
            reply = {"ok": False, "error": str(exc) or type(exc).__name__,
                     "kind": type(exc).__name__,
                     "errno": getattr(exc, "errno", None)}
        finally:
            for fd in fds:
                os.close(fd)
        try:
            protocol.send(sock, reply, out_fds)
        except OSError:
            pass
        finally:
            for fd in out_fds:
                os.close(fd)


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, service: LabService) -> None:
        self.service = service
        if os.geteuid() == 0:
            from labkit import pki
            pki.LabCA()  # made now if missing: learners read its certificate
        super().__init__(path, _Handler)


class Running:
    """A lab service running in a thread of this process, until :meth:`stop`."""

    def __init__(self, path: str, service: LabService) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)
        self._server = _Server(path, service)
        self.path.chmod(0o666)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.path.unlink(missing_ok=True)


def serve(path: str = protocol.DEFAULT_SOCKET, service: LabService | None = None,
          ready: threading.Event | None = None) -> None:
    """Listen on ``path`` (mode 0666: who may do what is decided per request) until
    interrupted."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.unlink(missing_ok=True)
    server = _Server(path, service or LabService())
    p.chmod(0o666)
    if ready:
        ready.set()
    try:
        server.serve_forever()
    finally:
        server.server_close()
        p.unlink(missing_ok=True)
