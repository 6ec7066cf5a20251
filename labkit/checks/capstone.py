"""Section 11, the capstone: the whole topology hardened, and nothing a user needs lost.

The capstone is graded by every check of the course plus these, which guard against
over-hardening: mail from outside still reaches EVERY user of the organisation, and the
role addresses every domain must keep (postmaster, RFC 5321; abuse, RFC 2142) still reach
a person. Each message is sent from ``internet`` to the organisation's MX (the relay) and
followed to a mailbox on the server. Mail from the LAN to the outside is section 04's
``relay.open_from_inside``, through the backup MX section 09's ``postfix.org_mail_delivered``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from labkit.checks.base import CannotObserve, Verdict, check, failed, passed
from labkit.checks.common import org

if TYPE_CHECKING:
    from labkit.lab import Lab
    from labkit.probes.mailflow import MessageFate

S = "11"
LESSON = "notebooks/11-capstone.ipynb"
#: Messages followed at once (the hardened relay takes 5 connections a second).
PARALLEL = 3


def _deliver_each(lab: Lab, names: list[str], what: str) -> Verdict:
    """Send one message from internet to each ``name@organisation`` and follow it: passed
    when every one reached a mailbox, failed naming those that did not."""
    domain = org(lab)

    def send(name: str) -> MessageFate:
        return lab.send("internet", f"{name}@{domain}", subject=f"labkit capstone: mail for {name}")

    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        fates = dict(zip(names, pool.map(send, names), strict=True))
    silent = [n for n, f in fates.items() if f.status == "refused" and f.reply is None]
    if len(silent) == len(names):
        raise CannotObserve(f"the relay did not answer internet: {fates[names[0]].where}")
    evidence = "\n\n".join(f"{n}@{domain}: {f}\n{f.transcript}" for n, f in fates.items())
    lost = {n: f for n, f in fates.items() if f.status != "delivered"}
    if lost:
        return failed(f"{len(lost)} of {len(names)} {what} not delivered: "
                      + "; ".join(f"{n}@{domain} {f.status}"
                                  + (f" ({f.reply})" if f.status == "refused" else "")
                                  for n, f in lost.items()), evidence)
    return passed(f"all {len(names)} {what} delivered: "
                  + ", ".join(f"{n} -> {f.where}" for n, f in fates.items()), evidence)


@check("capstone.every_user_reachable", "Mail from outside reaches every user of the organisation",
       S, hosts=("internet", "relay", "server"), guard=True,
       hint="a hardened relay must still take mail for every real user: check the access "
            "map's To: lines (one per user), the recipient check, and that the relay can "
            "still hand mail to the server (its TLS policy, the server's certificate)",
       lesson=f"{LESSON}#regressions")
def every_user_reachable(lab: Lab) -> Verdict:
    return _deliver_each(lab, list(lab.topology.mail["users"]), "messages, one per user,")


@check("capstone.role_addresses_reachable", "Mail from outside to postmaster and abuse reaches a person",
       S, hosts=("internet", "relay", "server"), guard=True,
       hint="postmaster (RFC 5321) and abuse (RFC 2142) must accept mail, also when the "
            "sender is a stranger and the domain's recipients are checked: keep their To: "
            "lines in the access map and their aliases on the server",
       lesson=f"{LESSON}#regressions")
def role_addresses_reachable(lab: Lab) -> Verdict:
    return _deliver_each(lab, ["postmaster", "abuse"], "messages to role addresses")
