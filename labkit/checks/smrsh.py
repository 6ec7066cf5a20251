"""Section 02, smrsh and mailers: what mail sent to the relay may run or write there.

The lab's /etc/aliases on the relay has two probe addresses: ``labkit-prog`` pipes into
``/usr/bin/logger -t labkit-prog`` (a program no smrsh directory should offer) and
``labkit-file`` appends to ``/var/tmp/labkit-file``. A message with a token of its own
is sent to each from ``internet``, and the relay is watched: its journal (a
``labkit-prog`` line with the token means the program ran), the file (the token in it
means the message was written there), Sendmail's log line for the delivery and the
bounce at the outside sink. Any configuration that gives the behaviour passes: smrsh
with a clean program directory, a prog mailer disabled outright, SafeFileEnvironment.
Where behaviour cannot tell (which programs smrsh would run), the installed
sendmail.cf and smrsh's directory are read.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from labkit.checks.base import CannotObserve, Verdict, check, failed, passed
from labkit.checks.common import fqdn, outside

if TYPE_CHECKING:
    from labkit.lab import Lab

S = "02"
LESSON = "notebooks/02-smrsh.ipynb"
CF = "/etc/mail/sendmail.cf"
#: smrsh's program directory, compiled into Debian's smrsh.
SMRSH_DIR = "/etc/mail/smrsh"
PROG_ALIAS = "labkit-prog"
FILE_ALIAS = "labkit-file"
PROBE_FILE = "/var/tmp/labkit-file"
#: How long a probe message is followed (delivery, then its bounce).
WAIT = 25.0
#: After Sendmail logged the delivery: time for the journal to show what the program
#: logged, and for the bounce to reach the sink.
SETTLE = 2.0
BOUNCE_WAIT = 10.0


@dataclass
class AliasProbe:
    """What became of one message sent to a probe alias of the relay."""
    rcpt: str
    token: str
    transcript: str
    queue_id: str = ""
    ran: list[str] = field(default_factory=list)  # what shows the program ran / file written
    deliveries: list[str] = field(default_factory=list)  # Sendmail's "to=... stat=" lines
    bounce: str = ""

    @property
    def stat(self) -> str:
        m = re.search(r"stat=(.*)$", self.deliveries[-1]) if self.deliveries else None
        return m.group(1) if m else ""

    @property
    def dsn(self) -> str:
        m = re.search(r"dsn=(\d)\.", self.deliveries[-1]) if self.deliveries else None
        return m.group(1) if m else ""

    def evidence(self) -> str:
        parts = [self.transcript]
        if self.deliveries:
            parts.append("relay's log for this message:\n" + "\n".join(self.deliveries))
        if self.ran:
            parts.append("\n".join(self.ran))
        if self.bounce:
            parts.append("the bounce at the outside sink:\n" + self.bounce)
        return "\n\n".join(p for p in parts if p)


def _bounce_lines(text: str) -> str:
    keep = [ln.strip() for ln in text.splitlines()
            if re.search(r"smrsh|reason:|fatal errors|^\s*[45]\d\d[ -]|^Status:|Diagnostic-Code",
                         ln, re.I)]
    return "\n".join(dict.fromkeys(keep))[:1500]


def _bounce(lab: Lab, token: str) -> str:
    for m in lab.sink_messages():
        if token in m.data and (m.mail_from == "" or "delivery-status" in m.data):
            return _bounce_lines(m.data) or m.data[:1500]
    return ""


def _send_to_alias(lab: Lab, alias: str, ran: Callable[[str, list[str]], list[str]]) -> AliasProbe:
    """Send a message with a token of its own from internet to ``alias`` at the relay and
    follow it: ``ran(token, journal lines)`` says what shows the alias's target got it."""
    token = f"{alias}-{uuid.uuid4().hex[:12]}"
    rcpt = f"{alias}@{fqdn(lab, 'relay')}"
    sender = f"internet-user@{outside(lab)}"
    message = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: labkit check {token}\r\n"
               f"Message-ID: <{token}@{fqdn(lab, 'internet')}>\r\n\r\n{token}\r\n")
    mark = lab.log_mark("relay")
    with lab.smtp("internet", "relay") as s:
        s.ehlo(fqdn(lab, "internet"))
        for reply in (s.mail(sender), s.rcpt(rcpt)):
            if not reply.positive:
                raise CannotObserve(f"the relay refused the probe message to {rcpt}: {reply} "
                                    f"(the probe alias {alias} must stay in /etc/aliases)")
        reply = s.data(message)
    probe = AliasProbe(rcpt, token, str(s.transcript))
    if not reply.positive:
        raise CannotObserve(f"the relay refused the probe message to {rcpt} after DATA: {reply}")
    m = re.search(r"\b([0-9A-Za-z]{14})\b", reply.text)
    probe.queue_id = m.group(1) if m else ""
    deadline = time.monotonic() + WAIT
    settled = bounced_by = None
    while time.monotonic() < deadline:
        lines = lab.logs_since("relay", mark)
        if not probe.queue_id:  # the queue id from the log line naming our Message-ID
            m = re.search(rf"(\w{{14}}): from=.*msgid=<{token}@", "\n".join(lines))
            probe.queue_id = m.group(1) if m else ""
        if probe.queue_id:
            probe.deliveries = [ln for ln in lines
                                if f"{probe.queue_id}: to=" in ln and "stat=" in ln]
        probe.ran = ran(token, lines)
        if probe.ran:
            break
        now = time.monotonic()
        if probe.deliveries:
            settled = settled or now + SETTLE
            if probe.dsn == "5":
                bounced_by = bounced_by or now + BOUNCE_WAIT
                probe.bounce = probe.bounce or _bounce(lab, token)
                if probe.bounce and now > settled:
                    break
                if now > bounced_by:
                    break
            elif now > settled:
                break
        time.sleep(0.5)
    return probe


def _outcome(probe: AliasProbe, what: str) -> tuple[str, str]:
    """(summary, evidence) of a probe whose target did not get the message; CannotObserve
    when Sendmail logged no final delivery attempt."""
    evidence = probe.evidence()
    if not probe.deliveries:
        raise CannotObserve(f"the relay logged no delivery attempt of the message to "
                            f"{probe.rcpt} ({probe.queue_id or 'no queue id'}) within {WAIT:.0f} s")
    if probe.dsn == "4":
        raise CannotObserve(f"the delivery to {probe.rcpt} was deferred ({probe.stat}): "
                            f"{what} may still happen at the next queue run")
    if probe.dsn == "5":
        smrsh = next((ln for ln in probe.bounce.splitlines() if "smrsh" in ln), "")
        return (f"mail to {probe.rcpt} bounced: {smrsh or probe.stat}", evidence)
    return (f"Sendmail reported the message to {probe.rcpt} as {probe.stat or 'delivered'}, "
            f"but {what} did not happen", evidence)


def _program_ran(token: str, lines: list[str]) -> list[str]:
    return [ln for ln in lines if token in ln and re.search(rf" {PROG_ALIAS}(\[\d+\])?: ", ln)]


@check("smrsh.program_alias_blocked", "Mail to an alias cannot run an arbitrary program", S,
       hosts=("relay", "internet"),
       hint="with the prog mailer /bin/sh, any program named in /etc/aliases or a .forward "
            "runs for whoever sends mail to it: FEATURE(`smrsh') in sendmail.mc runs them "
            "through smrsh, which only offers what is in its directory",
       lesson=f"{LESSON}#smrsh")
def program_alias_blocked(lab: Lab) -> Verdict:
    probe = _send_to_alias(lab, PROG_ALIAS, _program_ran)
    if probe.ran:
        return failed(f"mail to {probe.rcpt} ran its program: the relay's journal has "
                      f"{len(probe.ran)} {PROG_ALIAS} lines with the message's token",
                      probe.evidence())
    summary, evidence = _outcome(probe, "the program")
    return passed(summary + f" (no {PROG_ALIAS} line with its token in the journal)", evidence)


@check("smrsh.file_delivery_blocked", "Mail to an alias cannot be written into a file", S,
       hosts=("relay", "internet"),
       hint="an alias or a .forward naming a file (/var/tmp/...) makes Sendmail append the "
            "message to it; SafeFileEnvironment (confSAFE_FILE_ENV in sendmail.mc) confines "
            "such writes to one directory, or refuses them",
       lesson=f"{LESSON}#files")
def file_delivery_blocked(lab: Lab) -> Verdict:
    def written(token: str, _lines: list[str]) -> list[str]:
        res = lab.run("relay", ["grep", "-nF", token, PROBE_FILE])
        return [f"relay$ grep -nF {token} {PROBE_FILE}", *res.stdout.splitlines()] \
            if res.stdout.strip() else []

    probe = _send_to_alias(lab, FILE_ALIAS, written)
    if probe.ran:
        return failed(f"mail to {probe.rcpt} was appended to {PROBE_FILE}", probe.evidence())
    summary, evidence = _outcome(probe, f"the write to {PROBE_FILE}")
    return passed(summary + f" ({PROBE_FILE} does not have its token)", evidence)


#: Programs smrsh must never offer: shells, procmail (it runs any program its recipes
#: name), interpreters, and programs that run other programs.
_FORBIDDEN = re.compile(
    r"^(sh|ash|bash|rbash|dash|zsh|ksh\d*|mksh|pdksh|csh|tcsh|fish|busybox|procmail|"
    r"perl[\d.]*|python[\d.]*|ruby[\d.]*|php[\d.]*|tclsh[\d.]*|wish[\d.]*|lua[\d.]*|luajit|"
    r"node(js)?|guile[\d.]*|awk|gawk|mawk|nawk|expect|env|nice|nohup|timeout|xargs|sudo|su)$")
_LIST = r"""
d=$1
if [ ! -d "$d" ]; then echo "(no directory $d)"; exit 0; fi
for f in "$d"/* "$d"/.[!.]*; do
    [ -e "$f" ] || [ -L "$f" ] || continue
    printf '%s\t%s\n' "${f##*/}" "$(readlink -f "$f")"
done
echo "--- /etc/shells"
grep '^/' /etc/shells 2>/dev/null | while read -r s; do readlink -f "$s"; done
"""


@check("smrsh.prog_mailer_restricted",
       "The prog mailer is smrsh, and smrsh offers no shell, procmail or interpreter", S,
       hint="the prog mailer (Mprog in sendmail.cf) comes from FEATURE(`smrsh') in "
            "sendmail.mc; smrsh runs what its directory /etc/mail/smrsh links to, so a "
            "shell, procmail or an interpreter there gives back everything smrsh took away",
       lesson=f"{LESSON}#smrsh-directory")
def prog_mailer_restricted(lab: Lab) -> Verdict:
    res = lab.run("relay", ["cat", CF])
    if not res.ok:
        raise CannotObserve(f"cannot read {CF} on the relay: {res.stderr.strip()[:200]}")
    m = re.search(r"^Mprog,\s*P=([^,\s]+).*$", res.stdout, re.M)
    if not m:
        return passed("sendmail.cf defines no prog mailer: no alias can run a program",
                      f"{CF}: no Mprog line")
    line, program = m.group(0), m.group(1)
    name = program.rsplit("/", 1)[-1]
    evidence = f"{CF}:\n{line}"
    if name in ("false", "true"):
        return passed(f"the prog mailer is disabled: P={program}", evidence)
    if name != "smrsh":
        return failed(f"the prog mailer is {program}: any command an alias or a .forward "
                      "names runs", evidence)
    out = lab.run("relay", ["sh", "-c", _LIST, "sh", SMRSH_DIR]).check().stdout
    listing, _, shells = out.partition("--- /etc/shells\n")
    entries = [ln.split("\t", 1) for ln in listing.splitlines() if "\t" in ln]
    shell_paths = set(shells.split())
    evidence += f"\n\nrelay$ ls {SMRSH_DIR}  (name -> program)\n" + (
        "\n".join(f"{n} -> {t}" for n, t in entries) or listing.strip() or "(empty)")
    bad = [f"{n} -> {t}" for n, t in entries
           if _FORBIDDEN.match(n) or _FORBIDDEN.match(t.rsplit("/", 1)[-1]) or t in shell_paths]
    if bad:
        return failed(f"smrsh runs P={program}, but its directory offers {', '.join(bad)}",
                      evidence)
    offered = ", ".join(n for n, _ in entries) or "nothing"
    return passed(f"the prog mailer is {program}; {SMRSH_DIR} offers {offered}", evidence)
