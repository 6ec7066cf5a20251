"""Section 10, an external program in the mail path: the lab's mail filter (a milter) on the
relay, in Sendmail's mail path and running as a user of its own.

The filter (unit labkit-milter on the relay, vagrant/provision/files/relay/labkit-milter.py)
adds an X-Labkit-Filter header to every message it passes and refuses a message with an
executable attachment. Whether Sendmail hands it the mail is seen in what a message from
outside becomes; which user it runs as is read on the relay, from the process of its unit:
no SMTP client can see that.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from labkit.checks.base import CannotObserve, Verdict, check, failed, passed
from labkit.checks.common import fqdn, header_fields, local_user, org, outside

if TYPE_CHECKING:
    from labkit.lab import Lab

S = "10"
LESSON = "notebooks/10-logging.ipynb"
HEADER = "X-Labkit-Filter"
UNIT = "labkit-milter"
#: A tiny Windows program's first bytes ("MZ"), base64: what the filter must keep out.
EXE_BASE64 = "TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


def _with_attachment(lab: Lab, sender: str, rcpt: str, name: str) -> str:
    boundary = f"labkit-{uuid.uuid4().hex[:12]}"
    return (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: your invoice\r\n"
            f"Message-ID: <labkit-{uuid.uuid4().hex[:16]}@{fqdn(lab, 'internet')}>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n"
            f"\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\nPlease find the invoice "
            f"attached.\r\n--{boundary}\r\nContent-Type: application/octet-stream; "
            f"name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n{EXE_BASE64}\r\n--{boundary}--\r\n")


@check("milter.in_mail_path", "Mail from outside passes the lab's filter: a header added, an "
       "executable attachment refused", S, hosts=("internet", "relay", "server"),
       hint="Sendmail hands each message to the milters named by INPUT_MAIL_FILTER(`name', "
            "`S=...') in sendmail.mc; the lab's filter (unit labkit-milter on the relay) "
            "listens on inet:8894@127.0.0.1. F=T makes mail wait when the filter does not "
            "answer, rather than pass unfiltered", lesson=f"{LESSON}#milter")
def in_mail_path(lab: Lab) -> Verdict:
    rcpt = f"{local_user(lab)}@{org(lab)}"
    fate = lab.send("internet", rcpt, subject="labkit check: through the filter")
    if fate.status == "refused" and fate.reply is None:
        raise CannotObserve(f"could not send from internet to the relay: {fate.where}")
    if fate.status == "refused" and fate.reply.code // 100 == 4:
        return failed(f"the relay turns mail away for now: {fate.reply} (a filter it is "
                      "told to wait for does not answer?)", fate.transcript)
    if fate.status != "delivered":
        raise CannotObserve(f"the probe message for {rcpt} was not delivered: {fate}")
    stamps = header_fields(fate.message, HEADER)
    sender = f"someone@{outside(lab)}"
    with lab.smtp("internet", "relay") as s:
        s.ehlo(fqdn(lab, "internet"))
        replies = [s.mail(sender), s.rcpt(rcpt)]
        if all(r.positive for r in replies):
            replies.append(s.data(_with_attachment(lab, sender, rcpt, "invoice.exe")))
    evidence = (f"an ordinary message: {fate}\n"
                + "\n".join([f"{HEADER}: {v}" for v in stamps] or [f"(no {HEADER} header)"])
                + f"\n---\nan .exe attachment:\n{s.transcript}")
    if not all(r.positive for r in replies[:2]):
        raise CannotObserve(f"the relay refused the probe before DATA: {replies[-1]}")
    exe = replies[-1]
    if not stamps and exe.positive:
        return failed(f"the message reached {rcpt} without the filter's {HEADER} header, and "
                      f"an .exe attachment was accepted ({exe}): the filter is not in the "
                      "mail path", evidence)
    if not stamps:
        return failed(f"an .exe attachment is refused ({exe}), but delivered mail has no "
                      f"{HEADER} header: not the lab's filter", evidence)
    if exe.positive:
        return failed(f"the filter stamped the message ({HEADER}: {stamps[0]}), but an .exe "
                      f"attachment was accepted: {exe}", evidence)
    return passed(f"delivered with {HEADER}: {stamps[0]}; an .exe attachment refused: {exe}",
                  evidence)


@check("milter.unprivileged", "The lab's filter runs as an unprivileged user", S,
       hosts=("relay",),
       hint="a filter parses whatever strangers send; a bug in it should not run as root: "
            "give its unit a user of its own (a systemd drop-in with User=, or "
            "DynamicUser=yes), as Sendmail itself drops to RunAsUser",
       lesson=f"{LESSON}#unprivileged")
def unprivileged(lab: Lab) -> Verdict:
    show = lab.run("relay", ["systemctl", "show", "-p", "MainPID", "-p", "ActiveState", UNIT])
    props = dict(ln.split("=", 1) for ln in show.stdout.splitlines() if "=" in ln)
    pid = props.get("MainPID", "0")
    if not show.ok or pid in ("", "0"):
        raise CannotObserve(f"the unit {UNIT} has no running process on the relay "
                            f"({props.get('ActiveState', show.stderr.strip() or 'unknown')})")
    ps = lab.run("relay", ["ps", "-o", "user:32=,uid=,args=", "-p", pid])
    fields = ps.stdout.split(None, 2)
    if not ps.ok or len(fields) < 2:
        raise CannotObserve(f"cannot read process {pid} of {UNIT}: {ps.stderr.strip()}")
    user, uid = fields[0], fields[1]
    evidence = f"relay# systemctl show -p MainPID {UNIT}\nMainPID={pid}\n" \
               f"relay# ps -o user,uid,args -p {pid}\n{ps.stdout.strip()}"
    if uid == "0":
        return failed(f"the lab's filter runs as root (pid {pid}): a flaw in it would have "
                      "every right on the relay", evidence)
    return passed(f"the lab's filter runs as {user} (uid {uid}), pid {pid}", evidence)
