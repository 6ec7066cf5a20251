"""SMTP AUTH: which mechanisms are offered before and after STARTTLS, and logging in.

:func:`authenticate` speaks PLAIN, LOGIN, CRAM-MD5 and DIGEST-MD5 (RFC 4616, the de
facto LOGIN, RFC 2195, RFC 2831) over an :class:`~labkit.probes.smtp.SmtpSession`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field

from labkit.probes.smtp import Reply, SmtpSession

MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5")


class AuthProbeError(Exception):
    """The mechanism is unknown to the probe, or the server's challenge is malformed."""


def _b64(data: str | bytes) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except ValueError as exc:
        raise AuthProbeError(f"the server's challenge is not base64: {text[:60]!r}") from exc


def offered(session: SmtpSession) -> list[str]:
    """The AUTH mechanisms in the session's last EHLO answer ([] if AUTH is not offered)."""
    return session.capabilities.get("AUTH", "").upper().split()


def authenticate(session: SmtpSession, mechanism: str, user: str, password: str,
                 server_name: str = "localhost") -> Reply:
    """Log in with ``mechanism``; the final reply (235 on success, 535 on bad credentials).

    ``server_name`` is the server's host name, which DIGEST-MD5 puts in its digest-uri.
    """
    mech = mechanism.upper()
    if mech == "PLAIN":
        token = _b64("\0" + user + "\0" + password)
        return session.command(f"AUTH PLAIN {token}")
    if mech == "LOGIN":
        reply = session.command("AUTH LOGIN")
        if reply.code != 334:
            return reply
        reply = session.command(_b64(user))
        if reply.code != 334:
            return reply
        return session.command(_b64(password))
    if mech == "CRAM-MD5":
        reply = session.command("AUTH CRAM-MD5")
        if reply.code != 334:
            return reply
        challenge = _unb64(reply.lines[0])
        digest = hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()
        return session.command(_b64(f"{user} {digest}"))
    if mech == "DIGEST-MD5":
        reply = session.command("AUTH DIGEST-MD5")
        if reply.code != 334:
            return reply
        response = _digest_md5_response(_unb64(reply.lines[0]).decode(), user, password,
                                        server_name)
        reply = session.command(_b64(response))
        if reply.code == 334:  # rspauth: the server proves it knows the secret too
            reply = session.command("")
        return reply
    raise AuthProbeError(f"the probe does not speak {mechanism}; it knows {', '.join(MECHANISMS)}")


def _digest_md5_response(challenge: str, user: str, password: str, server_name: str,
                         cnonce: str | None = None, service: str = "smtp") -> str:
    fields = {key: quoted or bare for key, quoted, bare in
              re.findall(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^,]*))', challenge)}
    if "nonce" not in fields:
        raise AuthProbeError(f"DIGEST-MD5 challenge without a nonce: {challenge[:80]!r}")
    realm = fields.get("realm", "")
    nonce, nc, qop = fields["nonce"], "00000001", "auth"
    cnonce = cnonce or os.urandom(12).hex()
    digest_uri = f"{service}/{server_name}"
    a1 = hashlib.md5(f"{user}:{realm}:{password}".encode()).digest() + \
        f":{nonce}:{cnonce}".encode()
    a2 = f"AUTHENTICATE:{digest_uri}".encode()
    ha1, ha2 = hashlib.md5(a1).hexdigest(), hashlib.md5(a2).hexdigest()
    resp = hashlib.md5(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode()).hexdigest()
    return (f'charset=utf-8,username="{user}",realm="{realm}",nonce="{nonce}",nc={nc},'
            f'cnonce="{cnonce}",digest-uri="{digest_uri}",response={resp},qop={qop}')


@dataclass
class AuthReport:
    """AUTH as a client sees it: mechanisms in clear and under TLS, and login results."""
    before_tls: list[str]
    tls_offered: bool
    after_tls: list[str] | None = None
    logins: dict[str, Reply] = field(default_factory=dict)
    relay_after_login: Reply | None = None
    transcript: str = ""

    @property
    def plaintext_before_tls(self) -> list[str]:
        """Mechanisms that send the password itself, offered on an unencrypted session."""
        return [m for m in self.before_tls if m in ("PLAIN", "LOGIN")]

    def __str__(self) -> str:
        lines = [f"AUTH before STARTTLS: {' '.join(self.before_tls) or '(not offered)'}",
                 "STARTTLS: " + ("offered" if self.tls_offered else "not offered")]
        if self.after_tls is not None:
            lines.append(f"AUTH after STARTTLS: {' '.join(self.after_tls) or '(not offered)'}")
        for mech, reply in self.logins.items():
            lines.append(f"login with {mech}: {reply}")
        if self.relay_after_login is not None:
            lines.append(f"relaying after login: {self.relay_after_login}")
        return "\n".join(lines)
