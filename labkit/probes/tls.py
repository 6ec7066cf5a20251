"""STARTTLS inspection: is TLS offered, what is negotiated, which certificate, does it verify.

:func:`inspect_starttls` makes two sessions: one that accepts any certificate, to report
what the server presents (protocol, cipher, subject, issuer, SANs, validity), and one
that requires a certificate chaining to the lab CA and naming the host, to report
whether a careful client would accept it, and why not.
"""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from labkit.probes.smtp import SmtpError, SmtpSession, SmtpTlsError


@dataclass(frozen=True)
class CertInfo:
    subject: str
    issuer: str
    common_name: str
    sans: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    self_signed: bool

    @property
    def expired(self) -> bool:
        return self.not_after < datetime.datetime.now(datetime.UTC)

    @classmethod
    def from_der(cls, der: bytes) -> CertInfo:
        cert = x509.load_der_x509_certificate(der)
        try:
            san_ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            sans = tuple(str(v) for v in san_ext.value.get_values_for_type(x509.DNSName)) + \
                tuple(str(v) for v in san_ext.value.get_values_for_type(x509.IPAddress))
        except x509.ExtensionNotFound:
            sans = ()
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return cls(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(),
                   str(cns[0].value) if cns else "", sans,
                   cert.not_valid_before_utc, cert.not_valid_after_utc,
                   cert.subject == cert.issuer)


@dataclass
class TlsReport:
    offered: bool
    version: str = ""
    cipher: str = ""
    cert: CertInfo | None = None
    verified: bool | None = None  # None when STARTTLS is not offered
    verify_error: str = ""
    error: str = ""
    transcript: str = ""
    mode: str = "STARTTLS"  # or "SMTPS": TLS from the first byte (port 465)

    def __str__(self) -> str:
        if not self.offered:
            return f"{self.mode} not offered" + (f" ({self.error})" if self.error else "")
        lines = [f"{self.mode}: {self.version}, {self.cipher}"]
        if self.cert:
            c = self.cert
            lines += [f"  subject {c.subject}", f"  issuer  {c.issuer}",
                      f"  names   {', '.join(c.sans) or '(none)'}",
                      f"  valid   {c.not_before:%Y-%m-%d} to {c.not_after:%Y-%m-%d}"]
        lines.append("  verifies against the lab CA" if self.verified
                     else f"  does NOT verify: {self.verify_error}")
        return "\n".join(lines)


def _client_context(ca_pem: str | None, client: tuple[str, str] | None,
                    verify: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(cadata=ca_pem)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client:
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
            with open(cert, "w") as f:
                f.write(client[0])
            fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(client[1])
            ctx.load_cert_chain(cert, key)
    return ctx


def start_tls(session: SmtpSession, hostname: str, ca_pem: str | None = None,
              client: tuple[str, str] | None = None, helo: str = "probe.example.net") -> SmtpSession:
    """EHLO, STARTTLS and EHLO again on ``session``, which then speaks over TLS.

    ``ca_pem`` given: the server's certificate must verify against it and name
    ``hostname``. ``client``: a (certificate, key) pair to present. Raises SmtpTlsError
    when STARTTLS is not offered or refused, or the handshake fails.
    """
    session.ehlo(helo)
    if "STARTTLS" not in session.capabilities:
        raise SmtpTlsError("STARTTLS is not offered", session.transcript)
    reply = session.starttls(_client_context(ca_pem, client, verify=ca_pem is not None),
                             server_hostname=hostname)
    if reply.code != 220:
        raise SmtpTlsError(f"STARTTLS refused: {reply}", session.transcript)
    session.ehlo(helo)
    return session


def inspect_starttls(open_session: Callable[[], SmtpSession], hostname: str,
                     ca_pem: str | None, client: tuple[str, str] | None = None,
                     helo: str = "probe.example.net") -> TlsReport:
    """What STARTTLS on the server that ``open_session()`` reaches looks like.

    ``hostname`` is the name a client expects in the certificate; ``ca_pem`` the CA it
    trusts; ``client`` an optional (certificate, key) pair to present.
    """
    try:
        with open_session() as s:
            s.ehlo(helo)
            if "STARTTLS" not in s.capabilities:
                return TlsReport(False, transcript=str(s.transcript))
            try:
                s.starttls(_client_context(None, client, verify=False), server_hostname=hostname)
            except SmtpTlsError as exc:
                return TlsReport(True, error=str(exc), verified=False,
                                 verify_error=str(exc), transcript=str(s.transcript))
            der = s.sock.getpeercert(binary_form=True)
            report = TlsReport(True, str(s.tls["version"]), str(s.tls["cipher"]),
                               CertInfo.from_der(der) if der else None)
            s.ehlo(helo)  # the session goes on over TLS
            report.transcript = str(s.transcript)
    except (SmtpError, OSError) as exc:
        return TlsReport(False, error=f"{type(exc).__name__}: {exc}")
    def verified_session() -> None:
        with open_session() as s:
            s.ehlo(helo)
            s.starttls(_client_context(ca_pem, client, verify=True), server_hostname=hostname)
    return _verify(report, ca_pem, verified_session)


def _verify(report: TlsReport, ca_pem: str | None, verified_session: Callable[[], None]
            ) -> TlsReport:
    """``report`` with its verdict: does ``verified_session()`` (a session that requires a
    certificate chaining to ``ca_pem`` and naming the host) succeed?"""
    if ca_pem is None:
        report.verify_error = "no CA given to verify against"
        report.verified = False
        return report
    try:
        verified_session()
        report.verified = True
    except SmtpTlsError as exc:
        cause = exc.__cause__
        report.verified = False
        report.verify_error = getattr(cause, "verify_message", "") or str(cause or exc)
    return report


def smtps_session(open_socket: Callable[[], object], hostname: str, ca_pem: str | None = None,
                  client: tuple[str, str] | None = None, timeout: float = 10.0,
                  peer: str = "") -> SmtpSession:
    """An SMTP session over implicit TLS (SMTPS, port 465, RFC 8314): the handshake comes
    first, then the greeting. ``ca_pem`` given: the certificate must verify against it
    and name ``hostname``. Raises SmtpTlsError when the handshake fails."""
    sock = open_socket()
    context = _client_context(ca_pem, client, verify=ca_pem is not None)
    try:
        sock.settimeout(timeout)  # type: ignore[attr-defined]
        wrapped = context.wrap_socket(sock, server_hostname=hostname)  # type: ignore[arg-type]
    except (ssl.SSLError, OSError) as exc:
        sock.close()  # type: ignore[attr-defined]
        raise SmtpTlsError(f"TLS handshake on connecting failed: {exc}") from exc
    session = SmtpSession(wrapped, timeout=timeout, peer=peer)
    session.tls = {"version": wrapped.version(), "cipher": wrapped.cipher()[0]}
    session.transcript.add("*", f"TLS from the first byte: {session.tls['version']}, "
                                f"{session.tls['cipher']}")
    return session


def inspect_smtps(open_socket: Callable[[], object], hostname: str, ca_pem: str | None,
                  helo: str = "probe.example.net") -> TlsReport:
    """What SMTPS on the server that ``open_socket()`` reaches looks like: like
    :func:`inspect_starttls`, with ``offered`` meaning "a TLS handshake and an SMTP
    greeting on connecting"."""
    try:
        with smtps_session(open_socket, hostname) as s:
            der = s.sock.getpeercert(binary_form=True)
            report = TlsReport(True, str(s.tls["version"]), str(s.tls["cipher"]),
                               CertInfo.from_der(der) if der else None)
            s.ehlo(helo)
            report.transcript = str(s.transcript)
    except (SmtpError, OSError) as exc:
        return TlsReport(False, error=f"{type(exc).__name__}: {exc}", mode="SMTPS")
    report.mode = "SMTPS"

    def verified_session() -> None:
        with smtps_session(open_socket, hostname, ca_pem):
            pass
    return _verify(report, ca_pem, verified_session)
