"""Section 01, privileges: who the relay's Sendmail serves strangers as, and who may
touch its queue and its configuration.

The session user is observed (an SMTP session is held open from ``internet`` and the
process serving it is looked up on the relay); the queue and the configuration files are
what ``stat`` shows on the relay for the paths the installed sendmail.cf names, so a
queue or a map moved elsewhere is judged where it really is. Postfix's part of the
section has nothing to check: it refuses to run smtpd as root and keeps its own queue
private.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import TYPE_CHECKING

from labkit.checks.base import CannotObserve, Verdict, check, failed, passed
from labkit.checks.common import local_user, org

if TYPE_CHECKING:
    from labkit.lab import Lab

S = "01"
LESSON = "notebooks/01-privileges.ipynb"
CF = "/etc/mail/sendmail.cf"
#: Always inspected, whatever sendmail.cf names: the configuration directory (with its
#: maps, sendmail.cf, submit.cf, smrsh's program directory) and the aliases.
CONFIG_ROOTS = ("/etc/mail", "/etc/aliases")


def _cf(lab: Lab) -> str:
    res = lab.run("relay", ["cat", CF])
    if not res.ok:
        raise CannotObserve(f"cannot read {CF} on the relay: {res.stderr.strip()[:200]}")
    return res.stdout


def _options(cf: str, name: str) -> list[str]:
    return re.findall(rf"^O {name}=(.*)$", cf, re.M)


@check("privileges.session_not_root", "SMTP sessions are not served as root", S,
       hosts=("relay", "internet"),
       hint="the daemon must start as root to bind port 25, but the child that talks to a "
            "client can give root up: RunAsUser (confRUN_AS_USER in sendmail.mc); the "
            "queue, the SASL database and the TLS key must then belong to that user",
       lesson=f"{LESSON}#runasuser")
def session_not_root(lab: Lab) -> Verdict:
    users = lab.session_users("relay", vantage="internet")
    evidence = (f"an SMTP session held open from internet to relay:25\n"
                f"listener (port 25) runs as: {', '.join(users.listener) or '?'}\n"
                f"the session's process runs as: {', '.join(users.session) or '?'}\n"
                + "\n".join(f"  {c}" for c in users.commands))
    if not users.session:
        raise CannotObserve("no process on the relay holds the probe's SMTP session")
    if "root" in users.session:
        return failed(f"a stranger's SMTP session is served by root ({'; '.join(users.commands)})",
                      evidence)
    return passed(f"the session is served by {', '.join(users.session)} (listener: "
                  f"{', '.join(users.listener) or '?'})", evidence)


_STAT = "%a %U %G %F %n"


def _queue_dirs(cf: str) -> str:
    """The MTA's QueueDirectory as sendmail.cf names it (it may end in a wildcard,
    /var/spool/mqueue/q*, for several queues)."""
    found = _options(cf, "QueueDirectory")
    return found[-1].strip() if found else "/var/spool/mqueue"


@check("privileges.queue_private", "The MTA queue is private to the MTA user", S,
       hint="the MTA queue holds every message in transit: only its owner (the RunAsUser, "
            "or root) may enter it; look at the mode of the QueueDirectory of sendmail.cf",
       lesson=f"{LESSON}#queue")
def queue_private(lab: Lab) -> Verdict:
    queue = _queue_dirs(_cf(lab))
    base = queue.rstrip("*").rstrip("/") if queue.endswith("*") else queue
    # The shell expands a wildcard QueueDirectory (q*) into its directories.
    script = (f'stat -c "{_STAT}" -- "$1"; for d in $2; do [ "$d" = "$1" ] || '
              f'[ ! -d "$d" ] || stat -c "{_STAT}" -- "$d"; done')
    res = lab.run("relay", ["sh", "-c", script, "sh", base, queue])
    if not res.ok or not res.stdout.strip():
        raise CannotObserve(f"cannot stat the queue {queue} on the relay: "
                            f"{res.stderr.strip()[:200]}")
    listing = res.stdout.strip().splitlines()
    evidence = f"O QueueDirectory={queue}  (sendmail.cf)\nrelay$ stat -c '{_STAT}' ...\n" \
               + "\n".join(listing)
    open_dirs = []
    for line in listing:
        mode, owner, group, _kind = line.split(" ", 3)[:4]
        if int(mode, 8) & 0o077:
            open_dirs.append(f"{line.rsplit(' ', 1)[-1]} {int(mode, 8):04o} {owner}:{group}")
    if open_dirs:
        return failed(f"the queue is open to its group or others: {'; '.join(open_dirs)}", evidence)
    first = listing[0].split(" ")
    return passed(f"{base} {int(first[0], 8):04o} {first[1]}:{first[2]}: no access for group "
                  "or others", evidence)


@check("privileges.msp_queue_private", "The submission program's queue is closed to other users",
       S, hint="local users' mail waits in the MSP queue (the QueueDirectory of submit.cf), "
               "which the set-group-id submission program enters as its group: that group "
               "needs it, nobody else", lesson=f"{LESSON}#msp")
def msp_queue_private(lab: Lab) -> Verdict:
    res = lab.run("relay", ["sed", "-n", "s/^O QueueDirectory=//p", "/etc/mail/submit.cf"])
    queue = (res.stdout.split() or ["/var/spool/mqueue-client"])[-1]
    info = lab.file_info("relay", queue)
    evidence = f"O QueueDirectory={queue}  (submit.cf)\n{info}"
    if info.mode & 0o007:
        return failed(f"{queue} is {info.octal} {info.owner}:{info.group}: other users may "
                      "enter it", evidence)
    return passed(f"{queue} {info.octal} {info.owner}:{info.group}: closed to other users",
                  evidence)


def _named_files(cf: str) -> list[str]:
    """The files sendmail.cf reads its maps, aliases and classes from (outside /etc/mail
    too): AliasFile, K map lines (hash maps also as .db), F class files."""
    paths: list[str] = []
    for value in _options(cf, "AliasFile"):
        for part in value.split(","):  # "/etc/mail/aliases", "hash:-N /etc/aliases"...
            words = part.split()
            path = re.sub(r"^\w+:", "", words[-1]) if words else ""
            if path.startswith("/"):
                paths += [path, path + ".db"]
    for m in re.finditer(r"^K\S+\s+(\S+)\s+(.*)$", cf, re.M):
        words = m.group(2).split()
        if words and words[-1].startswith("/"):
            path = words[-1]
            paths += [path, path + ".db"] if m.group(1) in ("hash", "btree", "dbm") else [path]
    for m in re.finditer(r"^F\{?\w+\}?(?:-o)?\s*(/\S+)", cf, re.M):
        paths.append(m.group(1))
    return list(dict.fromkeys(paths))


@check("privileges.config_not_writable",
       "The relay's mail configuration and maps are not writable by group or others", S,
       hint="whoever may write sendmail.cf, a map source such as /etc/mail/access or the "
            "aliases decides, at the next make, who may relay and which programs mail runs: "
            "look at the modes (ls -l) of /etc/mail, its maps and /etc/aliases",
       lesson=f"{LESSON}#modes")
def config_not_writable(lab: Lab) -> Verdict:
    paths = list(dict.fromkeys([*CONFIG_ROOTS, *_named_files(_cf(lab))]))
    # -H: a path sendmail.cf names may be a link (/etc/mail/aliases -> ../aliases); links
    # met below /etc/mail (smrsh's programs) are not followed, their targets are not ours.
    script = ('for p in "$@"; do [ -e "$p" ] && find -H "$p" ! -type l '
              '-printf "%i %m %u %g %y %p\\n"; done; exit 0')
    res = lab.run("relay", ["sh", "-c", script, "sh", *paths])
    by_inode: dict[str, str] = {}  # each file once (/etc/mail/aliases is /etc/aliases)
    for line in res.stdout.splitlines():
        inode, _, rest = line.partition(" ")
        if rest.strip():
            by_inode.setdefault(inode, rest)
    listing = sorted(by_inode.values(), key=lambda ln: ln.split(" ", 4)[-1])
    if not listing:
        raise CannotObserve(f"nothing of the mail configuration could be listed on the relay: "
                            f"{res.stderr.strip()[:200]}")
    writable = []
    for line in listing:
        mode, owner, group, _kind, path = line.split(" ", 4)
        bits = int(mode, 8)
        if bits & 0o022:
            who = " and ".join(w for w, b in (("group", 0o020), ("others", 0o002)) if bits & b)
            writable.append((path, f"{bits:04o} {owner}:{group}", who))
    shown = [f"{int(ln.split(' ')[0], 8):04o} {ln.split(' ', 1)[1]}" for ln in listing]
    evidence = ("relay$ find -H <path> ! -type l -printf '%m %u %g %y %p'  (for "
                + ", ".join(paths) + ")\n" + "\n".join(shown))
    if writable:
        evidence = "\n".join(f"WRITABLE by {who}: {mode} {path}" for path, mode, who in writable) \
            + "\n\n" + evidence
        names = "; ".join(f"{path} {mode}" for path, mode, _ in writable[:5])
        more = f" (and {len(writable) - 5} more)" if len(writable) > 5 else ""
        return failed(f"{len(writable)} of {len(listing)} configuration files or directories "
                      f"are writable by group or others: {names}{more}", evidence)
    return passed(f"none of {len(listing)} configuration files and directories is writable "
                  "by group or others", evidence)


# --- guards: privileges taken away, mail still flows ----------------------------------------

@check("privileges.mail_still_accepted", "Mail from outside is still accepted and delivered", S,
       hosts=("relay", "internet", "server"), guard=True,
       hint="an unprivileged session user must still read what the session needs: with "
            "RunAsUser, the maps (access.db), the queue, the SASL database and the TLS keys "
            "must belong to that user (Sendmail logs 'unsafe map file' or 'Permission "
            "denied' in the relay's journal otherwise)", lesson=f"{LESSON}#runasuser")
def mail_still_accepted(lab: Lab) -> Verdict:
    fate = lab.send("internet", f"{local_user(lab)}@{org(lab)}",
                    subject="labkit check: mail still flows")
    evidence = f"{fate}\n{fate.transcript}"
    if fate.status == "delivered":
        return passed(f"a message from internet to {local_user(lab)}@{org(lab)} was delivered "
                      f"({fate.where})", evidence)
    if fate.status == "refused" and fate.reply is None:
        raise CannotObserve(f"could not send from internet to the relay: {fate.where}")
    return failed(f"a message from internet to {local_user(lab)}@{org(lab)} was "
                  f"{fate.status}: {fate.reply if fate.status == 'refused' else fate.where}",
                  evidence)


@check("privileges.local_submission_works", "A local user can still send mail", S,
       guard=True,
       hint="local users submit through the set-group-id submission program, which must "
            "still enter its queue (the QueueDirectory of submit.cf) as its group",
       lesson=f"{LESSON}#msp")
def local_submission_works(lab: Lab) -> Verdict:
    user = local_user(lab)
    token = f"labkit-submit-{uuid.uuid4().hex[:12]}"
    command = (f"printf 'Subject: {token}\\n\\nlocal submission\\n' | "
               f"/usr/sbin/sendmail -oi {user}; echo rc=$?")
    res = lab.run("relay", ["su", "-s", "/bin/sh", user, "-c", command])
    out = (res.stdout + res.stderr).strip()
    evidence = f"{user}@relay$ {command}\n{out}"
    if "rc=0" not in out:
        return failed(f"{user}'s sendmail failed: {out.splitlines()[0] if out else res.returncode}",
                      evidence)
    deadline = time.monotonic() + 20
    while token not in lab.mailbox(user, "relay"):
        if time.monotonic() > deadline:
            return failed(f"{user}'s message was accepted but not delivered within 20 s "
                          "(still in a queue?)", evidence)
        time.sleep(0.5)
    return passed(f"{user} submitted a message and it was delivered", evidence)
