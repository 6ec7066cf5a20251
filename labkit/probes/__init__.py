"""Probes: what a client sees from a vantage host, and what is true on a host.

Every network probe runs FROM a named lab host, through the engine's ``connect``, so
the same probe gives the outside view (``internet``), the inside view (``client``) or
the local view (``relay``) on either engine.
"""

from __future__ import annotations

import ipaddress

from labkit.engines.base import Engine
from labkit.probes.auth import MECHANISMS, AuthReport, authenticate, offered
from labkit.probes.dns import DnsProbe
from labkit.probes.impostor import Impostor
from labkit.probes.relay import RelayMatrix, relay_matrix, relay_variants
from labkit.probes.smtp import SmtpSession
from labkit.probes.tls import TlsReport, inspect_smtps, inspect_starttls, smtps_session


def resolve_target(engine: Engine, vantage: str, target: str) -> str:
    """An address for ``target``, as ``vantage`` would reach it.

    ``target`` is a host of the topology (``relay``), an IPv4 address, or a DNS name
    (looked up through the vantage host's resolver, the lab DNS).
    """
    topo = engine.topology
    if target in topo.hosts:
        return str(topo.address_for(target, vantage))
    try:
        return str(ipaddress.IPv4Address(target))
    except ValueError:
        pass
    addresses = dns_probe(engine, vantage).addresses(target)
    if not addresses:
        raise LookupError(f"{target} has no address in the lab DNS (asked from {vantage})")
    return addresses[0]


def smtp_session(engine: Engine, vantage: str, target: str = "relay", port: int = 25,
                 timeout: float = 10.0, source: str | None = None) -> SmtpSession:
    """An SMTP session from ``vantage`` (from its address ``source`` if given) to
    ``target``, greeting already read."""
    address = resolve_target(engine, vantage, target)
    sock = engine.connect(vantage, address, port, timeout, source)
    where = f"{vantage} ({source})" if source else vantage
    return SmtpSession(sock, timeout=timeout, peer=f"{target} ({address}:{port}) from {where}")


def smtps(engine: Engine, vantage: str, target: str = "relay", port: int = 465,
          ca_pem: str | None = None, client: tuple[str, str] | None = None,
          timeout: float = 10.0) -> SmtpSession:
    """An SMTPS session (TLS first, then the greeting) from ``vantage`` to ``target``,
    the certificate verified against ``ca_pem`` and ``target``'s name if given."""
    topo = engine.topology
    name = topo.host(target).fqdn if target in topo.hosts else target
    address = resolve_target(engine, vantage, target)
    return smtps_session(lambda: engine.connect(vantage, address, port, timeout), name, ca_pem,
                         client, timeout, peer=f"{target} ({address}:{port}) from {vantage}")


def dns_probe(engine: Engine, vantage: str, timeout: float = 5.0) -> DnsProbe:
    """DNS look-ups as ``vantage`` makes them, through its own resolver."""
    server = str(engine.topology.host(vantage).resolver)
    return DnsProbe(lambda addr, port: engine.connect(vantage, addr, port, timeout), server,
                    timeout)


def run_relay_matrix(engine: Engine, vantage: str, target: str, sink=None,
                     victim: str | None = None, wait: float = 8.0) -> RelayMatrix:
    """The relay-attempt matrix from ``vantage`` against ``target`` (see probes.relay)."""
    topo = engine.topology
    victim = victim or f"victim@{topo.domains['outside']}"
    address = resolve_target(engine, vantage, target)
    fqdn = topo.host(target).fqdn if target in topo.hosts else target
    sink_host = topo.mail["sink"]["host"]
    variants = relay_variants(victim, topo.domains["organisation"], fqdn, address,
                              str(topo.host(sink_host).address))
    return relay_matrix(lambda: smtp_session(engine, vantage, target), variants, vantage,
                        target, sink=sink, wait=wait)


def tls_report(engine: Engine, vantage: str, target: str = "relay", port: int = 25,
               ca_pem: str | None = None, client: tuple[str, str] | None = None,
               hostname: str | None = None, implicit: bool = False) -> TlsReport:
    """STARTTLS (SMTPS if ``implicit``: TLS from the first byte) on ``target`` as seen
    from ``vantage`` (see probes.tls)."""
    topo = engine.topology
    name = hostname or (topo.host(target).fqdn if target in topo.hosts else target)
    if implicit:
        address = resolve_target(engine, vantage, target)
        return inspect_smtps(lambda: engine.connect(vantage, address, port), name, ca_pem)
    return inspect_starttls(lambda: smtp_session(engine, vantage, target, port), name,
                            ca_pem, client)


def auth_report(engine: Engine, vantage: str, target: str, user: str, password: str,
                mechanisms: list[str] | None = None, port: int = 25,
                relay_to: str | None = None) -> AuthReport:
    """AUTH on ``target`` from ``vantage``: mechanisms before and after STARTTLS, a login
    with each mechanism (in clear where offered in clear, else under TLS), and whether a
    logged-in client may relay to ``relay_to`` (an outside address by default)."""
    topo = engine.topology
    name = topo.host(target).fqdn if target in topo.hosts else target
    relay_to = relay_to or f"victim@{topo.domains['outside']}"

    def session(tls: bool) -> SmtpSession:
        s = smtp_session(engine, vantage, target, port)
        s.ehlo()
        if tls:
            s.starttls(server_hostname=name)
            s.ehlo()
        return s

    with session(False) as s:
        report = AuthReport(offered(s), "STARTTLS" in s.capabilities)
        transcripts = [str(s.transcript)]
    if report.tls_offered:
        with session(True) as s:
            report.after_tls = offered(s)
    for mech in mechanisms or list(MECHANISMS):
        in_clear = mech in report.before_tls
        if not in_clear and mech not in (report.after_tls or []):
            continue
        with session(not in_clear) as s:
            report.logins[mech] = authenticate(s, mech, user, password, name)
            if report.logins[mech].code == 235 and report.relay_after_login is None:
                if s.mail(f"{user}@{topo.domains['organisation']}").positive:
                    report.relay_after_login = s.rcpt(relay_to)
            transcripts.append(str(s.transcript))
    report.transcript = "\n---\n".join(transcripts)
    return report


__all__ = ["AuthReport", "DnsProbe", "Impostor", "RelayMatrix", "SmtpSession", "TlsReport",
           "auth_report", "dns_probe", "relay_variants", "resolve_target", "run_relay_matrix",
           "smtp_session", "smtps", "tls_report"]
