"""Probes: what a client sees from a vantage host, and what is true on a host.

Every network probe runs FROM a named lab host, through the engine's ``connect``, so
the same probe gives the outside view (``internet``), the inside view (``client``) or
the local view (``relay``) on either engine.
"""

from __future__ import annotations

import ipaddress

from labkit.engines.base import Engine
from labkit.probes.dns import DnsProbe
from labkit.probes.relay import RelayMatrix, relay_matrix, relay_variants
from labkit.probes.smtp import SmtpSession


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
                 timeout: float = 10.0) -> SmtpSession:
    """An SMTP session from ``vantage`` to ``target``, greeting already read."""
    address = resolve_target(engine, vantage, target)
    sock = engine.connect(vantage, address, port, timeout)
    return SmtpSession(sock, timeout=timeout, peer=f"{target} ({address}:{port}) from {vantage}")


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


__all__ = ["DnsProbe", "RelayMatrix", "SmtpSession", "dns_probe", "resolve_target",
           "run_relay_matrix", "smtp_session"]
