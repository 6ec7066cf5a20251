"""The relay-attempt matrix: does a server relay mail for strangers?

In the spirit of the classic open-relay testers, :func:`relay_matrix` tries the usual
envelope tricks (null sender, the server's own names as sender, percent hack, bang
paths, source routes, quoted local parts, address literals, ...) each in a transaction
of its own. A variant whose RCPT is accepted gets a real message with a unique token;
the caller's ``sink`` then tells whether that token reached the outside world, which is
the only proof of a leak that counts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from labkit.probes.smtp import Reply, SmtpError, SmtpSession


@dataclass(frozen=True)
class RelayVariant:
    name: str
    mail_from: str
    rcpt_to: str


@dataclass
class RelayAttempt:
    variant: RelayVariant
    mail_reply: Reply | None = None
    rcpt_reply: Reply | None = None
    data_reply: Reply | None = None
    error: str | None = None
    delivered: bool | None = None  # None: not sent, or no sink to ask

    @property
    def accepted(self) -> bool:
        """The server accepted the recipient (and the message, if one was sent)."""
        ok = self.rcpt_reply is not None and self.rcpt_reply.positive
        return ok and (self.data_reply is None or self.data_reply.positive)


@dataclass
class RelayMatrix:
    vantage: str
    target: str
    attempts: list[RelayAttempt] = field(default_factory=list)
    transcript: str = ""

    @property
    def accepted(self) -> list[RelayAttempt]:
        return [a for a in self.attempts if a.accepted]

    @property
    def leaked(self) -> list[RelayAttempt]:
        """Variants whose message reached the outside sink."""
        return [a for a in self.attempts if a.delivered]

    @property
    def open_relay(self) -> bool:
        return bool(self.accepted or self.leaked)

    def summary(self) -> str:
        lines = [f"relay matrix from {self.vantage} to {self.target}: "
                 f"{len(self.accepted)} of {len(self.attempts)} accepted, "
                 f"{len(self.leaked)} reached the outside sink"]
        for a in self.attempts:
            verdict = ("LEAKED" if a.delivered else "accepted" if a.accepted
                       else "refused" if a.rcpt_reply or a.mail_reply else "error")
            reply = a.error or str(a.rcpt_reply if a.rcpt_reply and not a.rcpt_reply.positive
                                   else a.data_reply or a.rcpt_reply or a.mail_reply)
            lines.append(f"  {verdict:8} {a.variant.name:34} RCPT TO:<{a.variant.rcpt_to}>  {reply}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        import html
        rows = []
        for a in self.attempts:
            colour = "#c00" if a.accepted or a.delivered else "#080"
            verdict = "LEAKED" if a.delivered else "accepted" if a.accepted else "refused"
            reply = a.error or str(a.rcpt_reply or a.mail_reply)
            rows.append(
                f"<tr><td style='color:{colour}'><b>{verdict}</b></td><td>{html.escape(a.variant.name)}</td>"
                f"<td><code>{html.escape(a.variant.mail_from)}</code></td>"
                f"<td><code>{html.escape(a.variant.rcpt_to)}</code></td><td>{html.escape(reply)}</td></tr>")
        head = ("<tr><th>verdict</th><th>trick</th><th>MAIL FROM</th><th>RCPT TO</th>"
                "<th>reply</th></tr>")
        return (f"<p>Relay matrix from <b>{self.vantage}</b> to <b>{self.target}</b>: "
                f"{len(self.accepted)} of {len(self.attempts)} accepted, "
                f"{len(self.leaked)} reached the outside sink</p>"
                f"<table>{head}{''.join(rows)}</table>")


def relay_variants(victim: str, own_domain: str, own_host: str, own_address: str,
                   outside_address: str) -> list[RelayVariant]:
    """The envelope tricks to try, for relaying to ``victim`` (user@outside.domain).

    ``own_domain``, ``own_host`` and ``own_address`` are the server's organisation domain,
    its FQDN and its address as the client sees it; ``outside_address`` is the address of
    the victim's mail host (for address-literal tricks).
    """
    user, _, domain = victim.partition("@")
    stranger = f"spammer@{domain}"
    return [
        RelayVariant("plain stranger to stranger", stranger, victim),
        RelayVariant("null sender", "", victim),
        RelayVariant("sender in our own domain", f"jo@{own_domain}", victim),
        RelayVariant("sender is the server's own name", f"spammer@{own_host}", victim),
        RelayVariant("sender is the server's address literal", f"spammer@[{own_address}]", victim),
        RelayVariant("sender without a domain", "spammer", victim),
        RelayVariant("recipient with trailing dot", stranger, f"{victim}."),
        RelayVariant("percent hack via our domain", stranger, f"{user}%{domain}@{own_domain}"),
        RelayVariant("percent hack via the server's name", stranger, f"{user}%{domain}@{own_host}"),
        RelayVariant("percent hack via address literal", stranger,
                     f"{user}%{domain}@[{own_address}]"),
        RelayVariant("bang path", stranger, f"{domain}!{user}"),
        RelayVariant("bang path via our domain", stranger, f"{domain}!{user}@{own_domain}"),
        RelayVariant("bang path via address literal", stranger, f"{domain}!{user}@[{own_address}]"),
        RelayVariant("source route", stranger, f"@{own_host}:{victim}"),
        RelayVariant("quoted recipient", stranger, f'"{victim}"'),
        RelayVariant("quoted recipient via our domain", stranger, f'"{victim}"@{own_domain}'),
        RelayVariant("quoted percent via our domain", stranger, f'"{user}%{domain}"@{own_domain}'),
        RelayVariant("double at via our domain", stranger, f"{victim}@{own_domain}"),
        RelayVariant("recipient address literal", stranger, f"{user}@[{outside_address}]"),
    ]


#: Relay attempts made in one SMTP session before the probe opens a new one.
ATTEMPTS_PER_SESSION = 4


def relay_matrix(connect: Callable[[], SmtpSession], variants: list[RelayVariant],
                 vantage: str, target: str,
                 sink: Callable[[], list[str]] | None = None,
                 wait: float = 8.0, helo: str = "probe.example.net") -> RelayMatrix:
    """Try every variant against the server that ``connect()`` opens a session to.

    ``sink()``, if given, returns the texts of the messages the outside world received;
    for accepted variants it is polled up to ``wait`` seconds for their tokens.
    """
    matrix = RelayMatrix(vantage, target)
    token = uuid.uuid4().hex[:12]
    session: SmtpSession | None = None
    transcripts: list[str] = []

    def fresh() -> SmtpSession:
        nonlocal session
        if session is not None:
            transcripts.append(str(session.transcript))
            session.close()
        session = connect()
        session.ehlo(helo)
        return session

    for i, variant in enumerate(variants):
        attempt = RelayAttempt(variant)
        matrix.attempts.append(attempt)
        # A session of its own every few attempts: servers slow down a session that
        # collects refusals (Postfix's smtpd_soft_error_limit, Sendmail's BadRcptThrottle),
        # which would time the probe, not the relay rules.
        renew = i % ATTEMPTS_PER_SESSION == 0
        for tries in range(2):  # a server may hang up after a refusal: reconnect once
            try:
                s = session if session is not None and tries == 0 and not renew else fresh()
                s.rset()
                attempt.mail_reply = s.mail(variant.mail_from)
                if not attempt.mail_reply.positive:
                    break
                attempt.rcpt_reply = s.rcpt(variant.rcpt_to)
                if attempt.rcpt_reply.positive:
                    attempt.data_reply = s.data(
                        f"From: <{variant.mail_from}>\r\nTo: <{variant.rcpt_to}>\r\n"
                        f"Subject: relay test {i}\r\nX-Labkit-Relay-Probe: {token}-{i:03d}\r\n\r\n"
                        f"Relay test '{variant.name}'.\r\n")
                break
            except SmtpError as exc:
                attempt.error = f"{type(exc).__name__}: {exc}"
                session = None
            except OSError as exc:
                attempt.error = f"connection failed: {exc}"
                session = None
                break
    if session is not None:
        session.quit()
        transcripts.append(str(session.transcript))
        session.close()
    matrix.transcript = "\n---\n".join(transcripts)

    sent = [a for a in matrix.attempts if a.accepted]
    if sink is not None and sent:
        deadline = time.monotonic() + wait
        while True:
            texts = "\n".join(sink())
            for i, a in enumerate(matrix.attempts):
                if a in sent:
                    a.delivered = f"{token}-{i:03d}" in texts
            if all(a.delivered for a in sent) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    return matrix
