"""What several sections' checks share: telling a product or version in a text, reading
header fields, the lab's names."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from labkit.checks.base import CannotObserve, Verdict, failed, passed
from labkit.probes.dns import DnsProbeError
from labkit.probes.mailflow import MessageFate
from labkit.probes.smtp import SmtpError

if TYPE_CHECKING:
    from labkit.lab import Lab
    from labkit.probes.relay import RelayMatrix

#: What gives an MTA away: its product name, or a version number (8.17.1.9, 3.7.11).
_PRODUCT = re.compile(r"\b(sendmail|postfix|exim|qmail|debian|ubuntu)\b|\b\d+\.\d+\.\d+(\.\d+)?\b",
                      re.I)
#: Numbers that look like versions but are not: enhanced status codes (2.0.0) at the start
#: of a reply's text, and addresses in brackets ("Hello x [192.168.56.10]", "[IPv6:...]").
_NOT_VERSIONS = re.compile(r"^\s*[245]\.\d{1,3}\.\d{1,3}\s|\[[0-9a-fA-F.:IPv]+\]")


def product_words(text: str) -> list[str]:
    """The product names and version numbers in ``text`` (each once), e.g.
    ``['Sendmail', '8.17.1.9', 'Debian']``; [] when it gives nothing away."""
    found = []
    for line in text.splitlines():
        line = _NOT_VERSIONS.sub(" ", line)
        found += [m.group(0) for m in _PRODUCT.finditer(line)]
    return list(dict.fromkeys(found))


def header_fields(message: str, name: str) -> list[str]:
    """Every ``name:`` header field of ``message``, unfolded, in order."""
    head = message.replace("\r\n", "\n").split("\n\n", 1)[0]
    fields, current = [], None
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and current is not None:
            current += " " + line.strip()
            continue
        if current is not None:
            fields.append(current)
        current = line
    if current is not None:
        fields.append(current)
    prefix = name.lower() + ":"
    return [f[len(prefix):].strip() for f in fields if f.lower().startswith(prefix)]


def fqdn(lab: Lab, host: str) -> str:
    return lab.topology.host(host).fqdn


def org(lab: Lab) -> str:
    return lab.topology.domains["organisation"]


def outside(lab: Lab) -> str:
    return lab.topology.domains["outside"]


def local_user(lab: Lab) -> str:
    """An unprivileged local account on the MTA hosts (the first lab mail user)."""
    return lab.topology.mail["users"][0]


def delivered(fate: MessageFate, what: str) -> MessageFate:
    """``fate`` if the probe message was delivered to a mailbox; else CannotObserve: a check
    that reads a delivered message cannot tell anything from one that went elsewhere."""
    if fate.status != "delivered":
        raise CannotObserve(f"{what}: the probe message was not delivered ({fate})")
    return fate


def list_answer(lab: Lab, vantage: str, name: str, zone: str) -> str:
    """What a lab DNS list says of ``name`` (the full query name under ``zone``), asked
    through ``vantage``'s resolver as its MTA asks: the answer's text when listed, ''
    when not (NXDOMAIN); CannotObserve when the list does not answer, so a check never
    mistakes a silent list for an unlisted client."""
    try:
        answer = lab.dns(vantage).query(name, "A")
    except DnsProbeError as exc:
        raise CannotObserve(f"the DNS list {zone} does not answer {vantage}'s resolver: "
                            f"{exc}") from exc
    if answer.status not in ("NOERROR", "NXDOMAIN"):
        raise CannotObserve(f"the DNS list {zone} does not answer ({answer.status} for {name})")
    return str(answer) if answer.exists else ""


def dnsbl_listing(lab: Lab, vantage: str, address: str) -> str:
    """What the lab DNSBL (by address) says of ``address``; see :func:`list_answer`."""
    zone = lab.topology.dnsbl["ip_zone"]
    return list_answer(lab, vantage, ".".join(reversed(address.split("."))) + "." + zone, zone)


def rhsbl_listing(lab: Lab, vantage: str, domain: str) -> str:
    """What the lab RHSBL (by domain) says of ``domain``; see :func:`list_answer`."""
    zone = lab.topology.dnsbl["domain_zone"]
    return list_answer(lab, vantage, f"{domain}.{zone}", zone)


def relay_matrix_verdict(matrix: RelayMatrix) -> Verdict:
    """A relay check's verdict from a relay matrix: failed if a trick reached the outside
    sink or was accepted, passed if every trick was refused; CannotObserve when the
    server did not answer."""
    evidence = matrix.summary()
    answered = [a for a in matrix.attempts if a.mail_reply is not None]
    if not answered:
        raise CannotObserve(f"no relay attempt got an answer: {matrix.attempts[0].error}")
    if matrix.leaked:
        names = ", ".join(a.variant.name for a in matrix.leaked)
        return failed(f"{len(matrix.leaked)} of {len(matrix.attempts)} tricks reached the "
                      f"outside sink: {names}", evidence)
    if matrix.accepted:
        names = ", ".join(a.variant.name for a in matrix.accepted)
        return failed(f"{len(matrix.accepted)} of {len(matrix.attempts)} tricks were accepted "
                      f"(none reached the sink yet): {names}", evidence)
    errors = [a for a in matrix.attempts if a.error and a.rcpt_reply is None]
    if errors:
        raise CannotObserve(f"{len(errors)} relay attempts got no answer: {errors[0].error}")
    return passed(f"all {len(matrix.attempts)} tricks refused, nothing reached the sink",
                  evidence)


def relay_answers(lab: Lab) -> None:
    """CannotObserve unless the relay greets on port 25: a closed port beside it (465,
    587) then says something about the relay's configuration, not about a relay that is
    down."""
    try:
        with lab.smtp("internet", "relay"):
            pass
    except (SmtpError, OSError) as exc:
        raise CannotObserve(f"the relay does not answer on port 25 either: {exc}") from exc
