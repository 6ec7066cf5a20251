"""Section 08, privacy: what the relay tells a stranger, and an unprivileged local user.

Probed from ``internet`` (a stranger) against the relay's Sendmail, and on the relay as
an unprivileged local user. Any configuration that gives the behaviour passes: ``goaway``
as well as ``novrfy,noexpn``; a greeting of the learner's own wording.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import TYPE_CHECKING

from labkit.checks.base import CannotObserve, Verdict, check, failed, passed
from labkit.checks.common import delivered, fqdn, header_fields, local_user, org, product_words

if TYPE_CHECKING:
    from labkit.lab import Lab

S = "08"
LESSON = "notebooks/08-privacy.ipynb"


def _stranger_session(lab: Lab, *commands: str) -> tuple[str, list, str]:
    """Greeting, replies to EHLO and each command, and the transcript, from internet."""
    with lab.smtp("internet", "relay") as s:
        s.ehlo(fqdn(lab, "internet"))
        replies = [s.command(c) for c in commands]
    return s.greeting, replies, str(s.transcript)


@check("privacy.greeting_anonymous", "The greeting names no MTA product or version", S,
       hint="the 220 greeting comes from confSMTP_LOGIN_MSG in sendmail.mc; keep $j and "
            "$b, drop $v and $Z and the product name", lesson=f"{LESSON}#greeting")
def greeting_anonymous(lab: Lab) -> Verdict:
    with lab.smtp("internet", "relay") as s:
        greeting = s.greeting
    leaks = product_words(greeting.text)
    if leaks:
        return failed(f"the greeting gives away {', '.join(leaks)}: {greeting}", str(s.transcript))
    return passed(f"the greeting names no product or version: {greeting}", str(s.transcript))


@check("privacy.help_anonymous", "HELP names no MTA product or version", S,
       hint="HELP answers from the help file named by confHELP_FILE (O HelpFile in "
            "sendmail.cf); its 'smtp' lines print $v. Without any help file Sendmail "
            "answers 'Sendmail <version> -- HELP not implemented'", lesson=f"{LESSON}#help")
def help_anonymous(lab: Lab) -> Verdict:
    _, (reply,), transcript = _stranger_session(lab, "HELP")
    leaks = product_words("\n".join(reply.lines))
    if leaks:
        line = next(ln for ln in reply.lines if product_words(ln))
        return failed(f"HELP gives away {', '.join(leaks)}: {line}", transcript)
    return passed(f"HELP ({reply.code}) names no product or version", transcript)


@check("privacy.received_anonymous", "The Received: header the relay adds names no version", S,
       hint="Sendmail writes its version into the 'by' clause of every Received: header "
            "(confRECEIVED_HEADER, its part _REC_BY_: '($v/$Z)')",
       lesson=f"{LESSON}#received")
def received_anonymous(lab: Lab) -> Verdict:
    fate = delivered(lab.send("internet", f"{local_user(lab)}@{org(lab)}",
                              subject="labkit check: Received header"), "Received: header")
    relay = fqdn(lab, "relay")
    ours = [r for r in header_fields(fate.message, "Received") if f"by {relay}" in r]
    if not ours:
        raise CannotObserve(f"no Received: header 'by {relay}' in the delivered message")
    leaks = product_words("\n".join(ours))
    evidence = "\n".join(f"Received: {r}" for r in ours)
    if leaks:
        return failed(f"the relay's Received: header gives away {', '.join(leaks)}", evidence)
    return passed("the relay's Received: header names no product or version", evidence)


def _refused(reply, allowed_codes: tuple[int, ...] = ()) -> bool:
    return not (200 <= reply.code < 300) or reply.code in allowed_codes


@check("privacy.vrfy_disabled", "VRFY does not confirm users to a stranger", S,
       hint="VRFY is answered unless confPRIVACY_FLAGS has novrfy (or goaway)",
       lesson=f"{LESSON}#vrfy")
def vrfy_disabled(lab: Lab) -> Verdict:
    user = local_user(lab)
    _, replies, transcript = _stranger_session(lab, "VRFY root", f"VRFY {user}")
    confirmed = [r for r in replies if r.code in (250, 251)]
    if confirmed:
        return failed(f"VRFY confirms users: {confirmed[0]}", transcript)
    return passed(f"VRFY confirms no user: {replies[0]}", transcript)


@check("privacy.expn_disabled", "EXPN does not expand aliases for a stranger", S,
       hint="EXPN is answered unless confPRIVACY_FLAGS has noexpn (or goaway)",
       lesson=f"{LESSON}#expn")
def expn_disabled(lab: Lab) -> Verdict:
    _, replies, transcript = _stranger_session(lab, "EXPN root", "EXPN postmaster")
    expanded = [r for r in replies if r.code in (250, 251)]
    if expanded:
        return failed(f"EXPN expands aliases: {expanded[0]}", transcript)
    return passed(f"EXPN expands nothing: {replies[0]}", transcript)


@check("privacy.etrn_disabled", "ETRN does not start queue runs for a stranger", S,
       hint="ETRN is answered unless confPRIVACY_FLAGS has noetrn",
       lesson=f"{LESSON}#etrn")
def etrn_disabled(lab: Lab) -> Verdict:
    _, (reply,), transcript = _stranger_session(lab, f"ETRN {org(lab)}")
    if not _refused(reply):
        return failed(f"ETRN starts a queue run: {reply}", transcript)
    return passed(f"ETRN refused: {reply}", transcript)


@check("privacy.verb_disabled", "VERB does not show a stranger the delivery dialogue", S,
       hint="VERB is answered unless confPRIVACY_FLAGS has noverb (or goaway)",
       lesson=f"{LESSON}#verb")
def verb_disabled(lab: Lab) -> Verdict:
    _, (reply,), transcript = _stranger_session(lab, "VERB")
    if not _refused(reply):
        return failed(f"VERB accepted: {reply}", transcript)
    return passed(f"VERB refused: {reply}", transcript)


@check("privacy.dsn_not_offered", "DSN is not offered to strangers", S,
       hint="EHLO lists DSN unless confPRIVACY_FLAGS has noreceipts (goaway does not include it)",
       lesson=f"{LESSON}#dsn")
def dsn_not_offered(lab: Lab) -> Verdict:
    with lab.smtp("internet", "relay") as s:
        s.ehlo(fqdn(lab, "internet"))
    keywords = " ".join(s.capabilities)
    if "DSN" in s.capabilities:
        return failed(f"EHLO offers DSN: {keywords}", str(s.transcript))
    return passed(f"EHLO offers: {keywords}", str(s.transcript))


def _as_local_user(lab: Lab, command: str) -> tuple[str, str]:
    user = local_user(lab)
    res = lab.run("relay", ["su", "-s", "/bin/sh", user, "-c", command])
    if res.returncode == 124 or "does not exist" in res.stderr:
        raise CannotObserve(f"could not run '{command}' as {user} on the relay: "
                            f"{res.stderr.strip()[-200:]}")
    out = (res.stdout + res.stderr).strip()
    return out, f"{user}@relay$ {command}\n{out}\n(exit {res.returncode})"


@check("privacy.mailq_restricted", "An unprivileged user cannot list the MTA queue", S,
       hint="mailq shows anyone the queue unless confPRIVACY_FLAGS has restrictmailq",
       lesson=f"{LESSON}#queue")
def mailq_restricted(lab: Lab) -> Verdict:
    out, evidence = _as_local_user(lab, "mailq")
    mta = out.split("MTA Queue status...", 1)[-1]
    # Refused: restrictmailq's answer, or a queue directory the user cannot enter. A
    # "Permission denied" on one queue file (a message being written) is no refusal.
    if "not permitted to see the queue" in mta or re.search(r"can ?not chdir\(.*Permission denied", mta):
        return passed(f"{local_user(lab)} may not list the MTA queue", evidence)
    if "Total requests" in mta or "is empty" in mta:
        return failed(f"{local_user(lab)} can list the MTA queue", evidence)
    raise CannotObserve(f"mailq said something unexpected: {mta.strip()[:200]}")


@check("privacy.queue_run_restricted", "An unprivileged user cannot start a queue run", S,
       hint="sendmail -q runs the queue for anyone unless confPRIVACY_FLAGS has restrictqrun",
       lesson=f"{LESSON}#queue")
def queue_run_restricted(lab: Lab) -> Verdict:
    out, evidence = _as_local_user(lab, "/usr/sbin/sendmail -q; echo rc=$?")
    if "rc=0" in out and "permission" not in out.lower():
        return failed(f"{local_user(lab)} may run the queue (sendmail -q exits 0)", evidence)
    return passed(f"{local_user(lab)} may not run the queue", evidence)


@check("privacy.expand_restricted", "An unprivileged user cannot expand aliases with -bv", S,
       hint="sendmail -bv tells anyone where an address goes unless confPRIVACY_FLAGS has "
            "restrictexpand", lesson=f"{LESSON}#queue")
def expand_restricted(lab: Lab) -> Verdict:
    out, evidence = _as_local_user(lab, "/usr/sbin/sendmail -bv postmaster")
    if "deliverable" in out:
        return failed(f"{local_user(lab)} sees where postmaster's mail goes", evidence)
    return passed(f"{local_user(lab)} cannot expand postmaster", evidence)


@check("privacy.authwarnings", "A forged local sender is marked with X-Authentication-Warning",
       S, hint="a local user's 'sendmail -f other@address' is only marked when the "
               "PrivacyOptions of the submission program (submit.mc, which builds "
               "submit.cf) have authwarnings (or goaway)", lesson=f"{LESSON}#authwarnings")
def authwarnings(lab: Lab) -> Verdict:
    user = local_user(lab)
    token = f"labkit-authwarn-{uuid.uuid4().hex[:12]}"
    forged = f"ceo@{org(lab)}"
    command = (f"printf 'Subject: {token}\\nMessage-ID: <{token}@relay>\\n\\nforged\\n' | "
               f"/usr/sbin/sendmail -oi -f {forged} {user}")
    out, evidence = _as_local_user(lab, command)
    deadline = time.monotonic() + 20
    while token not in (mbox := lab.mailbox(user, "relay")):
        if time.monotonic() > deadline:
            raise CannotObserve(f"the forged message from {user} was not delivered to its "
                                f"mailbox on the relay within 20 s ({out[:200] or 'no output'})")
        time.sleep(0.5)
    message = next(m for m in mbox.split("\nFrom ") if token in m)
    warnings = header_fields(message, "X-Authentication-Warning")
    evidence += "\n" + message.split("\n\n", 1)[0]
    if any(f"{user} set sender to {forged}" in w for w in warnings):
        return passed(f"marked: X-Authentication-Warning: {warnings[0]}", evidence)
    return failed(f"a message {user} sent as {forged} carries no X-Authentication-Warning",
                  evidence)
