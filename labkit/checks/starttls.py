"""Section 07, STARTTLS on the relay: offered, with a certificate a careful client
accepts, a private key, TLS recorded in Received:, relaying for clients that present a
lab-CA certificate, SMTPS on port 465, and mail handed to the internal server only when its
certificate verifies (shown with a stand-in server whose certificate does not).

Probed from ``internet`` against the relay's Sendmail. Only the key's protection is read
from the host: which key Sendmail uses is in the effective sendmail.cf (ServerKeyFile),
and no SMTP client can see a file mode.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import TYPE_CHECKING

from labkit import pki
from labkit.checks.base import CannotObserve, Verdict, check, failed, passed
from labkit.checks.common import (
    delivered,
    fqdn,
    header_fields,
    local_user,
    org,
    outside,
    relay_answers,
)
from labkit.probes.mailflow import MessageFate, send_and_follow
from labkit.probes.smtp import SmtpSession, SmtpTlsError
from labkit.probes.tls import start_tls

if TYPE_CHECKING:
    from labkit.lab import Lab

S = "07"
LESSON = "notebooks/07-starttls.ipynb"
CF = "/etc/mail/sendmail.cf"
#: What Sendmail's Received: header shows of a TLS session: "(version=TLSv1.3 cipher=...".
_TLS_IN_RECEIVED = re.compile(r"version=(TLS|SSL)\S*.*cipher=\S+", re.I)


def _tls_session(lab: Lab, vantage: str = "internet", client: str | None = None) -> SmtpSession:
    """A session from ``vantage`` to the relay, switched to TLS without verifying the
    relay's certificate (what is checked here is not the certificate), presenting the lab
    certificate of host ``client`` if given."""
    pair = None
    if client:
        issued = pki.issue_for_host(pki.LabCA(), lab.topology.host(client))
        pair = (issued.cert_pem, issued.key_pem)
    s = lab.smtp(vantage, "relay")
    try:
        return start_tls(s, fqdn(lab, "relay"), None, pair, helo=fqdn(lab, vantage))
    except BaseException:
        s.close()
        raise


def _send_over_tls(lab: Lab, rcpt: str, subject: str, client: str | None = None) -> MessageFate:
    """Send a message from internet to the relay over TLS and follow it."""
    return send_and_follow(lab.engine, lambda: _tls_session(lab, client=client),
                           lambda: [(m.mail_from, m.data) for m in lab.sink_messages()],
                           f"internet-user@{outside(lab)}", rcpt, subject,
                           helo=fqdn(lab, "internet"))


@check("tls.offered", "STARTTLS is offered to outside clients", S, hosts=("relay", "internet"),
       hint="Sendmail offers STARTTLS only when it has a certificate and its key: "
            "confSERVER_CERT and confSERVER_KEY in sendmail.mc (with confCACERT and "
            "confCACERT_PATH); the journal says why it cannot use them",
       lesson=f"{LESSON}#offered")
def offered(lab: Lab) -> Verdict:
    report = lab.tls("internet", "relay")
    if report.error and not report.transcript:
        raise CannotObserve(f"no session with the relay from internet: {report.error}")
    if not report.offered:
        return failed("EHLO from internet does not offer STARTTLS", report.transcript)
    if not report.version:
        return failed(f"STARTTLS is offered but the handshake fails: {report.error}",
                      report.transcript)
    return passed(f"STARTTLS offered: {report.version}, {report.cipher}", report.transcript)


@check("tls.certificate_verified", "The certificate names the relay and verifies against the lab CA",
       S, hosts=("relay", "internet"),
       hint="a careful client checks the certificate chain and the name: the relay needs a "
            "certificate from the lab CA (labkit/pki.py) naming its FQDN, set with "
            "confSERVER_CERT, and the CA with confCACERT", lesson=f"{LESSON}#certificate")
def certificate_verified(lab: Lab) -> Verdict:
    report = lab.tls("internet", "relay")
    if report.error and not report.transcript:
        raise CannotObserve(f"no session with the relay from internet: {report.error}")
    evidence = f"{report}\n{report.transcript}"
    if not report.offered:
        return failed("STARTTLS is not offered: there is no certificate to verify", evidence)
    cert = report.cert
    if cert is None:
        return failed(f"the relay presents no certificate ({report.error or report.verify_error})",
                      evidence)
    names = ", ".join(cert.sans) or cert.common_name
    if not report.verified:
        return failed(f"the certificate ({names}; issuer {cert.issuer}) does not verify for "
                      f"{fqdn(lab, 'relay')}: {report.verify_error}", evidence)
    return passed(f"verified for {fqdn(lab, 'relay')}: names {names}; issuer {cert.issuer}",
                  evidence)


def _key_lines(lab: Lab) -> list[str]:
    """The ``O ServerKeyFile=`` and ``O ClientKeyFile=`` lines of the effective sendmail.cf."""
    res = lab.run("relay", ["grep", "-E", "^O (Server|Client)KeyFile=", CF])
    if res.returncode > 1:
        raise CannotObserve(f"cannot read {CF} on the relay: {res.stderr.strip()[:200]}")
    return [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]


@check("tls.key_private", "The relay's TLS private key is readable by its owner only", S,
       hint="the key named by confSERVER_KEY (ServerKeyFile in sendmail.cf) must not be "
            "readable or writable by its group or by others: look at its mode",
       lesson=f"{LESSON}#key")
def key_private(lab: Lab) -> Verdict:
    lines = _key_lines(lab)
    shown = f"relay# grep -E '^O (Server|Client)KeyFile=' {CF}\n" + ("\n".join(lines) or "(nothing)")
    if not any(ln.startswith("O ServerKeyFile=") for ln in lines):
        return failed(f"{CF} names no ServerKeyFile: Sendmail has no TLS key", shown)
    keys = list(dict.fromkeys(ln.split("=", 1)[1].strip() for ln in lines))
    listings, loose, missing = [], [], []
    for key in keys:
        res = lab.run("relay", ["stat", "-L", "-c", "%a %U:%G %n", "--", key])
        if not res.ok:
            missing.append(key)
            listings.append(f"{key}: {res.stderr.strip()}")
            continue
        listings.append(res.stdout.strip())
        mode = int(res.stdout.split()[0], 8)
        if mode & 0o066:
            loose.append(f"{key} is {mode:04o} ({res.stdout.split()[1]})")
    evidence = f"{shown}\nrelay# stat -L -c '%a %U:%G %n' {' '.join(keys)}\n" + "\n".join(listings)
    if missing:
        return failed(f"the key named in sendmail.cf is not there: {', '.join(missing)}", evidence)
    if loose:
        return failed(f"group or others have access: {'; '.join(loose)}", evidence)
    return passed(f"owner only: {'; '.join(listings)}", evidence)


@check("tls.received_shows_tls", "A message received over TLS says so in its Received: header",
       S, hosts=("relay", "internet", "server"),
       hint="Sendmail writes the TLS version and cipher of the session into the Received: "
            "header it adds (the ${tls_version} part of confRECEIVED_HEADER): a learner who "
            "rewrites that header must keep it", lesson=f"{LESSON}#received")
def received_shows_tls(lab: Lab) -> Verdict:
    rcpt = f"{local_user(lab)}@{org(lab)}"
    try:
        with _tls_session(lab):
            pass
    except SmtpTlsError as exc:
        return failed(f"no TLS session with the relay from internet: {exc}",
                      str(exc.transcript or ""))
    fate = delivered(_send_over_tls(lab, rcpt, "labkit check: Received header over TLS"),
                     "Received: header over TLS")
    relay = fqdn(lab, "relay")
    ours = [r for r in header_fields(fate.message, "Received") if f"by {relay}" in r]
    if not ours:
        raise CannotObserve(f"no Received: header 'by {relay}' in the delivered message")
    evidence = f"{fate}\n" + "\n".join(f"Received: {r}" for r in ours)
    shown = [m.group(0) for r in ours if (m := _TLS_IN_RECEIVED.search(r))]
    if shown:
        return passed(f"the relay's Received: header shows {shown[0]}", evidence)
    return failed("a message received over TLS has no TLS version or cipher in the relay's "
                  "Received: header", evidence)


@check("tls.certificate_relay", "From outside, a lab-CA client certificate allows relaying, "
       "no certificate does not", S, hosts=("relay", "internet"),
       hint="Sendmail lets a client relay when it verified the client's certificate and the "
            "access map has a CERTISSUER: (or CERTSUBJECT:) entry with RELAY for it; the "
            "relay must ask for and verify client certificates (confCACERT, confCACERT_PATH)",
       lesson=f"{LESSON}#certrelay")
def certificate_relay(lab: Lab) -> Verdict:
    victim = f"someone@{outside(lab)}"
    sender = f"internet-user@{outside(lab)}"
    try:
        with _tls_session(lab) as s:
            s.mail(sender)
            without = s.rcpt(victim)
            s.rset()
    except SmtpTlsError as exc:
        return failed(f"no TLS session, so no client can present a certificate: {exc}",
                      str(exc.transcript or ""))
    plain = str(s.transcript)
    if without.positive:
        return failed(f"a client WITHOUT a certificate may relay over TLS: RCPT {victim} -> "
                      f"{without}", plain)
    fate = _send_over_tls(lab, victim, "labkit check: relaying with a client certificate",
                          client="internet")
    evidence = (f"without a certificate:\n{plain}\n---\nwith internet's lab-CA certificate: "
                f"{fate}\n{fate.transcript}")
    if fate.status == "at-sink":
        return passed(f"without a certificate RCPT {victim} -> {without}; with a lab-CA "
                      "certificate the message reached the outside", evidence)
    if fate.status == "refused" and fate.reply is None:
        raise CannotObserve(f"no TLS session with a client certificate: {fate.where}")
    if fate.status in ("refused", "bounced"):
        return failed(f"a client with a lab-CA certificate may not relay either: "
                      f"{fate.reply or fate.bounce}", evidence)
    raise CannotObserve(f"the message sent with a certificate was neither refused nor at the "
                        f"outside sink: {fate}")


@check("tls.smtps", "SMTPS on port 465 beside STARTTLS, with the relay's verified certificate", S,
       hosts=("relay", "internet"),
       hint="clients that speak TLS from the first byte (RFC 8314) connect to port 465: "
            "sendmail.mc needs a second DAEMON_OPTIONS line for Port=smtps whose M= modifier "
            "starts TLS on connecting; it serves the certificate STARTTLS uses "
            "(confSERVER_CERT)",
       lesson=f"{LESSON}#smtps")
def smtps(lab: Lab) -> Verdict:
    report = lab.tls("internet", "relay", 465)
    if not report.offered:
        relay_answers(lab)
        return failed(f"nothing speaks SMTPS on port 465 of the relay: {report.error}",
                      str(report))
    evidence = f"{report}\n{report.transcript}"
    if not report.verified:
        return failed(f"port 465 speaks TLS, but its certificate does not verify for "
                      f"{fqdn(lab, 'relay')}: {report.verify_error}", evidence)
    return passed(f"port 465: {report.version} from the first byte, then the SMTP greeting; "
                  f"certificate verified for {fqdn(lab, 'relay')}", evidence)


#: Sendmail's "250 2.0.0 6AU2KlLG000176 Message accepted for delivery".
_QUEUE_ID = re.compile(r"\b([0-9A-Za-z]{14,16})\b")


def _hand_in(lab: Lab, rcpt: str, subject: str) -> tuple[str, str, str]:
    """Hand a message for ``rcpt`` to the relay from internet; (message-id, queue id,
    transcript). CannotObserve if the relay does not take it."""
    msgid = f"<labkit-{uuid.uuid4().hex[:16]}@{fqdn(lab, 'internet')}>"
    sender = f"internet-user@{outside(lab)}"
    with lab.smtp("internet", "relay") as s:
        s.ehlo(fqdn(lab, "internet"))
        replies = [s.mail(sender), s.rcpt(rcpt)]
        if all(r.positive for r in replies):
            replies.append(s.data(f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {subject}\r\n"
                                  f"Message-ID: {msgid}\r\n\r\nA probe of the relay's TLS "
                                  "policy.\r\n"))
    transcript = str(s.transcript)
    if not all(r.positive for r in replies):
        raise CannotObserve(f"the relay does not take mail for {rcpt} from internet: "
                            f"{replies[-1]}")
    m = _QUEUE_ID.search(replies[-1].text)
    return msgid, (m.group(1) if m else ""), transcript


@check("tls.relay_verifies_server", "The relay hands mail to the internal server only over TLS "
       "with a certificate it verified", S, hosts=("relay", "server", "internet"), exclusive=True,
       hint="an entry TLS_Srv:server.example.com VERIFY in the relay's access map (cf/README, "
            "'TLS_Srv') makes Sendmail verify the server's certificate against confCACERT "
            "before it hands mail on; the server then needs a certificate from the lab CA "
            "(smtpd_tls_cert_file and smtpd_tls_key_file in its main.cf), or mail for it waits "
            "in the relay's queue", lesson=f"{LESSON}#policy")
def relay_verifies_server(lab: Lab) -> Verdict:
    rcpt = f"{local_user(lab)}@{org(lab)}"
    genuine = lab.send("internet", rcpt, subject="labkit check: to the server over TLS", wait=15)
    if genuine.status == "refused":
        raise CannotObserve(f"the relay does not take mail for {rcpt} from internet: {genuine}")
    if genuine.status != "delivered":
        return failed(f"mail from outside for {rcpt} does not reach the internal server: "
                      f"{genuine}", genuine.transcript)
    qid = ""
    try:
        with lab.impostor_server() as impostor:
            mark = lab.log_mark("relay")
            msgid, qid, transcript = _hand_in(lab, rcpt, "labkit check: to a stand-in server")
            deadline = time.monotonic() + 15
            nudged = False
            while True:
                seen = impostor.events()
                lines = lab.logs_since("relay", mark)
                taken = [e for e in seen if e["event"] == "message" and msgid in e["data"]]
                held = [ln for ln in lines if qid and qid in ln and "stat=Deferred" in ln]
                if taken or held:
                    if held and not taken:
                        # Read again: the stand-in's events were read before the journal,
                        # and the relay may have met it and given up in between.
                        seen = impostor.events()
                    break
                if time.monotonic() > deadline:
                    raise CannotObserve(f"the message for {rcpt} ({qid or 'no queue id'}) was "
                                        "neither handed to the stand-in server nor held by "
                                        "the relay within 15 s")
                if qid and not nudged and time.monotonic() > deadline - 10:
                    lab.run("relay", ["sendmail", f"-qI{qid}"])  # a relay that only queues
                    nudged = True
                time.sleep(0.3)
    finally:
        if qid:
            lab.run("relay", ["sh", "-c", f"rm -f /var/spool/mqueue/[qdxtQ]f{qid}"])
    events = "\n".join(f"stand-in: {e['event']} from {e['peer']}"
                        f"{' over TLS' if e['tls'] else ''}" for e in seen)
    tls_lines = [ln for ln in lines if "tls_" in ln or "STARTTLS" in ln or (qid and qid in ln)]
    evidence = (f"genuine server: {genuine}\n---\n{transcript}\n{events}\n"
                + "\n".join(tls_lines))
    name = fqdn(lab, "server")
    if taken:
        how = "over TLS" if taken[0]["tls"] else "without TLS"
        return failed(f"the relay handed a message for {rcpt} ({how}) to a stand-in for {name} "
                      "whose certificate the lab CA did not sign (self-signed)", evidence)
    if not any(e["event"] == "ehlo" for e in seen):
        # Held without meeting the stand-in (no route, a refused connection): that says
        # nothing about certificates.
        raise CannotObserve(f"the relay held the message for {rcpt} without reaching the "
                            f"stand-in server: {held[0].split('stat=', 1)[-1]}")
    return passed(f"mail for {rcpt} reached {name}; a stand-in with a self-signed certificate "
                  f"got none: the relay held it ({held[0].split('stat=', 1)[-1]})", evidence)
