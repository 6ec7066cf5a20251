"""Send a message from a vantage host and follow it to where it ends up.

:func:`send_and_follow` sends one message with a unique Message-ID, then looks for that
Message-ID in the places a message can end: a mailbox on the lab's MTA hosts, the
outside sink, a bounce (a delivery status notification quoting it), or an MTA queue.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from labkit.engines.base import Engine
from labkit.probes.host import mail_queue
from labkit.probes.smtp import Reply, SmtpError, SmtpSession

#: Hosts whose mailboxes and queues are searched (the topology's MTAs).
MTA_HOSTS = ("server", "relay", "mx2")
_DSN = re.compile(r"report-type=\"?delivery-status|^Subject: (Returned mail|Undelivered Mail)",
                  re.I | re.M)


@dataclass
class MessageFate:
    """Where a message went. ``status`` is one of: refused, delivered, at-sink, bounced,
    queued, unknown (not found anywhere before the wait ran out)."""

    message_id: str
    status: str
    where: str = ""
    reply: Reply | None = None
    bounce: str = ""
    transcript: str = ""
    message: str = ""  # the message as delivered (headers the MTAs added included)

    def __str__(self) -> str:
        text = f"{self.message_id}: {self.status}"
        if self.where:
            text += f" ({self.where})"
        if self.status == "refused" and self.reply:
            text += f": {self.reply}"
        if self.bounce:
            text += "\n  " + "\n  ".join(self.bounce.splitlines()[:12])
        return text


def _bounce_excerpt(text: str) -> str:
    """The human-readable part of a bounce: the lines that say what went wrong, and the
    transcript the MTA quotes (where, say, smrsh gives its reason)."""
    keep, in_transcript = [], False
    for ln in text.splitlines():
        if "Transcript of session follows" in ln:
            in_transcript = True
            continue
        if in_transcript and (not ln.strip() or ln.startswith("--")):
            in_transcript = False
        if in_transcript or (
                re.search(r"\b[45]\d\d\b|[45]\.\d{1,3}\.\d{1,3}|unknown|denied|refused|"
                          r"fatal|undeliverable|reason:", ln, re.I)
                and not ln.startswith(("Received:", "Message-I", "X-", "Date:"))):
            keep.append(ln.strip())
    return "\n".join(dict.fromkeys(keep))[:1500]


def _find_in_mailboxes(engine: Engine, msgid: str) -> list[tuple[str, str, str]]:
    """(host, mailbox path, mailbox text) of every mbox that mentions ``msgid``."""
    found = []
    for host in MTA_HOSTS:
        if host not in engine.topology.hosts:
            continue
        res = engine.run(host, ["grep", "-lF", msgid, "-r", "/var/mail"])
        for path in res.stdout.split():
            found.append((host, path, engine.read_file(host, path)))
    return found


def _message_in(mbox: str, msgid: str) -> str:
    """The message of an mbox that contains ``msgid``."""
    for part in re.split(r"\n(?=From \S+ )", mbox):
        if msgid in part:
            return part
    return ""


def _find_in_queues(engine: Engine, msgid: str) -> tuple[str, str] | None:
    """(host, reason) of an MTA queue holding the message, if one does."""
    for host in MTA_HOSTS:
        if host not in engine.topology.hosts:
            continue
        res = engine.run(host, ["sh", "-c", 'grep -alrF "$1" /var/spool/mqueue '
                                "/var/spool/postfix/deferred /var/spool/postfix/active "
                                "/var/spool/postfix/incoming /var/spool/postfix/hold 2>/dev/null",
                                "sh", msgid])
        for path in res.stdout.split():
            qid = path.rsplit("/", 1)[-1]
            qid = qid[2:] if qid[:2] in ("qf", "df") else qid
            for entry in mail_queue(engine, host):
                if entry.queue_id == qid:
                    return host, entry.reason or "in the queue"
            return host, "in the queue"
    return None


def send_and_follow(engine: Engine, open_session: Callable[[], SmtpSession],
                    sink: Callable[[], list[tuple[str, str]]], mail_from: str,
                    rcpt_to: str, subject: str = "labkit test", body: str = "Hello.\n",
                    helo: str = "probe.example.net", wait: float = 20.0) -> MessageFate:
    """Send a message and wait up to ``wait`` seconds to see where it ends up.

    ``sink()`` returns (envelope sender, text) of every message the outside world has
    received. A message still queued when the wait runs out is reported as queued.
    """
    msgid = f"<labkit-{uuid.uuid4().hex[:16]}@{helo}>"
    message = (f"From: <{mail_from}>\r\nTo: <{rcpt_to}>\r\nSubject: {subject}\r\n"
               f"Message-ID: {msgid}\r\n\r\n{body}")
    try:
        with open_session() as s:
            s.ehlo(helo)
            for reply in (s.mail(mail_from), s.rcpt(rcpt_to)):
                if not reply.positive:
                    return MessageFate(msgid, "refused", reply=reply, transcript=str(s.transcript))
            reply = s.data(message)
            transcript = str(s.transcript)
    except (SmtpError, OSError) as exc:
        return MessageFate(msgid, "refused", where=f"{type(exc).__name__}: {exc}")
    if not reply.positive:
        return MessageFate(msgid, "refused", reply=reply, transcript=transcript)

    deadline = time.monotonic() + wait
    while True:
        for sender, text in sink():
            if msgid in text:
                if sender == "" or _DSN.search(text):
                    return MessageFate(msgid, "bounced", "a bounce at the outside sink", reply,
                                       _bounce_excerpt(text), transcript)
                return MessageFate(msgid, "at-sink", "the outside sink", reply,
                                   transcript=transcript, message=text)
        for host, path, mbox in _find_in_mailboxes(engine, msgid):
            part = _message_in(mbox, msgid)
            where = f"{host}:{path}"
            if _DSN.search(part):
                return MessageFate(msgid, "bounced", f"a bounce in {where}", reply,
                                   _bounce_excerpt(part), transcript)
            return MessageFate(msgid, "delivered", where, reply, transcript=transcript,
                               message=part)
        if time.monotonic() > deadline:
            queued = _find_in_queues(engine, msgid)
            if queued:
                return MessageFate(msgid, "queued", f"queue on {queued[0]}: {queued[1]}", reply,
                                   transcript=transcript)
            return MessageFate(msgid, "unknown", reply=reply, transcript=transcript)
        time.sleep(0.5)
