"""Section 05, RBLs: the relay refuses clients the lab DNSBL lists, and only those.

``internet`` has a second address that the lab DNSBL (rbldnsd, zone from the topology)
lists; the checks connect from it, and from ``internet``'s own unlisted address, so they
change nothing in the lab. Before judging, a check asks the DNSBL itself from the relay's
side: a DNSBL that does not answer, or no longer lists the address, makes the result
``error`` (nothing can be said about the relay), never a verdict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from labkit.checks.base import CannotObserve, Verdict, check, failed, passed
from labkit.checks.common import dnsbl_listing, fqdn, local_user, org, outside

if TYPE_CHECKING:
    from labkit.lab import Lab
    from labkit.probes.smtp import Reply

S = "05"
LESSON = "notebooks/05-rbl.ipynb"


def _dnsbl_answer(lab: Lab, address: str) -> str:
    """What the lab DNSBL says of ``address``, asked as the relay asks."""
    return dnsbl_listing(lab, "relay", address)


def _try_mail(lab: Lab, source: str | None) -> tuple[list[Reply], str]:
    """From internet (from ``source`` if given): EHLO, MAIL, RCPT to a lab user, no DATA."""
    with lab.smtp("internet", "relay", source=source) as s:
        replies = [s.greeting, s.ehlo(fqdn(lab, "internet")), s.mail(f"someone@{outside(lab)}"),
                   s.rcpt(f"{local_user(lab)}@{org(lab)}")]
        s.rset()
    return replies, str(s.transcript)


@check("rbl.listed_client_refused", "A client listed in the DNSBL is refused", S,
       hosts=("relay", "internet"),
       hint="Sendmail asks a DNSBL when sendmail.mc has FEATURE(`dnsbl', `zone', ...) (or "
            "enhdnsbl); the lab's DNSBL zone is in labkit/topology.yaml (dnsbl: ip_zone)",
       lesson=f"{LESSON}#dnsbl")
def listed_client_refused(lab: Lab) -> Verdict:
    listed = str(lab.topology.listed_client("internet").address)
    answer = _dnsbl_answer(lab, listed)
    if not answer:
        raise CannotObserve(f"the lab DNSBL does not list {listed} (it should, from "
                            "provisioning): nothing can be said of the relay")
    replies, transcript = _try_mail(lab, listed)
    evidence = f"DNSBL: {answer}\n{transcript}"
    refused = next((r for r in replies if r.code >= 500), None)
    if refused is not None:
        return passed(f"mail from listed {listed} refused: {refused}", evidence)
    if replies[-1].positive:
        return failed(f"mail from {listed}, listed in the DNSBL, accepted: {replies[-1]}", evidence)
    return failed(f"mail from listed {listed} only deferred: {replies[-1]}", evidence,
                  hint="a temporary refusal (4xx) makes the client try again and again.")


@check("rbl.unlisted_client_accepted", "A client the DNSBL does not list is accepted", S,
       hosts=("relay", "internet"), guard=True,
       hint="a DNSBL rule must refuse only what the list names: check the zone name and "
            "what the feature does when the DNSBL does not answer (the 't' argument of "
            "dnsbl/enhdnsbl turns a silent DNSBL into a temporary refusal of everyone)",
       lesson=f"{LESSON}#dnsbl")
def unlisted_client_accepted(lab: Lab) -> Verdict:
    own = str(lab.topology.host("internet").address)
    try:
        if _dnsbl_answer(lab, own):
            raise CannotObserve(f"the lab DNSBL lists {own} now (a demonstration left on?): "
                                "the relay is right to refuse it")
        note = f"DNSBL: {own} is not listed"
    except CannotObserve as exc:
        if "does not answer" not in str(exc):
            raise
        note = f"DNSBL: {exc} (the relay must accept unlisted clients all the same)"
    replies, transcript = _try_mail(lab, None)
    evidence = f"{note}\n{transcript}"
    if replies[-1].positive:
        return passed(f"mail from unlisted {own} accepted: {replies[-1]}", evidence)
    refusal = next(r for r in replies if not r.positive)
    return failed(f"mail from {own}, which the DNSBL does not list, refused: {refusal}", evidence)
