"""Section 06, SMTP AUTH on the relay: no password in clear, only real passwords, a user
who logs in may relay, and the submission port 587 takes mail only from users who log in.

Probed from ``internet`` (a road warrior outside the organisation) against the relay's
Sendmail, and on the relay as an unprivileged local user. The mechanisms are whatever
the server offers: a learner who keeps only CRAM-MD5, or who offers PLAIN under TLS
only, passes as well as one who sets AuthOptions ``p``.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from labkit.checks.base import CannotObserve, Verdict, check, failed, passed
from labkit.checks.common import fqdn, local_user, org, outside, relay_answers
from labkit.probes.auth import MECHANISMS, authenticate, offered
from labkit.probes.mailflow import send_and_follow
from labkit.probes.smtp import Reply, SmtpError, SmtpSession
from labkit.probes.tls import start_tls

if TYPE_CHECKING:
    from labkit.lab import Lab

S = "06"
LESSON = "notebooks/06-sasl.ipynb"
PLAINTEXT = ("PLAIN", "LOGIN")
#: The probe's preference: mechanisms that do not send the password itself first.
PREFERENCE = ("CRAM-MD5", "DIGEST-MD5", "PLAIN", "LOGIN")
#: Where Cyrus SASL keeps Sendmail's settings on Debian, and the default database.
SASL_CONF = ("/etc/sasl2/Sendmail.conf", "/usr/lib/sasl2/Sendmail.conf")
SASLDB = "/etc/sasldb2"


def _password(lab: Lab) -> str:
    return str(lab.topology.mail["password"])


def _login_session(lab: Lab, user: str, vantage: str = "internet",
                   port: int = 25) -> tuple[SmtpSession, str]:
    """A session from ``vantage`` to the relay where AUTH can be tried, and the mechanism
    to try: one offered in clear if any (not PLAIN or LOGIN first), else one offered after
    STARTTLS (the certificate is not verified: that is section 07's business). The
    session is open (close it); CannotObserve if AUTH is offered nowhere."""
    s = lab.smtp(vantage, "relay", port)
    try:
        s.ehlo(fqdn(lab, vantage))
        mechs = offered(s)
        if not any(m in MECHANISMS for m in mechs) and "STARTTLS" in s.capabilities:
            start_tls(s, fqdn(lab, "relay"), helo=fqdn(lab, vantage))
            mechs = offered(s)
        usable = [m for m in PREFERENCE if m in mechs]
        if not usable:
            raise _NoAuth(f"EHLO from {vantage} offers no AUTH mechanism the probe speaks, "
                          f"before or after STARTTLS ({' '.join(mechs) or 'no AUTH'})",
                          str(s.transcript))
    except BaseException:
        s.close()
        raise
    return s, usable[0]


class _NoAuth(Exception):
    def __init__(self, message: str, transcript: str) -> None:
        super().__init__(message)
        self.transcript = transcript


@check("sasl.no_plaintext_in_clear", "No password-in-clear AUTH mechanism before STARTTLS", S,
       hosts=("relay", "internet"),
       hint="on an unencrypted session Sendmail should neither offer nor accept PLAIN and "
            "LOGIN, which send the password itself: see confAUTH_OPTIONS (AuthOptions) in "
            "sendmail.mc, and confAUTH_MECHANISMS", lesson=f"{LESSON}#plaintext")
def no_plaintext_in_clear(lab: Lab) -> Verdict:
    user = local_user(lab)
    with lab.smtp("internet", "relay") as s:
        s.ehlo(fqdn(lab, "internet"))
        mechs = offered(s)
        # Tried even when not offered: a server may accept what it does not advertise.
        reply = authenticate(s, "PLAIN", user, _password(lab), fqdn(lab, "relay"))
    shown = " ".join(mechs) or "(no AUTH)"
    clear = [m for m in mechs if m in PLAINTEXT]
    evidence = str(s.transcript)
    if reply.code == 235:
        return failed(f"{user} logged in with AUTH PLAIN on an unencrypted session: {reply} "
                      f"(offered in clear: {shown})", evidence)
    if reply.code in (334, 535):
        return failed(f"AUTH PLAIN is accepted on an unencrypted session (the password was "
                      f"checked: {reply}); offered in clear: {shown}", evidence)
    if clear:
        return failed(f"EHLO offers {', '.join(clear)} before STARTTLS (AUTH {shown})", evidence)
    return passed(f"before STARTTLS: AUTH {shown}; AUTH PLAIN -> {reply}", evidence)


#: Passwords a guesser tries first, besides a random wrong one: each user's own name.
def _guesses(user: str) -> list[tuple[str, str]]:
    return [("a wrong password", f"wrong-{uuid.uuid4().hex[:10]}"),
            ("the user name as password", user)]


@check("sasl.wrong_password_refused", "AUTH refuses a wrong or guessable password", S,
       hosts=("relay", "internet"),
       hint="every SASL account must have a real password: list them with sasldblistusers2 "
            "and set a new password with saslpasswd2 (the realm is the relay's name)",
       lesson=f"{LESSON}#passwords", guard=True)
def wrong_password_refused(lab: Lab) -> Verdict:
    users = list(lab.topology.mail["users"])
    accepted: list[str] = []
    transcripts: list[str] = []
    answers: list[Reply] = []
    for user in users:
        try:
            s, mech = _login_session(lab, user)
        except _NoAuth as exc:
            raise CannotObserve(f"{exc}: no password can be tried") from None
        with s:
            for what, guess in _guesses(user):
                reply = authenticate(s, mech, user, guess, fqdn(lab, "relay"))
                answers.append(reply)
                if reply.code == 235:
                    accepted.append(f"{user} with {what} ({mech})")
                    break
            else:  # the control: is the password checked at all?
                right = authenticate(s, mech, user, _password(lab), fqdn(lab, "relay"))
                if right.code != 235:
                    transcripts.append(str(s.transcript))
                    raise CannotObserve(f"{user} cannot log in with the right password "
                                        f"either ({mech}: {right}): no telling whether "
                                        "passwords are checked")
        transcripts.append(str(s.transcript))
    evidence = "\n---\n".join(transcripts)
    if accepted:
        return failed(f"logged in: {'; '.join(accepted)}", evidence)
    refused = sorted({str(r) for r in answers if r.code != 235})
    return passed(f"{len(answers)} wrong or guessed passwords for {len(users)} users refused "
                  f"({'; '.join(refused)}); each right password accepted", evidence)


@check("sasl.authenticated_relay", "A lab user who logs in may relay to the outside", S,
       hosts=("relay", "internet"),
       hint="AUTH is there so that users away from the LAN can send mail: Sendmail must "
            "offer a mechanism (confAUTH_MECHANISMS), trust it for relaying "
            "(TRUST_AUTH_MECH) and read the SASL database as the user it runs as",
       lesson=f"{LESSON}#relay", guard=True)
def authenticated_relay(lab: Lab) -> Verdict:
    user = local_user(lab)
    try:
        s, mech = _login_session(lab, user)
    except _NoAuth as exc:
        return failed(f"no login possible: {exc}", exc.transcript)
    with s:
        login = authenticate(s, mech, user, _password(lab), fqdn(lab, "relay"))
        login_transcript = str(s.transcript)
        if login.code != 235:
            return failed(f"{user} cannot log in with {mech}: {login}", login_transcript)
        session = s

        def opened() -> SmtpSession:
            return _KeepOpen(session)

        fate = send_and_follow(lab.engine, opened,
                               lambda: [(m.mail_from, m.data) for m in lab.sink_messages()],
                               f"{user}@{org(lab)}", f"someone@{outside(lab)}",
                               "labkit check: relaying after AUTH", helo=fqdn(lab, "internet"))
    evidence = f"{fate}\n{session.transcript}"
    if fate.status == "at-sink":
        return passed(f"after AUTH {mech} as {user} (235), a message from internet reached "
                      "the outside", evidence)
    if fate.status in ("refused", "bounced"):
        why = fate.reply or fate.bounce or fate.where
        return failed(f"{user} logged in ({mech}) but may not relay: {why}", evidence)
    raise CannotObserve(f"the message sent after AUTH was neither refused nor at the outside "
                        f"sink: {fate}")


class _KeepOpen:
    """A session handed to send_and_follow, which closes what it opens: this one it leaves
    open (its owner closes it), so the login before it holds for the message."""

    def __init__(self, session: SmtpSession) -> None:
        self.session = session

    def __enter__(self) -> SmtpSession:
        return self.session

    def __exit__(self, *exc: object) -> None:
        pass


def _sasldb_path(lab: Lab) -> str:
    """The database Cyrus SASL reads for Sendmail: sasldb_path of Sendmail.conf, else the
    default /etc/sasldb2."""
    for conf in SASL_CONF:
        res = lab.run("relay", ["cat", conf])
        if res.ok:
            m = re.search(r"^\s*sasldb_path\s*:\s*(\S+)", res.stdout, re.M)
            return m.group(1) if m else SASLDB
    return SASLDB


@check("sasl.sasldb_private", "The SASL password database is private", S,
       hint="the SASL secrets (/etc/sasldb2, or sasldb_path in /etc/sasl2/Sendmail.conf) "
            "must not be readable by other users: look at its mode; Sendmail (its owner, "
            "or the user it runs as) must still read it", lesson=f"{LESSON}#sasldb")
def sasldb_private(lab: Lab) -> Verdict:
    path = _sasldb_path(lab)
    res = lab.run("relay", ["sh", "-c", 'f=$(readlink -f "$1") && ls -lL "$1" && '
                                        'stat -c "%a %U:%G %n" "$f"', "sh", path])
    if not res.ok:
        raise CannotObserve(f"the SASL database {path} is not there on the relay "
                            f"({res.stderr.strip()[:200]})")
    listing = res.stdout.strip()
    mode = int(listing.splitlines()[-1].split()[0], 8)
    user = local_user(lab)
    read = lab.run("relay", ["su", "-s", "/bin/sh", user, "-c",
                             f"head -c 16 {path} > /dev/null && echo READABLE"])
    if "does not exist" in read.stderr or read.returncode == 124:
        raise CannotObserve(f"could not try reading {path} as {user}: {read.stderr.strip()[:200]}")
    tried = (f"{user}@relay$ head -c 16 {path} > /dev/null\n"
             f"{(read.stdout + read.stderr).strip() or '(no output)'} (exit {read.returncode})")
    evidence = f"relay# ls -lL {path}\n{listing}\n{tried}"
    if "READABLE" in read.stdout:
        return failed(f"{path} ({mode:04o}) is readable by the unprivileged user {user}",
                      evidence)
    if mode & 0o006:
        return failed(f"{path} is {mode:04o}: other users have access", evidence)
    return passed(f"{path} is {mode:04o}; {user} cannot read it", evidence)


SUBMISSION = 587


@check("sasl.submission_requires_auth", "The submission port 587 takes mail only from users who "
       "log in, and lets them send to the outside", S, hosts=("relay", "internet"),
       hint="roaming users hand in their mail on port 587 (RFC 6409): the DAEMON_OPTIONS "
            "line of sendmail.mc for Port=submission must listen on every address, and one of "
            "its M= modifiers makes Sendmail ask for AUTH before MAIL (see the modifiers in "
            "cf/README); without it, anyone may hand mail in there",
       lesson=f"{LESSON}#submission")
def submission_requires_auth(lab: Lab) -> Verdict:
    user = local_user(lab)
    sender, local, far = f"{user}@{org(lab)}", f"{user}@{org(lab)}", f"someone@{outside(lab)}"
    try:
        with lab.smtp("internet", "relay", SUBMISSION) as s:
            s.ehlo(fqdn(lab, "internet"))
            replies = [s.mail(sender)]
            if replies[0].positive:
                replies.append(s.rcpt(local))
            s.rset()
    except (SmtpError, OSError) as exc:
        relay_answers(lab)
        return failed(f"nothing answers on port {SUBMISSION} of the relay from internet: "
                      f"roaming users have no submission port ({exc})")
    anonymous = str(s.transcript)
    if all(r.positive for r in replies):
        return failed(f"port {SUBMISSION} took MAIL FROM and RCPT TO <{local}> from a client "
                      "that never logged in", anonymous)
    try:
        s2, mech = _login_session(lab, user, port=SUBMISSION)
    except _NoAuth as exc:
        return failed(f"port {SUBMISSION} refuses clients that have not logged in, but offers "
                      f"no way to log in: {exc}", f"{anonymous}\n---\n{exc.transcript}")
    with s2:
        login = authenticate(s2, mech, user, _password(lab), fqdn(lab, "relay"))
        after = [login]
        if login.code == 235:
            after += [s2.mail(sender), s2.rcpt(far)]
            s2.rset()
    evidence = f"{anonymous}\n---\n{s2.transcript}"
    if login.code != 235:
        return failed(f"{user} cannot log in with {mech} on port {SUBMISSION}: {login}", evidence)
    if not all(r.positive for r in after):
        return failed(f"{user} logged in ({mech}) on port {SUBMISSION} but may not send to "
                      f"<{far}>: {after[-1]}", evidence)
    return passed(f"port {SUBMISSION} refuses a client that has not logged in "
                  f"({replies[-1]}); after AUTH {mech} as {user} it takes mail for <{far}>",
                  evidence)
