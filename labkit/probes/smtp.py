"""SMTP sessions that keep a full transcript, for probes, checks and lessons.

An :class:`SmtpSession` speaks SMTP over a socket it is given (one opened from a lab
host by an engine, or any socket in tests), waits for the greeting before it speaks,
and records every line sent and received. Each reply is parsed into its code, its
enhanced status code (RFC 3463) and its text. Every read has a timeout; a closed
connection, a silent server and a reply that is not SMTP each raise a named error and
leave the transcript readable.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from dataclasses import dataclass, field

MAX_LINE = 4096
MAX_REPLY_LINES = 200
_REPLY_LINE = re.compile(r"^(\d{3})([ -])(.*)$")
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


class SmtpError(Exception):
    """Base class of the SMTP probe's errors; ``transcript`` is what was said so far."""

    def __init__(self, message: str, transcript: Transcript | None = None) -> None:
        super().__init__(message)
        self.transcript = transcript


class SmtpTimeout(SmtpError):
    """The server said nothing (or not all of a reply) within the timeout."""


class SmtpClosed(SmtpError):
    """The server closed the connection."""


class SmtpProtocolError(SmtpError):
    """The server answered with something that is not an SMTP reply."""


class SmtpTlsError(SmtpProtocolError):
    """The TLS handshake after STARTTLS failed (its cause is the ssl error)."""


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: ``code`` (e.g. 550), ``enhanced`` ("5.7.1" or None), its text lines."""

    code: int
    lines: tuple[str, ...]
    enhanced: str | None = None

    @classmethod
    def parse(cls, raw_lines: list[str]) -> Reply:
        code = int(raw_lines[-1][:3])
        texts = tuple(line[4:] for line in raw_lines)
        m = _ENHANCED.match(texts[0]) if texts else None
        return cls(code, texts, m.group(0) if m else None)

    @property
    def text(self) -> str:
        """The reply's text, lines joined by a space, without the enhanced code."""
        first = self.lines[0] if self.lines else ""
        if self.enhanced:
            first = first[len(self.enhanced):].lstrip()
        return " ".join([first, *self.lines[1:]]).strip()

    @property
    def positive(self) -> bool:
        """2xx or 3xx: the server accepted the command."""
        return 200 <= self.code < 400

    @property
    def kind(self) -> str:
        return {2: "accepted", 3: "continue", 4: "temporary failure",
                5: "permanent failure"}.get(self.code // 100, "unknown")

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced + ' ' if self.enhanced else ''}{self.text}"


@dataclass
class Transcript:
    """Every line of a session: ``("C", line)`` sent by the client, ``("S", line)`` received,
    ``("*", note)`` for events (connected, TLS started, timed out)."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    def add(self, who: str, text: str) -> None:
        self.lines.append((who, text))

    def __str__(self) -> str:
        return "\n".join(f"{who}: {text}" for who, text in self.lines)

    def _repr_html_(self) -> str:
        import html
        colour = {"C": "#0645ad", "S": "#222", "*": "#888"}
        rows = "".join(
            f'<div style="color:{colour.get(w, "#222")}"><b>{w}:</b> {html.escape(t)}</div>'
            for w, t in self.lines)
        return f'<div style="font-family:monospace;white-space:pre">{rows}</div>'


class SmtpSession:
    """An SMTP client session over ``sock`` that records a transcript.

    The greeting is read at once (``self.greeting``). Use as a context manager, or call
    :meth:`close`. ``timeout`` bounds every read and write.
    """

    def __init__(self, sock: socket.socket, timeout: float = 10.0, peer: str = "") -> None:
        self.sock = sock
        self.timeout = timeout
        self.peer = peer or _peer_name(sock)
        self.transcript = Transcript()
        self.capabilities: dict[str, str] = {}
        self.tls: dict[str, object] | None = None
        self._buffer = b""
        self.sock.settimeout(timeout)
        self.transcript.add("*", f"connected to {self.peer}")
        self.greeting = self.read_reply()

    # --- reading and writing ---------------------------------------------------

    def _readline(self, deadline: float) -> str:
        while b"\n" not in self._buffer:
            if len(self._buffer) > MAX_LINE:
                raise SmtpProtocolError(f"a reply line longer than {MAX_LINE} bytes",
                                        self.transcript)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError()
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(4096)
            if not chunk:
                raise SmtpClosed("the server closed the connection", self.transcript)
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.rstrip(b"\r").decode("utf-8", errors="replace")

    def read_reply(self, timeout: float | None = None) -> Reply:
        """Read one (possibly multi-line) reply."""
        deadline = time.monotonic() + (timeout or self.timeout)
        raw: list[str] = []
        try:
            while True:
                line = self._readline(deadline)
                self.transcript.add("S", line)
                m = _REPLY_LINE.match(line)
                if not m or (raw and m.group(1) != raw[0][:3]):
                    raise SmtpProtocolError(f"not an SMTP reply: {line[:80]!r}", self.transcript)
                raw.append(line)
                if m.group(2) == " ":
                    return Reply.parse(raw)
                if len(raw) >= MAX_REPLY_LINES:
                    raise SmtpProtocolError(f"a reply of more than {MAX_REPLY_LINES} lines",
                                            self.transcript)
        except TimeoutError:
            self.transcript.add("*", f"no reply within {timeout or self.timeout:.0f} s")
            raise SmtpTimeout(f"{self.peer} did not reply within {timeout or self.timeout:.0f} s",
                              self.transcript) from None
        except OSError as exc:
            raise SmtpClosed(f"the connection is closed ({exc.strerror or exc})",
                             self.transcript) from None

    def send_line(self, line: str) -> None:
        self.transcript.add("C", line)
        try:
            self.sock.sendall(line.encode("utf-8") + b"\r\n")
        except TimeoutError:
            raise SmtpTimeout("could not send within the timeout", self.transcript) from None
        except OSError as exc:
            raise SmtpClosed(f"the connection is closed ({exc.strerror or exc})",
                             self.transcript) from None

    def command(self, line: str, timeout: float | None = None) -> Reply:
        """Send one command line and return the server's reply."""
        self.send_line(line)
        return self.read_reply(timeout)

    # --- SMTP verbs --------------------------------------------------------------

    def ehlo(self, name: str = "probe.example.net") -> Reply:
        """EHLO; on success ``self.capabilities`` maps each keyword to its parameters."""
        reply = self.command(f"EHLO {name}")
        if reply.code == 250:
            self.capabilities = {}
            for line in reply.lines[1:]:
                word, _, params = line.partition(" ")
                self.capabilities[word.upper()] = params
        return reply

    def helo(self, name: str = "probe.example.net") -> Reply:
        return self.command(f"HELO {name}")

    def mail(self, sender: str, params: str = "") -> Reply:
        return self.command(f"MAIL FROM:{_bracket(sender)}{' ' + params if params else ''}")

    def rcpt(self, recipient: str, params: str = "") -> Reply:
        return self.command(f"RCPT TO:{_bracket(recipient)}{' ' + params if params else ''}")

    def data(self, message: str, timeout: float | None = None) -> Reply:
        """DATA, then the message (dot-stuffed); the reply to the final dot."""
        reply = self.command("DATA")
        if reply.code != 354:
            return reply
        body = message.replace("\r\n", "\n").split("\n")
        if body and body[-1] == "":
            body.pop()
        payload = "".join(("." + ln if ln.startswith(".") else ln) + "\r\n" for ln in body)
        self.transcript.add("C", f"({len(body)} lines of message)")
        try:
            self.sock.sendall(payload.encode("utf-8") + b".\r\n")
        except TimeoutError:
            raise SmtpTimeout("could not send the message within the timeout",
                              self.transcript) from None
        except OSError as exc:
            raise SmtpClosed(f"the connection is closed ({exc.strerror or exc})",
                             self.transcript) from None
        self.transcript.add("C", ".")
        return self.read_reply(timeout)

    def vrfy(self, who: str) -> Reply:
        return self.command(f"VRFY {who}")

    def expn(self, who: str) -> Reply:
        return self.command(f"EXPN {who}")

    def etrn(self, domain: str) -> Reply:
        return self.command(f"ETRN {domain}")

    def noop(self) -> Reply:
        return self.command("NOOP")

    def rset(self) -> Reply:
        return self.command("RSET")

    def starttls(self, context: ssl.SSLContext | None = None, server_hostname: str | None = None) -> Reply:
        """STARTTLS; on 220 the session continues over TLS and ``self.tls`` says how."""
        reply = self.command("STARTTLS")
        if reply.code != 220:
            return reply
        if context is None:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        except (ssl.SSLError, OSError) as exc:
            self.transcript.add("*", f"TLS handshake failed: {exc}")
            raise SmtpTlsError(f"TLS handshake failed: {exc}", self.transcript) from exc
        self.tls = {"version": self.sock.version(), "cipher": self.sock.cipher()[0]}
        self.transcript.add("*", f"TLS started: {self.tls['version']}, {self.tls['cipher']}")
        self.capabilities = {}
        return reply

    def quit(self) -> Reply | None:
        """QUIT, tolerating a server that already hung up."""
        try:
            return self.command("QUIT", timeout=min(self.timeout, 5))
        except SmtpError:
            return None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> SmtpSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.quit()
        self.close()


def _bracket(address: str) -> str:
    return address if address.startswith("<") else f"<{address}>"


def _peer_name(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "?"


# --- probes of one behaviour each, on a fresh session --------------------------------

@dataclass
class LimitProbe:
    """What a server did when pushed to a limit: the reply that stopped it, and a count."""
    reply: Reply | None
    count: int
    transcript: str

    def __str__(self) -> str:
        return f"stopped after {self.count}: {self.reply}" if self.reply else \
            f"no limit met within {self.count}"


def probe_mail_without_helo(session: SmtpSession, sender: str) -> Reply:
    """MAIL FROM before any HELO/EHLO: 2xx means the server does not require a greeting."""
    return session.mail(sender)


def probe_recipient_limit(session: SmtpSession, sender: str, recipient: str,
                          most: int = 200, helo: str = "probe.example.net") -> LimitProbe:
    """RCPT the same ``recipient`` up to ``most`` times; stop at the first refusal.

    ``count`` is how many were accepted (e.g. 100 when RCPT 101 gets 452 4.5.3).
    """
    session.ehlo(helo)
    session.mail(sender)
    for i in range(most):
        reply = session.rcpt(recipient)
        if not reply.positive:
            session.rset()
            return LimitProbe(reply, i, str(session.transcript))
    session.rset()
    return LimitProbe(None, most, str(session.transcript))


def probe_declared_size(session: SmtpSession, sender: str, size: int,
                        helo: str = "probe.example.net") -> tuple[str | None, Reply]:
    """The SIZE the server advertises, and its answer to MAIL FROM with SIZE=``size``."""
    session.ehlo(helo)
    advertised = session.capabilities.get("SIZE")
    reply = session.mail(sender, f"SIZE={size}")
    session.rset()
    return advertised, reply
