"""Section 03, denial of service: the relay's Sendmail keeps its resources for real mail.

Probed from ``internet`` (a stranger) against the relay, MEASURED under real load that is
bounded in count and time (labkit.probes.load): how big a message the relay takes, how
many recipients, how many idle sessions it serves at once, how fast it greets a quick
series of connections, how long each refused RCPT takes. The measured checks are ``exclusive``: they
run alone, after the others, so their load neither slows other checks nor is disturbed by
them; each states the bounds it used in its evidence, and ends in ``error`` when it could
not measure (the relay refuses every connection, say). Only the load and disk limits,
which cannot be provoked without harming the machine, are read from the effective
/etc/mail/sendmail.cf.

Every limit is also a way to shut the door on legitimate mail: the hints say so.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from labkit.checks.base import CannotObserve, Verdict, check, failed, passed
from labkit.checks.common import fqdn, local_user, org, outside
from labkit.probes import load

if TYPE_CHECKING:
    from labkit.lab import Lab

S = "03"
LESSON = "notebooks/03-dos.ipynb"

#: A size limit below this refuses ordinary mail with an attachment: it fails too.
SMALLEST_SANE_SIZE = 1_000_000
#: RCPTs tried before deciding there is no recipient limit.
MOST_RECIPIENTS = 200
#: A wait at least this long is a throttle's (Sendmail sleeps one second); with margin
#: for a busy machine, where an unthrottled greeting or reply takes milliseconds.
THROTTLED = 0.7
#: Sessions held in the connection-rate check, and how many of them must wait.
SERIES = 18
RATE_WAITS = 2
#: Sessions held open, at most, to find the children limit.
MOST_SESSIONS = 40
#: Unknown recipients tried in one transaction, and how many at its end must each wait.
BAD_RCPTS = 8
BAD_RCPTS_THROTTLED = 3
#: Sendmail's own default MinFreeBlocks (blocks of the queue's file system kept free).
SENDMAIL_MIN_FREE_BLOCKS = 100
#: How long the children check waits for the relay to accept connections again (Sendmail
#: refuses for 15 s once it met MaxDaemonChildren).
RECOVERY = 25.0


def _helo(lab: Lab) -> str:
    return fqdn(lab, "internet")


def _sender(lab: Lab) -> str:
    return f"probe@{outside(lab)}"


def _shorten(transcript: str, head: int = 8, tail: int = 6) -> str:
    lines = transcript.splitlines()
    if len(lines) <= head + tail + 1:
        return transcript
    return "\n".join([*lines[:head], f"... ({len(lines) - head - tail} lines)", *lines[-tail:]])


def _connect(lab: Lab) -> load.Connect:
    return load.vantage_connect(lab.engine, "internet", "relay")


# --- behaviour of one session ------------------------------------------------------------

@check("dos.message_size_limited", "Messages over a size limit are refused at MAIL FROM", S,
       hosts=("relay", "internet"),
       hint="the largest message Sendmail takes is confMAX_MESSAGE_SIZE in sendmail.mc (O "
            "MaxMessageSize); EHLO then advertises it and a larger declared SIZE is refused "
            "before any data is sent. Trade-off: too small a limit bounces real mail with "
            "attachments, so stay well above what your users send",
       lesson=f"{LESSON}#size")
def message_size_limited(lab: Lab) -> Verdict:
    with lab.smtp("internet", "relay") as s:
        ehlo = s.ehlo(_helo(lab))
        if ehlo.code != 250:
            raise CannotObserve(f"EHLO refused: {ehlo}")
        advertised = s.capabilities.get("SIZE")
        limit = int(advertised) if advertised and advertised.strip().isdigit() else 0
        declared = (limit if limit > 0 else 50_000_000) + 1
        reply = s.mail(_sender(lab), f"SIZE={declared}")
        s.rset()
    transcript = str(s.transcript)
    if limit <= 0:
        shown = "no SIZE" if advertised is None else "SIZE without a limit"
        return failed(f"EHLO advertises {shown}; MAIL FROM SIZE={declared} -> {reply}",
                      transcript)
    if reply.positive:
        return failed(f"EHLO advertises SIZE {limit}, but MAIL FROM SIZE={limit + 1} -> {reply}",
                      transcript)
    if reply.code < 500:
        raise CannotObserve(f"MAIL FROM SIZE={limit + 1} got a temporary refusal: {reply}")
    if reply.code != 552 and reply.enhanced not in ("5.2.3", "5.3.4"):
        return failed(f"MAIL FROM SIZE={limit + 1} refused, but not as too big: {reply}",
                      transcript, hint="a message over the limit should get 552 5.2.3.")
    if limit < SMALLEST_SANE_SIZE:
        return failed(f"the size limit {limit} bytes is below {SMALLEST_SANE_SIZE}: it refuses "
                      "ordinary mail with an attachment", transcript)
    return passed(f"EHLO advertises SIZE {limit}; MAIL FROM SIZE={limit + 1} -> {reply}",
                  transcript)


@check("dos.recipients_limited", "A message may name only so many recipients", S,
       hosts=("relay", "internet"),
       hint="the recipients of one message are limited by confMAX_RECIPIENTS_PER_MESSAGE "
            "(O MaxRecipientsPerMessage); past it RCPT gets a temporary 452 4.5.3, so an "
            "honest client sends the rest in another transaction. Trade-off: RFC 5321 asks "
            "servers to take at least 100 when they can, and mailing lists send many",
       lesson=f"{LESSON}#recipients")
def recipients_limited(lab: Lab) -> Verdict:
    recipient = f"{local_user(lab)}@{org(lab)}"
    probe = lab.recipient_limit("internet", "relay", recipient, most=MOST_RECIPIENTS)
    evidence = f"bounds: at most {MOST_RECIPIENTS} RCPTs of {recipient}\n" + _shorten(probe.transcript)
    if probe.reply is None:
        return failed(f"all {MOST_RECIPIENTS} RCPTs accepted: no recipient limit within "
                      f"{MOST_RECIPIENTS}", evidence)
    if probe.count == 0:
        raise CannotObserve(f"the first RCPT of {recipient} was already refused: {probe.reply}")
    if probe.reply.code == 452 or probe.reply.enhanced == "4.5.3":
        return passed(f"{probe.count} recipients accepted, RCPT {probe.count + 1} -> "
                      f"{probe.reply}", evidence)
    if probe.reply.code >= 500:
        return failed(f"RCPT {probe.count + 1} refused for good: {probe.reply}", evidence,
                      hint="past the limit the refusal must be temporary (452 4.5.3), or "
                           "the sender bounces the other recipients.")
    raise CannotObserve(f"RCPT {probe.count + 1} got a temporary refusal that is not the "
                        f"recipient limit: {probe.reply}")


# --- measured under load (exclusive: run alone, after the others) -------------------------

@check("dos.connection_rate_throttled", "A quick series of connections is slowed down", S,
       hosts=("relay", "internet"), exclusive=True,
       hint="how many connections Sendmail accepts per second is confCONNECTION_RATE_THROTTLE "
            "(O ConnectionRateThrottle); the ones past it wait. Trade-off: it counts every "
            "client together, so a flood from one host also slows everyone else's mail",
       lesson=f"{LESSON}#rate")
def connection_rate_throttled(lab: Lab) -> Verdict:
    """Sessions opened one after another as fast as the relay greets them, each held
    open (one at a time, so a full listen queue cannot pass for a throttle; held, because
    a session that ends cuts Sendmail's throttle sleep short), starting just after a
    wall-clock second begins, since Sendmail counts connections per calendar second.
    Unthrottled, every greeting takes milliseconds; throttled, the connection past the
    rate waits about a second, and so does one in each following second.

    Throttled means: at least ``RATE_WAITS`` of ``SERIES`` connections waited
    ``THROTTLED`` s or more for their greeting, or got a 4xx/5xx one; a single slow
    greeting is a busy machine, not a throttle. (Sendmail at ConnectionRateThrottle 5
    makes the 8th and the 15th wait; at 7 or more, fewer than two of 18 wait.)
    """
    connect = _connect(lab)
    report = None
    try:
        report = load.hold_sessions(connect, most=SERIES, greeting_timeout=5.0,
                                    time_limit=15.0, stop_after=1, align=True)
    finally:
        # A refused connection may mean MaxDaemonChildren was met: Sendmail then refuses
        # everyone for a while; wait for it, so what runs next finds the relay as it was.
        recovered = (load.wait_until_served(connect, time_limit=RECOVERY)
                     if report is None or (report.served and report.not_served) else None)
    evidence = report.listing() + (f"\nthrottled: at least {RATE_WAITS} of {SERIES} connections "
                                   f"wait {THROTTLED} s or more for their greeting")
    if recovered is not None:
        evidence += f"\nthe relay greeted a new connection again after {recovered:.1f} s"
    first = report.attempts[0]
    if not first.served:
        raise CannotObserve(f"the first connection was not served: {first.error}")
    held = [a for a in report.served if (a.greeting is not None and a.greeting.code >= 400)
            or (a.latency is not None and a.latency >= THROTTLED)]
    waits = ", ".join(f"{a.latency:.2f}" for a in report.served if a.latency is not None)
    if len(held) >= RATE_WAITS:
        positions = ", ".join(f"#{a.index + 1}" for a in held)
        return passed(f"{len(held)} of {len(report.attempts)} connections held back ({positions}; "
                      f"greeting latencies s: {waits})", evidence)
    if report.not_served and len(report.served) < SERIES:
        raise CannotObserve(f"only {len(report.served)} connections served before one was not "
                            f"({report.not_served[0].error}): too few to see a rate")
    return failed(f"{len(report.served) - len(held)} of {len(report.attempts)} connections in "
                  f"{report.seconds:.1f} s greeted without waiting: no throttle (greeting "
                  f"latencies s: {waits})", evidence)


@check("dos.bad_recipients_throttled", "A client naming unknown recipients is slowed down", S,
       hosts=("relay", "internet"), exclusive=True,
       hint="after so many refused RCPTs in one transaction Sendmail can sleep before each "
            "further one: confBAD_RCPT_THROTTLE (O BadRcptThrottle). Trade-off: a client with "
            "a stale list of addresses is slowed down too, so keep the threshold above a "
            "typo or two",
       lesson=f"{LESSON}#bad-recipients")
def bad_recipients_throttled(lab: Lab) -> Verdict:
    tag = uuid.uuid4().hex[:6]
    recipients = [f"RCPT TO:<nosuch-{tag}-{i}@{fqdn(lab, 'relay')}>" for i in range(BAD_RCPTS)]
    with lab.smtp("internet", "relay", timeout=10.0) as s:
        s.ehlo(_helo(lab))
        mail = s.mail(_sender(lab))
        if not mail.positive:
            raise CannotObserve(f"MAIL FROM refused, no RCPT to time: {mail}")
        timed = load.timed_commands(s, recipients, most=BAD_RCPTS, time_limit=30.0)
        s.rset()
    evidence = "\n".join([f"bounds: at most {BAD_RCPTS} unknown recipients, 30 s; throttled: "
                          f"the last {BAD_RCPTS_THROTTLED} each wait {THROTTLED} s or more",
                          *(str(t) for t in timed)])
    accepted = [t for t in timed if t.reply.positive]
    if accepted:
        raise CannotObserve(f"an unknown recipient was accepted, so none counts as bad: "
                            f"{accepted[0]}")
    if len(timed) < BAD_RCPTS:
        raise CannotObserve(f"only {len(timed)} of {BAD_RCPTS} RCPTs answered within 30 s")
    tail = timed[-BAD_RCPTS_THROTTLED:]
    waits = ", ".join(f"{t.seconds:.2f}" for t in timed)
    if all(t.seconds >= THROTTLED for t in tail):
        first = next(i for i, t in enumerate(timed) if t.seconds >= THROTTLED)
        return passed(f"after {first} refused RCPTs each further one waits (reply times s: "
                      f"{waits})", evidence)
    return failed(f"{len(timed)} unknown recipients refused without slowing down (reply times "
                  f"s: {waits})", evidence)


@check("dos.daemon_children_limited", "Only so many sessions are served at once", S,
       hosts=("relay", "internet"), exclusive=True,
       hint="the number of sessions Sendmail serves at once is confMAX_DAEMON_CHILDREN (O "
            "MaxDaemonChildren); without it idle connections can use up processes and memory. "
            "Trade-off: once the limit is met Sendmail refuses everyone for a while, real "
            "senders too (they retry later), so size it above your busiest hour",
       lesson=f"{LESSON}#children")
def daemon_children_limited(lab: Lab) -> Verdict:
    connect = _connect(lab)
    stop_after = 3
    report = None
    try:
        report = load.hold_sessions(connect, most=MOST_SESSIONS, greeting_timeout=5.0,
                                    time_limit=20.0, stop_after=stop_after)
    finally:
        # Sendmail refuses everyone for a while once it met the limit: wait for it to
        # serve again, so what runs next finds the relay as it was (if it ever served).
        recovered = (load.wait_until_served(connect, time_limit=RECOVERY)
                     if report is None or report.served else None)
    evidence = report.listing() + "\n" + (
        f"the relay greeted a new connection again {recovered:.1f} s after the sessions closed"
        if recovered is not None else
        f"the relay did not greet a new connection within {RECOVERY:.0f} s after the sessions "
        "closed")
    if not report.served:
        raise CannotObserve(f"no session was served at all: {report.attempts[0].error}")
    if not report.not_served:
        return failed(f"all {len(report.attempts)} idle sessions were served at once: no limit "
                      f"within {MOST_SESSIONS}", evidence)
    last = report.attempts[-stop_after:]
    if len(last) == stop_after and not any(a.served for a in last):
        return passed(f"{len(report.served)} idle sessions served, the next {stop_after} not "
                      f"({last[0].error})", evidence)
    raise CannotObserve(f"{len(report.not_served)} of {len(report.attempts)} connections not "
                        "served, but not from a limit on: the relay may be overloaded")


# --- read from the effective configuration -------------------------------------------------

_OPTION = re.compile(r"^O\s+(\w+)\s*=\s*(.*?)\s*$")
_LOAD_OPTIONS = ("QueueLA", "DelayLA", "RefuseLA", "MinFreeBlocks")


def _cf_options(text: str) -> dict[str, str]:
    """The options set (not commented out) in a sendmail.cf: ``O Name=value`` lines."""
    return {m.group(1): m.group(2) for m in map(_OPTION.match, text.splitlines()) if m}


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@check("dos.load_limits_set", "Load and disk limits are set: DelayLA, RefuseLA, MinFreeBlocks",
       S, hosts=("relay",),
       hint="sendmail.mc defines confDELAY_LA, confREFUSE_LA and confMIN_FREE_BLOCKS; check the "
            "built /etc/mail/sendmail.cf. Trade-off: too low a load limit refuses mail whenever "
            "the machine is merely busy, and the load average counts every process on it",
       lesson=f"{LESSON}#load")
def load_limits_set(lab: Lab) -> Verdict:
    """DelayLA, RefuseLA and MinFreeBlocks cannot be provoked without loading or filling
    the relay, so they are read from the EFFECTIVE /etc/mail/sendmail.cf.

    Sane means: DelayLA set above 0 (from that load on each command waits a second);
    RefuseLA set above 0 and above DelayLA (slow clients down first, refuse them only when
    that did not help); MinFreeBlocks above Sendmail's default of 100 blocks, so a filling
    disk makes the relay refuse mail (452 4.3.1) while there is still room to work.
    """
    text = lab.read_file("relay", "/etc/mail/sendmail.cf")
    options = _cf_options(text)
    shown = [ln for ln in text.splitlines()
             if re.match(r"^#?O\s+(" + "|".join(_LOAD_OPTIONS) + r")\b", ln)]
    evidence = "/etc/mail/sendmail.cf:\n" + ("\n".join(shown) or "(none of these options)")
    delay, refuse = _number(options.get("DelayLA")), _number(options.get("RefuseLA"))
    blocks = _number(options.get("MinFreeBlocks"))
    problems = []
    if not delay or delay <= 0:
        problems.append("DelayLA not set")
    if not refuse or refuse <= 0:
        problems.append("RefuseLA not set (Sendmail's built-in default applies)")
    elif delay and delay > 0 and refuse <= delay:
        problems.append(f"RefuseLA {refuse:g} not above DelayLA {delay:g}")
    if blocks is None or blocks <= SENDMAIL_MIN_FREE_BLOCKS:
        problems.append(f"MinFreeBlocks {options.get('MinFreeBlocks', 'not set')} is not above "
                        f"Sendmail's default {SENDMAIL_MIN_FREE_BLOCKS}")
    values = ", ".join(f"{k} {options.get(k, '-')}" for k in ("DelayLA", "RefuseLA", "MinFreeBlocks"))
    if problems:
        return failed("; ".join(problems) + f" ({values})", evidence)
    return passed(values, evidence)
