"""Section 10, logging and forgery: what the relay records of a stranger, and what it
writes into the mail it passes on.

Section 10 has no configuration of its own (Debian's LogLevel 9 already logs every
refusal): its checks look in the relay's journal for the refusals the other sections
put in place, each found by a token of the probe's own and by the client's address, so
they fail on the baseline, where nothing is refused. The Received: header check is a
guard: the relay already names the real client address whatever the HELO claims, and
must keep doing so when a learner trims the header.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from labkit.checks.base import CannotObserve, Verdict, check, failed, passed
from labkit.checks.common import delivered, fqdn, header_fields, local_user, org, outside
from labkit.probes.mailflow import send_and_follow

if TYPE_CHECKING:
    from labkit.lab import Lab

S = "10"
LESSON = "notebooks/10-logging.ipynb"
HOSTS = ("relay", "internet")
#: How long a refusal may take to reach the journal.
LOG_WAIT = 6.0


def _client_address(lab: Lab) -> str:
    """The address the relay sees ``internet`` connect from."""
    return str(lab.topology.address_for("internet", "relay"))


def _logged(lab: Lab, mark: str, *needles: str) -> tuple[str | None, list[str]]:
    """The first relay journal line after ``mark`` that holds every one of ``needles``
    (waiting up to LOG_WAIT seconds for it), and the lines seen that mention the first."""
    deadline = time.monotonic() + LOG_WAIT
    while True:
        lines = lab.logs_since("relay", mark)
        related = [ln for ln in lines if needles[0] in ln]
        found = next((ln for ln in related if all(n in ln for n in needles)), None)
        if found or time.monotonic() > deadline:
            return found, related
        time.sleep(0.5)


def _evidence(transcript: str, needles: tuple[str, ...], related: list[str]) -> str:
    seen = "\n".join(related) or "(no line)"
    greps = " | ".join(f"grep -F '{n}'" for n in needles)
    return f"{transcript}\n\nrelay# journalctl --after-cursor=<mark> | {greps}\n{seen}"


@check("logs.refused_relay_logged", "A refused relay attempt is logged with the client's "
       "address", S, hosts=HOSTS,
       hint="Sendmail logs each refusal (ruleset=check_rcpt ... relay=NAME [ADDRESS], "
            "reject=...) to syslog's mail facility when LogLevel (confLOG_LEVEL) is high "
            "enough",
       lesson=f"{LESSON}#refusals")
def refused_relay_logged(lab: Lab) -> Verdict:
    victim = f"labkit-relay-{uuid.uuid4().hex[:12]}@{outside(lab)}"
    address = _client_address(lab)
    mark = lab.log_mark("relay")
    with lab.smtp("internet", "relay") as s:
        s.ehlo(fqdn(lab, "internet"))
        s.mail(f"someone@{outside(lab)}")
        reply = s.rcpt(victim)
        s.rset()
    transcript = str(s.transcript)
    if reply.positive:
        return failed(f"the relay accepted the relay attempt (RCPT {victim} -> {reply}): "
                      "there is no refusal to log", transcript,
                      hint="close the relay to strangers first (section 04).")
    needles = (victim, f"[{address}]")
    line, related = _logged(lab, mark, *needles)
    evidence = _evidence(transcript, needles, related)
    if line is None:
        if related:
            return failed(f"the refusal ({reply}) is logged without the client's address "
                          f"{address}", evidence)
        return failed(f"the refusal ({reply}) is not in the relay's log", evidence)
    return passed(f"refused ({reply.code} {reply.enhanced or ''}) and logged with [{address}]",
                  evidence)


@check("logs.expn_probe_logged", "A refused EXPN probe is logged with the prober's address", S,
       hosts=HOSTS,
       hint="a stranger probing for addresses should leave a trace: Sendmail logs an "
            "EXPN or VRFY it refuses ('EXPN name [rejected]', with the client's name and "
            "address) once the privacy flags refuse it and LogLevel is high enough",
       lesson=f"{LESSON}#probes")
def expn_probe_logged(lab: Lab) -> Verdict:
    name = f"labkit-expn-{uuid.uuid4().hex[:12]}"
    address = _client_address(lab)
    mark = lab.log_mark("relay")
    with lab.smtp("internet", "relay") as s:
        s.ehlo(fqdn(lab, "internet"))
        reply = s.expn(name)
    transcript = str(s.transcript)
    # Looking the name up (250 expanded, 550 5.1.1 unknown) is answering the probe.
    if reply.code in (250, 251) or (reply.enhanced or "").startswith("5.1."):
        return failed(f"EXPN {name} was answered ({reply}): there is no refusal to log",
                      transcript, hint="refuse EXPN to strangers first (section 08).")
    needles = (f"EXPN {name}", f"[{address}]")
    line, related = _logged(lab, mark, *needles)
    evidence = _evidence(transcript, needles, related)
    if line is None:
        if related:
            return failed(f"the refused EXPN ({reply}) is logged without the client's address "
                          f"{address}", evidence)
        return failed(f"the refused EXPN ({reply}) is not in the relay's log", evidence)
    return passed(f"EXPN refused ({reply.code} {reply.enhanced or ''}) and logged with "
                  f"[{address}]", evidence)


def _lying_helo(lab: Lab) -> str:
    """The name a forger gives in HELO: a host of the organisation's own, so the message
    would look as if it came from inside."""
    return f"mx.{org(lab)}"


@check("logs.received_names_client", "The relay's Received: header names the real client "
       "address even when the HELO name lies", S, hosts=("internet", "relay", "server"),
       hint="the 'from' clause of the Received: header Sendmail adds is _REC_HDR_ in "
            "confRECEIVED_HEADER: besides the HELO name ($s) it must keep the client's "
            "real name and address ($_)", lesson=f"{LESSON}#received", guard=True)
def received_names_client(lab: Lab) -> Verdict:
    liar = _lying_helo(lab)
    fate = delivered(send_and_follow(
        lab.engine, lambda: lab.smtp("internet", "relay"),
        lambda: [(m.mail_from, m.data) for m in lab.sink_messages()],
        f"someone@{outside(lab)}", f"{local_user(lab)}@{org(lab)}",
        "labkit check: Received header with a lying HELO", helo=liar), "Received: header")
    relay = fqdn(lab, "relay")
    ours = [r for r in header_fields(fate.message, "Received") if f"by {relay}" in r]
    if not ours:
        raise CannotObserve(f"no Received: header 'by {relay}' in the delivered message")
    address = _client_address(lab)
    evidence = f"HELO {liar} from internet ({address})\n" + "\n".join(
        f"Received: {r}" for r in ours)
    if any(f"[{address}]" in r for r in ours):
        return passed(f"the relay's Received: header names [{address}] beside the HELO name "
                      f"{liar}", evidence)
    return failed(f"the relay's Received: header does not name the client's address {address}"
                  f" (HELO said {liar})", evidence)
