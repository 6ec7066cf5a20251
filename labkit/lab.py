"""The ``Lab`` object: one lab of the topology on one engine, for notebooks and the CLI.

>>> lab = Lab()                # the lab called "lab" on the local engine
>>> lab.up()                   # starts (and on first use builds) every host
>>> lab.run("relay", ["sendmail", "-d0.1", "-bt"], input="")
>>> lab.sink_messages()        # what the outside MX (example.net) has received
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labkit import checks, pki, probes
from labkit import topology as topolib
from labkit.engines import get_engine
from labkit.engines.base import Engine, HostStatus, Progress, RunResult
from labkit.probes import host as hostprobe
from labkit.probes.mailflow import MessageFate, send_and_follow
from labkit.probes.smtp import (
    LimitProbe,
    Reply,
    probe_declared_size,
    probe_mail_without_helo,
    probe_recipient_limit,
)
from labkit.probes.tls import start_tls

if TYPE_CHECKING:
    from labkit.course.faults import Fault
    from labkit.course.finish import Finished


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _show(obj: object) -> None:
    """Display ``obj`` as rich output in a notebook, else print its text."""
    try:
        from IPython import get_ipython
        from IPython.display import display
        if get_ipython() is not None:
            display(obj)
            return
    except ImportError:
        pass
    print(obj)


@dataclass
class SinkMessage:
    """A message the outside MX received (see vagrant/provision/files/internet)."""
    name: str
    received_at: str
    peer: str | None
    helo: str | None
    mail_from: str
    rcpt_tos: list[str]
    size: int
    data: str


class Lab:
    """A lab of the topology on an engine ("local" by default), under a name.

    The name defaults to $LABKIT_LAB, else "lab" (what ``labkit up`` starts).
    """

    def __init__(self, name: str | None = None, engine: str | None = None,
                 topology: topolib.Topology | None = None,
                 progress: Progress | None = _stderr) -> None:
        name = name or os.environ.get("LABKIT_LAB", "lab")
        engine = engine or os.environ.get("LABKIT_ENGINE", "local")
        self.topology = topology or topolib.load()
        self.engine: Engine = get_engine(engine, self.topology, name)
        self.name = name
        self.progress = progress

    def __repr__(self) -> str:
        return f"Lab({self.name!r}, engine={self.engine.kind!r})"

    # the engine's verbs
    def up(self) -> Lab:
        self.engine.up(self.progress)
        return self

    def down(self) -> None:
        from labkit.course import faults
        self.engine.down()
        faults.forget(self)

    def is_running(self) -> bool:
        return self.engine.is_running()

    def status(self) -> list[HostStatus]:
        return self.engine.status()

    def run(self, host: str, argv: list[str] | str, input: str | None = None,
            timeout: float = 60) -> RunResult:
        """Run a command on ``host`` (a list, or a string for ``sh -c``)."""
        if isinstance(argv, str):
            argv = ["sh", "-c", argv]
        return self.engine.run(host, argv, input=input, timeout=timeout)

    def reset(self, host: str) -> None:
        self.engine.reset(host, self.progress)

    def read_file(self, host: str, path: str) -> str:
        return self.engine.read_file(host, path)

    def write_file(self, host: str, path: str, content: str, mode: str = "0644") -> None:
        self.engine.write_file(host, path, content, mode)

    # probes, from a vantage host
    def smtp(self, vantage: str, target: str = "relay", port: int = 25,
             timeout: float = 10.0, source: str | None = None) -> probes.SmtpSession:
        """An SMTP session from ``vantage`` to ``target`` (a host, an address or a name);
        from ``vantage``'s address ``source`` if given (e.g. its DNSBL-listed one,
        ``str(lab.topology.listed_client("internet").address)``).

        >>> with lab.smtp("internet", "relay") as s:
        ...     s.ehlo(); s.vrfy("root")
        ...     print(s.transcript)
        """
        return probes.smtp_session(self.engine, vantage, target, port, timeout, source)

    def recipient_limit(self, vantage: str = "internet", target: str = "relay",
                        recipient: str = "jo@example.com", most: int = 200) -> LimitProbe:
        """How many RCPTs one message may have before ``target`` refuses (up to ``most``)."""
        with self.smtp(vantage, target) as s:
            return probe_recipient_limit(s, f"probe@{self.topology.domains['outside']}",
                                         recipient, most)

    def declared_size(self, vantage: str = "internet", target: str = "relay",
                      size: int = 50_000_000) -> tuple[str | None, Reply]:
        """The SIZE ``target`` advertises, and its answer to MAIL FROM ... SIZE=``size``."""
        with self.smtp(vantage, target) as s:
            return probe_declared_size(s, f"probe@{self.topology.domains['outside']}", size)

    def mail_without_helo(self, vantage: str = "internet", target: str = "relay") -> Reply:
        """MAIL FROM before HELO/EHLO: a 2xx reply means no greeting is required."""
        with self.smtp(vantage, target) as s:
            return probe_mail_without_helo(s, f"probe@{self.topology.domains['outside']}")

    def dns(self, vantage: str) -> probes.DnsProbe:
        """DNS look-ups as ``vantage`` makes them: ``lab.dns("server").mx("example.com")``."""
        return probes.dns_probe(self.engine, vantage)

    def relay_matrix(self, vantage: str = "internet", target: str = "relay",
                     wait: float = 8.0) -> probes.RelayMatrix:
        """Try every relay trick from ``vantage`` against ``target``; see what leaked."""
        return probes.run_relay_matrix(
            self.engine, vantage, target, wait=wait,
            sink=lambda: [m.data for m in self.sink_messages()])

    def send(self, vantage: str, rcpt_to: str, mail_from: str | None = None,
             target: str | None = None, subject: str = "labkit test", body: str = "Hello.\n",
             wait: float = 20.0, source: str | None = None) -> MessageFate:
        """Send a message from ``vantage`` and follow it: delivered (to which mailbox),
        at the outside sink, bounced (with the bounce text), queued, or refused.

        ``target`` is the server spoken to: by default the relay from outside, the
        server from inside. ``source``: an address of ``vantage`` to send from.
        """
        topo = self.topology
        if target is None:
            target = "relay" if topo.host(vantage).address_on("inside") is None else "server"
        mail_from = mail_from or f"{vantage}-user@{topo.host(vantage).fqdn.split('.', 1)[1]}"
        return send_and_follow(
            self.engine, lambda: self.smtp(vantage, target, source=source),
            lambda: [(m.mail_from, m.data) for m in self.sink_messages()],
            mail_from, rcpt_to, subject, body, helo=topo.host(vantage).fqdn, wait=wait)

    def _certificate_of(self, ca: pki.LabCA, host: str | None) -> tuple[str, str] | None:
        """The (certificate, key) the lab CA issues to ``host``, for a probe to present;
        None for no host."""
        if not host:
            return None
        issued = pki.issue_for_host(ca, self.topology.host(host))
        return issued.cert_pem, issued.key_pem

    def tls(self, vantage: str, target: str = "relay", port: int = 25,
            client: str | None = None) -> probes.TlsReport:
        """STARTTLS on ``target`` from ``vantage``, verified against the lab CA; on port
        465, SMTPS (TLS from the first byte).

        ``client``: a host whose lab certificate the probe presents (e.g. "client").
        """
        ca = pki.LabCA()
        return probes.tls_report(self.engine, vantage, target, port, ca.cert_pem,
                                 self._certificate_of(ca, client), implicit=port == 465)

    def smtps(self, vantage: str, target: str = "relay", port: int = 465,
              verify: bool = True) -> probes.SmtpSession:
        """An SMTPS session (port 465: TLS first, then the greeting) from ``vantage`` to
        ``target``, its certificate verified against the lab CA unless ``verify`` is False.

        >>> with lab.smtps("internet", "relay") as s:
        ...     s.ehlo(); print(s.tls)
        """
        ca = pki.LabCA() if verify else None
        return probes.smtps(self.engine, vantage, target, port, ca.cert_pem if ca else None)

    def smtp_tls(self, vantage: str, target: str = "relay", port: int = 25,
                 client: str | None = None, timeout: float = 10.0) -> probes.SmtpSession:
        """An SMTP session from ``vantage`` to ``target`` already switched to TLS (EHLO,
        STARTTLS verified against the lab CA, EHLO again), presenting the lab certificate
        of host ``client`` if given:

        >>> with lab.smtp_tls("internet", "relay", client="internet") as s:
        ...     s.mail("a@example.net"); print(s.rcpt("b@example.net"))
        """
        ca = pki.LabCA()
        pair = self._certificate_of(ca, client)
        session = self.smtp(vantage, target, port, timeout)
        try:
            name = self.topology.host(target).fqdn if target in self.topology.hosts else target
            return start_tls(session, name, ca.cert_pem, pair,
                             helo=self.topology.host(vantage).fqdn)
        except BaseException:
            session.close()
            raise

    def auth(self, vantage: str, target: str = "relay", user: str = "jo",
             password: str | None = None, port: int = 25) -> probes.AuthReport:
        """SMTP AUTH on ``target`` from ``vantage``, logging in as a lab user."""
        password = password if password is not None else str(self.topology.mail["password"])
        return probes.auth_report(self.engine, vantage, target, user, password, port=port)

    # what is true on a host
    def file_info(self, host: str, path: str) -> hostprobe.FileInfo:
        """Mode, owner and group of ``path`` on ``host``."""
        return hostprobe.file_info(self.engine, host, path)

    def listeners(self, host: str) -> list[hostprobe.Listener]:
        """What listens on which address and port on ``host``."""
        return hostprobe.listeners(self.engine, host)

    def session_users(self, host: str = "relay", vantage: str = "client",
                      port: int = 25) -> hostprobe.SessionUsers:
        """Which user serves an SMTP session on ``host`` (one is held open from ``vantage``).

        The same on every engine. Where the engine cannot tell the session's source port
        (vagrant), the session is known on ``host`` by ``vantage``'s address alone, so
        another session open from ``vantage`` to ``host``:``port`` at the same time gives
        :class:`~labkit.errors.AmbiguousSessionError` rather than a guess.
        """
        return hostprobe.session_process_users(self.engine, vantage, host, port)

    def queue(self, host: str) -> list[hostprobe.QueueEntry]:
        """The MTA queue on ``host``."""
        return hostprobe.mail_queue(self.engine, host)

    def log_mark(self, host: str) -> str:
        """A mark in ``host``'s journal, for :meth:`logs_since`."""
        return hostprobe.log_mark(self.engine, host)

    def logs_since(self, host: str, mark: str, unit: str | None = None) -> list[str]:
        """``host``'s journal lines after ``mark``."""
        return hostprobe.logs_since(self.engine, host, mark, unit)

    # the outside world, changed for a demonstration
    @contextmanager
    def listed_in_dnsbl(self, host: str = "internet") -> Iterator[str]:
        """While the block runs, the address the relay sees ``host`` connect from is listed
        in the lab DNSBL (rbldnsd on ``internet``, answers 127.0.0.2), so a relay that checks the DNSBL
        refuses it; the listing is removed afterwards, whatever happens. Yields the
        address listed.

        >>> with lab.listed_in_dnsbl("internet"):
        ...     print(lab.send("internet", "jo@example.com").reply)
        """
        address = str(self.topology.address_for(host, "relay"))
        data = f"/var/lib/rbldns/lab/{self.topology.dnsbl['ip_zone']}.ip4set"
        # rbldnsd re-reads its data on a restart; Unbound forgets what it cached of it.
        reload = "systemctl restart rbldnsd unbound"
        self.run("internet", f"cp {data} {data}.labkit-saved && "
                             f"echo {address} >> {data} && {reload}").check()
        try:
            yield address
        finally:
            self.run("internet", f"mv {data}.labkit-saved {data} && {reload}").check()

    @contextmanager
    def impostor_server(self, stands_for: str = "server", via: str = "relay"
                        ) -> Iterator[probes.Impostor]:
        """While the block runs, ``via``'s SMTP connections to ``stands_for`` reach a
        stand-in on ``internet`` whose certificate the lab CA did not sign (it names the
        right host, self-signed): does the relay hand it mail? Removed afterwards,
        whatever happens. See labkit.probes.impostor.

        >>> with lab.impostor_server() as impostor:
        ...     lab.send("internet", "jo@example.com", wait=5)
        ...     print(impostor.messages())
        """
        from labkit.probes.impostor import impostor_server
        with impostor_server(self.engine, stands_for, via) as impostor:
            yield impostor

    # what the lab's own services recorded
    def sink_messages(self) -> list[SinkMessage]:
        """Every message the outside MX has recorded, oldest first."""
        sink = self.topology.mail["sink"]
        script = ('cd "$1" 2>/dev/null || exit 0; for f in $(ls | sort); do '
                  'printf "%s\\n" "$f"; cat "$f"; printf "\\n\\036\\n"; done')
        out = self.run(sink["host"], ["sh", "-c", script, "sh", sink["spool"]]).check().stdout
        messages = []
        for chunk in out.split("\n\x1e\n"):
            if not chunk.strip():
                continue
            name, _, body = chunk.partition("\n")
            rec = json.loads(body)
            messages.append(SinkMessage(name=name, **rec))
        return messages

    # the course
    def start(self, section: str) -> None:
        """Put relay, mx2 and server in the start state of course section ``section`` ("08" or
        "privacy"): the baseline, with every earlier section hardened (what ``labkit
        start`` does). Every change made on them so far is lost."""
        from labkit.course.hardening import section as course_section
        from labkit.course.hardening import start_state
        target = course_section(section)
        started = time.monotonic()
        results = start_state(self.engine, target.number, self.progress)
        if self.progress:
            self.progress(f"relay, mx2 and server are in the start state of section {target.number} "
                          f"({target.title}): {len(results)} changes of earlier sections "
                          f"({time.monotonic() - started:.0f} s)")

    def inject_fault(self, name: str | None = None, seed: int | None = None,
                     learner: str | None = None, hardened: bool = False,
                     require_passing: bool = True) -> Fault:
        """Inject a fault of the capstone's catalogue (what ``labkit break`` does): ``name``,
        or the one ``seed`` picks for ``learner`` (default: this lab's name, as
        ``labkit break --random --seed N --lab NAME`` does; a notebook names its learner so
        that the lab it is graded on gets the same fault). ``hardened`` first puts relay, mx2 and
        server in the hardened state of the whole course (every change on them lost).
        The fault's checks must pass first (FaultError otherwise), unless
        ``require_passing`` is False. Returns the fault; shown, it gives only its ticket."""
        from labkit.course import faults
        if (name is None) == (seed is None):
            raise faults.FaultError("name a fault, or give a seed to pick one for this lab")
        fault = faults.get(name) if name is not None else \
            faults.pick(seed, self.name if learner is None else learner)
        if hardened:
            faults.harden_all(self, self.progress)
        faults.inject(self, fault, seed=seed, require_passing=require_passing)
        return fault

    def repair_fault(self, name: str) -> None:
        """Apply the documented fix of fault ``name`` (the instructor's answer)."""
        from labkit.course import faults
        faults.repair(self, faults.get(name))

    def finish(self) -> Finished:
        """Put relay, mx2 and server back to their baseline (what ``labkit finish`` does);
        what was removed, per host."""
        from labkit.course.finish import finish
        return finish(self, self.progress)

    # graded checks
    def check(self, check_id: str, show: bool = True) -> checks.Result:
        """Run one graded check (e.g. ``"privacy.vrfy_disabled"``) against this lab.

        Shows the result (HTML in JupyterLab, text elsewhere) and returns it when it
        passed; raises :class:`~labkit.checks.ChecksFailedError` (an AssertionError) with
        the observation and the hint when it failed or could not observe, so a notebook
        cell run by nbval fails with what to fix.
        """
        report = checks.run_checks(self, [checks.get(check_id)])
        if show:
            _show(report.results[0])
        report.assert_passed()
        return report.results[0]

    def checks(self, *sections: str, ids: tuple[str, ...] = (), show: bool = True,
               raise_on_failure: bool = True) -> checks.Report:
        """Run the graded checks of ``sections`` (e.g. ``"08"``, ``"relay"``; every section
        if none is named, or only ``ids``) against this lab; show the table and, unless
        ``raise_on_failure`` is False, raise like :meth:`check` if any did not pass."""
        report = checks.run_checks(self, checks.select(ids, sections))
        if show:
            _show(report)
        if raise_on_failure:
            report.assert_passed()
        return report

    def mailbox(self, user: str, host: str = "server") -> str:
        """The content of ``user``'s mailbox on ``host`` ('' if it has none)."""
        return hostprobe.mailbox(self.engine, host, user)
