"""Section 04, relay control: closed to strangers, open to the LAN, and only for real
recipients.

The relay matrix tries every classic envelope trick from ``internet``; a trick counts as
a leak only when its message reaches the outside sink. Guard checks (mail from the LAN
still leaves, postmaster and abuse still reachable) fail a relay closed to everyone.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from labkit.checks.base import CannotObserve, Verdict, check, failed, passed
from labkit.checks.common import fqdn, org, outside, relay_matrix_verdict

if TYPE_CHECKING:
    from labkit.lab import Lab

S = "04"
LESSON = "notebooks/04-relay.ipynb"


@check("relay.closed_from_outside", "No relay trick works from outside", S, hosts=("relay", "internet"),
       hint="who may relay is decided by the access map (/etc/mail/access, 'Connect:' "
            "lines with RELAY), and by relay-domains, which names the domains the relay takes "
            "mail for and also lets clients whose names are in them relay: only the LAN "
            "should be allowed",
       lesson=f"{LESSON}#matrix")
def closed_from_outside(lab: Lab) -> Verdict:
    return relay_matrix_verdict(lab.relay_matrix("internet", "relay", wait=8.0))


@check("relay.open_from_inside", "Mail from the LAN to the outside is still relayed", S,
       hint="a relay closed to everyone fails its users: the LAN (the inside network) must "
            "keep a RELAY line in the access map", lesson=f"{LESSON}#inside", guard=True)
def open_from_inside(lab: Lab) -> Verdict:
    fate = lab.send("client", f"someone@{outside(lab)}", target="relay",
                    subject="labkit check: relaying from the LAN")
    evidence = f"{fate}\n{fate.transcript}"
    if fate.status == "refused" and fate.reply is None:  # no SMTP answer at all
        raise CannotObserve(f"could not send from client through the relay: {fate.where}")
    if fate.status == "at-sink":
        return passed("a message from client through the relay reached the outside", evidence)
    if fate.status in ("refused", "bounced"):
        return failed(f"the relay does not relay for the LAN: {fate.reply or fate.bounce}",
                      evidence)
    raise CannotObserve(f"the message from client was neither refused nor delivered: {fate}")


@check("relay.unknown_recipient_refused", "Unknown users of the domain are refused at RCPT", S,
       hint="without recipient validation the relay accepts any user@domain and bounces it "
            "later (backscatter): list the known users for the domain (access map 'To:' "
            "entries, or a virtusertable with a catch-all error)", lesson=f"{LESSON}#recipients")
def unknown_recipient_refused(lab: Lab) -> Verdict:
    nobody = f"nosuch-{uuid.uuid4().hex[:8]}@{org(lab)}"
    with lab.smtp("internet", "relay") as s:
        s.ehlo(fqdn(lab, "internet"))
        s.mail(f"someone@{outside(lab)}")
        reply = s.rcpt(nobody)
        s.rset()
    if reply.code >= 500 and (reply.enhanced or "").startswith("5.1."):
        return passed(f"RCPT {nobody} -> {reply}", str(s.transcript))
    if reply.positive:
        return failed(f"RCPT of an unknown user accepted: {reply}", str(s.transcript))
    return failed(f"refused, but not as an unknown user (5.1.x): {reply}", str(s.transcript),
                  hint="the refusal should say the user is unknown (550 5.1.1), not that the "
                       "relay refuses the domain.")


@check("relay.known_recipients_accepted", "Known users, postmaster and abuse are accepted", S,
       hint="recipient validation must still accept every real user and the role addresses "
            "RFC 5321 and RFC 2142 require (postmaster, abuse)", lesson=f"{LESSON}#recipients",
       guard=True)
def known_recipients_accepted(lab: Lab) -> Verdict:
    wanted = [*lab.topology.mail["users"][:1], "postmaster", "abuse"]
    with lab.smtp("internet", "relay") as s:
        s.ehlo(fqdn(lab, "internet"))
        s.mail(f"someone@{outside(lab)}")
        replies = {w: s.rcpt(f"{w}@{org(lab)}") for w in wanted}
        s.rset()
    refused = {w: r for w, r in replies.items() if not r.positive}
    if refused:
        return failed("refused: " + "; ".join(f"{w}@{org(lab)} -> {r}"
                                             for w, r in refused.items()), str(s.transcript))
    return passed("accepted: " + ", ".join(f"{w}@{org(lab)}" for w in wanted), str(s.transcript))


@check("relay.no_uucp", "UUCP bang paths are refused, even from the LAN", S,
       hint="a bang path (host!user) is one more way to smuggle a relay: Sendmail's UUCP "
            "address handling can be switched off (see the nouucp feature in cf/README)",
       lesson=f"{LESSON}#uucp")
def no_uucp(lab: Lab) -> Verdict:
    bang = f"{outside(lab)}!victim"
    with lab.smtp("client", "relay") as s:
        s.ehlo(fqdn(lab, "client"))
        s.mail(f"jo@{org(lab)}")
        reply = s.rcpt(bang)
        s.rset()
    if reply.positive:
        return failed(f"RCPT {bang} from the LAN accepted: {reply}", str(s.transcript))
    return passed(f"RCPT {bang} refused: {reply}", str(s.transcript))
