"""DNS and DNSBL look-ups (dnspython), asked from a lab host of the learner's choosing.

Queries go over TCP through a connection the caller opens (an engine's ``connect`` from
a vantage host, so the answer is what that host gets from ITS resolver). Answers keep
their status (NOERROR, NXDOMAIN, ...) so a check can tell "not listed" from "no answer".
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename

Connect = Callable[[], socket.socket]


class DnsProbeError(Exception):
    """The resolver could not be asked (unreachable, timed out, garbled answer)."""


@dataclass(frozen=True)
class DnsAnswer:
    """The answer to one question: its status and the records' text, sorted."""

    name: str
    rdtype: str
    status: str  # NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...
    records: tuple[str, ...]
    authoritative: bool = False

    @property
    def exists(self) -> bool:
        return self.status == "NOERROR" and bool(self.records)

    def __str__(self) -> str:
        return f"{self.name} {self.rdtype}: {self.status} {' '.join(self.records)}".strip()


@dataclass(frozen=True)
class ListingAnswer:
    """A DNSBL/RHSBL look-up: is ``subject`` listed in ``zone``, with what code and text."""

    subject: str
    zone: str
    query: str
    listed: bool
    codes: tuple[str, ...]
    text: str

    def __str__(self) -> str:
        if not self.listed:
            return f"{self.subject} is not listed in {self.zone}"
        return f"{self.subject} is listed in {self.zone} ({', '.join(self.codes)}): {self.text}"


class DnsProbe:
    """Look-ups through the resolver at ``server``, reached by ``connect(server, 53)``."""

    def __init__(self, connect: Callable[[str, int], socket.socket], server: str,
                 timeout: float = 5.0) -> None:
        self._connect = connect
        self.server = server
        self.timeout = timeout

    def query(self, name: str, rdtype: str = "A") -> DnsAnswer:
        """Ask one question; NXDOMAIN and empty answers are answers, not errors."""
        q = dns.message.make_query(name, rdtype)
        try:
            sock = self._connect(self.server, 53)
        except OSError as exc:
            raise DnsProbeError(f"cannot reach the resolver {self.server}: {exc}") from exc
        try:
            sock.settimeout(self.timeout)
            resp = dns.query.tcp(q, self.server, timeout=self.timeout, sock=sock)
        except (dns.exception.DNSException, OSError) as exc:
            raise DnsProbeError(f"no answer from {self.server} for {name} {rdtype}: {exc}") from exc
        finally:
            sock.close()
        want = dns.rdatatype.from_text(rdtype)
        records = sorted(rd.to_text() for rrset in resp.answer if rrset.rdtype == want
                         for rd in rrset)
        return DnsAnswer(name, rdtype, dns.rcode.to_text(resp.rcode()), tuple(records),
                         bool(resp.flags & dns.flags.AA))

    def addresses(self, name: str) -> list[str]:
        return list(self.query(name, "A").records)

    def mx(self, domain: str) -> list[tuple[int, str]]:
        """(preference, exchange) pairs, best first."""
        pairs = []
        for rec in self.query(domain, "MX").records:
            pref, _, host = rec.partition(" ")
            pairs.append((int(pref), host))
        return sorted(pairs)

    def ptr(self, address: str) -> list[str]:
        return list(self.query(dns.reversename.from_address(address).to_text(), "PTR").records)

    def dnsbl(self, address: str, zone: str) -> ListingAnswer:
        """Is ``address`` listed in the DNSBL ``zone``? (octets reversed under the zone)"""
        ip = ipaddress.IPv4Address(address)
        query = ".".join(reversed(str(ip).split("."))) + "." + zone.rstrip(".")
        return self._listing(address, zone, query)

    def rhsbl(self, domain: str, zone: str) -> ListingAnswer:
        """Is ``domain`` listed in the domain blocklist ``zone``?"""
        return self._listing(domain, zone, domain.rstrip(".") + "." + zone.rstrip("."))

    def _listing(self, subject: str, zone: str, query: str) -> ListingAnswer:
        a = self.query(query, "A")
        if not a.exists:
            return ListingAnswer(subject, zone, query, False, (), "")
        txt = self.query(query, "TXT")
        text = " ".join(r.strip('"') for r in txt.records)
        return ListingAnswer(subject, zone, query, True, a.records, text)
