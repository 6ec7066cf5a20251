"""Section 09, Postfix where strangers reach it: the backup MX (``mx2``), in the DMZ beside
the Sendmail relay and in the same position, probed from ``internet`` as the relay is.

Any configuration that gives the behaviour passes (a banner of the learner's own wording, a
header rule of their own, recipients listed in a table or looked up otherwise). Whether
smtpd is chrooted is seen on the host, in the root directory of the process serving the
probe's session. Guards keep mail for the organisation flowing through it.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

from labkit.checks.base import CannotObserve, Verdict, check, failed, passed
from labkit.checks.common import (
    dnsbl_listing,
    fqdn,
    local_user,
    org,
    outside,
    product_words,
    relay_matrix_verdict,
    rhsbl_listing,
)
from labkit.errors import HostProbeError
from labkit.probes.host import find_session

if TYPE_CHECKING:
    from labkit.lab import Lab
    from labkit.probes.smtp import Reply, SmtpSession

S = "09"
LESSON = "notebooks/09-postfix.ipynb"
#: The Postfix probed, and where from: the backup MX, from the outside world.
MX = "mx2"
VANTAGE = "internet"
HOSTS = (MX, VANTAGE)


def _session(lab: Lab, source: str | None = None) -> SmtpSession:
    """An SMTP session from the outside world to the backup MX."""
    return lab.smtp(VANTAGE, MX, source=source)


def _helo(lab: Lab) -> str:
    return fqdn(lab, VANTAGE)


def _sender_refused(s: SmtpSession, sender: str, rcpt: str) -> Reply:
    """MAIL FROM ``sender`` then (if accepted) RCPT ``rcpt``: the first refusal, or the
    RCPT's acceptance (Postfix judges the sender at RCPT by default, smtpd_delay_reject);
    the transaction is reset."""
    reply = s.mail(sender)
    if reply.positive:
        reply = s.rcpt(rcpt)
    s.rset()
    return reply


def _good_sender_accepted(lab: Lab, s: SmtpSession, rcpt: str) -> Reply:
    """A sender that every rule of the course accepts (someone of the outside world's real
    domain): if even it is refused, the probe cannot tell one rule from another."""
    sender = f"someone@{outside(lab)}"
    reply = _sender_refused(s, sender, rcpt)
    if not reply.positive:
        raise CannotObserve(f"the backup MX refuses even the ordinary sender {sender} from "
                            f"outside ({reply}): cannot tell which rule refuses what")
    return reply


@check("postfix.banner_anonymous", "The backup MX's greeting names no MTA product or version", S,
       hosts=HOSTS, hint="the 220 greeting is smtpd_banner (postconf -h smtpd_banner); "
                         "keep $myhostname, drop $mail_name and the distribution",
       lesson=f"{LESSON}#banner")
def banner_anonymous(lab: Lab) -> Verdict:
    with _session(lab) as s:
        greeting = s.greeting
    leaks = product_words(greeting.text)
    if leaks:
        return failed(f"the greeting gives away {', '.join(leaks)}: {greeting}", str(s.transcript))
    return passed(f"the greeting names no product or version: {greeting}", str(s.transcript))


@check("postfix.vrfy_disabled", "VRFY does not tell which addresses exist", S,
       hosts=HOSTS, hint="Postfix answers VRFY unless disable_vrfy_command is set "
                         "(postconf -h disable_vrfy_command)", lesson=f"{LESSON}#vrfy")
def vrfy_disabled(lab: Lab) -> Verdict:
    nobody = f"nosuch{uuid.uuid4().hex[:8]}"
    user = local_user(lab)
    # Local names of the host, and addresses of the organisation it relays for: VRFY
    # must tell neither which of them exist.
    groups = [(["root", user], nobody),
              ([f"postmaster@{org(lab)}", f"{user}@{org(lab)}"], f"{nobody}@{org(lab)}")]
    with _session(lab) as s:
        s.ehlo(_helo(lab))
        replies = {q: s.vrfy(q) for known, unknown in groups for q in [*known, unknown]}
    transcript = str(s.transcript)
    confirmed = [f"VRFY {q} -> {replies[q]}" for known, _ in groups for q in known
                 if replies[q].code in (250, 251)]
    if confirmed:
        return failed(f"VRFY confirms users: {confirmed[0]}", transcript)
    for known, unknown in groups:
        apart = [q for q in known if replies[q].code != replies[unknown].code]
        if apart:
            return failed(f"VRFY tells users apart: VRFY {apart[0]} -> {replies[apart[0]]}, "
                          f"VRFY {unknown} -> {replies[unknown]}", transcript)
    return passed(f"VRFY answers every name alike: {replies['root']}", transcript)


@check("postfix.helo_required", "The backup MX requires HELO/EHLO before MAIL", S, hosts=HOSTS,
       hint="without smtpd_helo_required Postfix takes MAIL FROM from a client that never "
            "said who it is", lesson=f"{LESSON}#helo")
def helo_required(lab: Lab) -> Verdict:
    with _session(lab) as s:
        reply = s.mail(f"probe@{outside(lab)}")
        s.rset()
    transcript = str(s.transcript)
    if reply.positive:
        return failed(f"MAIL FROM before any HELO/EHLO accepted: {reply}", transcript)
    if reply.code == 503 or re.search(r"\b(E?HELO|EHLO)\b", reply.text):
        return passed(f"MAIL FROM before HELO/EHLO refused: {reply}", transcript)
    raise CannotObserve(f"MAIL FROM before HELO/EHLO was refused, but not for want of a "
                        f"greeting: {reply}")


@check("postfix.non_fqdn_sender_refused", "A sender address without a full domain is refused",
       S, hosts=HOSTS, hint="smtpd_sender_restrictions decide which envelope senders the "
                            "backup MX takes; Postfix has a restriction for addresses that are "
                            "not in fully-qualified form", lesson=f"{LESSON}#sender")
def non_fqdn_sender_refused(lab: Lab) -> Verdict:
    rcpt = f"{local_user(lab)}@{org(lab)}"
    senders = [local_user(lab), f"{local_user(lab)}@{fqdn(lab, VANTAGE).split('.')[0]}"]
    with _session(lab) as s:
        s.ehlo(_helo(lab))
        _good_sender_accepted(lab, s, rcpt)
        replies = {sender: _sender_refused(s, sender, rcpt) for sender in senders}
    transcript = str(s.transcript)
    accepted = {sender: r for sender, r in replies.items() if r.positive}
    if accepted:
        return failed("accepted: " + "; ".join(f"<{a}> -> {r}" for a, r in accepted.items()),
                      transcript)
    return passed("refused: " + "; ".join(f"<{a}> -> {r}" for a, r in replies.items()), transcript)


#: A name under the lab's own outside zone that has no records: its look-up goes only to
#: the lab DNS, which answers NXDOMAIN.
NO_SUCH_DOMAIN = "nosuch"


@check("postfix.unknown_sender_domain_refused", "A sender in a domain that does not exist is "
       "refused", S, hosts=HOSTS,
       hint="a sender whose domain has neither MX nor A record cannot be answered; "
            "smtpd_sender_restrictions has a restriction that looks the domain up",
       lesson=f"{LESSON}#sender")
def unknown_sender_domain_refused(lab: Lab) -> Verdict:
    rcpt = f"{local_user(lab)}@{org(lab)}"
    sender = f"someone@{NO_SUCH_DOMAIN}.{outside(lab)}"
    with _session(lab) as s:
        s.ehlo(_helo(lab))
        _good_sender_accepted(lab, s, rcpt)
        reply = _sender_refused(s, sender, rcpt)
    transcript = str(s.transcript)
    if reply.positive:
        return failed(f"MAIL FROM:<{sender}> accepted: {reply}", transcript)
    if reply.enhanced in ("4.1.8", "5.1.8") or "Domain not found" in reply.text:
        return passed(f"<{sender}> refused: {reply}", transcript)
    if reply.enhanced == "4.3.0" or "lookup failure" in reply.text.lower():
        raise CannotObserve(f"the backup MX could not look the sender's domain up: {reply}")
    return failed(f"<{sender}> refused, but not because its domain does not exist: {reply}",
                  transcript, hint="the refusal should say the domain was not found "
                                   "(4.1.8 or 5.1.8), not name this one domain.")


SPAM_SUBJECT = "You won the lottery"


def _message(lab: Lab, subject: str) -> str:
    msgid = f"<labkit-{uuid.uuid4().hex[:16]}@{fqdn(lab, VANTAGE)}>"
    return (f"From: <someone@{outside(lab)}>\r\nTo: <{local_user(lab)}@{org(lab)}>\r\n"
            f"Subject: {subject}\r\nMessage-ID: {msgid}\r\n\r\nlabkit check: header_checks\r\n")


@check("postfix.header_checks_spam_subject", "A message whose Subject has the course's spam "
       "words is refused", S, hosts=HOSTS,
       hint="Postfix matches each header line against header_checks (a regexp or pcre "
            "table); a rule for the Subject: line can REJECT the message",
       lesson=f"{LESSON}#header-checks")
def header_checks_spam_subject(lab: Lab) -> Verdict:
    rcpt = f"{local_user(lab)}@{org(lab)}"
    ends = {}
    with _session(lab) as s:
        s.ehlo(_helo(lab))
        for subject in ("Minutes of the meeting", SPAM_SUBJECT):
            for reply in (s.mail(f"someone@{outside(lab)}"), s.rcpt(rcpt)):
                if not reply.positive:
                    raise CannotObserve(f"the backup MX refused the probe message before DATA: "
                                        f"{reply}")
            ends[subject] = s.data(_message(lab, subject))
    transcript = str(s.transcript)
    clean, spam = ends["Minutes of the meeting"], ends[SPAM_SUBJECT]
    if not clean.positive:
        return failed(f"an ordinary message is refused too: {clean}", transcript,
                      hint="the rule is too broad: only the spam words may be refused.")
    if spam.positive:
        return failed(f"'Subject: {SPAM_SUBJECT}' accepted: {spam}", transcript)
    return passed(f"'Subject: {SPAM_SUBJECT}' refused: {spam}; an ordinary one accepted",
                  transcript)


def _session_root(lab: Lab) -> tuple[str, str]:
    """The root directory of the process serving an SMTP session from outside on the backup
    MX (/proc/PID/root), and what was seen; HostProbeError when it cannot tell."""
    with _session(lab) as s:
        s.ehlo(_helo(lab))
        source = lab.engine.source_address(s.sock)
        peer, port = source if source else (str(lab.topology.address_for(VANTAGE, MX)), None)
        ss = lab.run(MX, ["ss", "-Htnp", "state", "established", "sport", "=", ":25"])
        found = find_session(ss.stdout, MX, 25, peer, port)
        if not found.pids:
            raise HostProbeError(f"on {MX}: ss does not name the process of {found}")
        pid = found.pids[0]
        root = lab.run(MX, ["readlink", f"/proc/{pid}/root"])
        ps = lab.run(MX, ["ps", "-o", "pid=,user=,args=", "-p", str(pid)])
    if not root.ok or not root.stdout.strip():
        raise HostProbeError(f"on {MX}: cannot read /proc/{pid}/root: {root.stderr.strip()}")
    path = root.stdout.strip()
    evidence = (f"session {found}\n{MX}# ps -o pid,user,args -p {pid}\n{ps.stdout.strip()}\n"
                f"{MX}# readlink /proc/{pid}/root\n{path}")
    return path, evidence


@check("postfix.smtpd_chrooted", "smtpd serves sessions inside a chroot jail", S, hosts=HOSTS,
       hint="each master.cf service has a chroot column (postconf -M, postconf -F "
            "'smtp/inet/chroot'); the jail is the queue directory",
       lesson=f"{LESSON}#chroot")
def smtpd_chrooted(lab: Lab) -> Verdict:
    try:
        root, evidence = _session_root(lab)
    except HostProbeError as exc:
        # The process cannot be seen (another engine, ss without -p): the effective
        # master.cf entry of the smtp listener tells instead.
        res = lab.run(MX, ["postconf", "-M", "smtp/inet"])
        fields = res.stdout.split()
        if not res.ok or len(fields) < 8:
            raise CannotObserve(f"neither the session's process ({exc}) nor postconf -M "
                                f"smtp/inet ({res.stderr.strip() or 'no entry'}) could be read") from exc
        evidence = f"({exc})\n{MX}# postconf -M smtp/inet\n{res.stdout.strip()}"
        if fields[4] == "y":
            return passed(f"master.cf: smtp/inet chroot = {fields[4]}", evidence)
        return failed(f"master.cf: smtp/inet chroot = {fields[4]}", evidence)
    if root == "/":
        return failed(f"the smtpd serving a session from {VANTAGE} runs in the real root (/)",
                      evidence)
    return passed(f"the smtpd serving a session from {VANTAGE} is jailed in {root}", evidence)


@check("postfix.starttls_verified", "The backup MX offers STARTTLS with a certificate the lab "
       "CA verifies", S, hosts=HOSTS,
       hint="STARTTLS needs smtpd_tls_security_level (may) and a certificate and key "
            "(smtpd_tls_cert_file, smtpd_tls_key_file) issued for the host's name by "
            "the lab CA", lesson=f"{LESSON}#tls")
def starttls_verified(lab: Lab) -> Verdict:
    report = lab.tls(VANTAGE, MX)
    name = fqdn(lab, MX)
    evidence = f"{report}\n{report.transcript}".strip()
    if not report.offered:
        if report.error:
            raise CannotObserve(f"could not ask {MX} for STARTTLS: {report.error}")
        return failed("EHLO does not offer STARTTLS", evidence)
    if not report.verified:
        return failed(f"the certificate does not verify for {name}: {report.verify_error}",
                      evidence)
    return passed(f"STARTTLS ({report.version}), certificate for {name} verified by the lab CA",
                  evidence)


@check("postfix.closed_from_outside", "No relay trick works on the backup MX from outside", S,
       hosts=(MX, VANTAGE),
       hint="Postfix relays for the clients of mynetworks (permit_mynetworks in "
            "smtpd_relay_restrictions) and for the domains of relay_domains: mynetworks must "
            "not cover the outside network (postconf -h mynetworks)",
       lesson=f"{LESSON}#relay")
def closed_from_outside(lab: Lab) -> Verdict:
    return relay_matrix_verdict(lab.relay_matrix(VANTAGE, MX, wait=8.0))


@check("postfix.unknown_recipient_refused", "Unknown addresses of the organisation are refused "
       "at RCPT", S, hosts=HOSTS,
       hint="a backup MX that takes mail for every address of relay_domains accepts what the "
            "server will bounce later, to forged senders (backscatter): relay_recipient_maps "
            "lists the addresses it may take",
       lesson=f"{LESSON}#recipients")
def unknown_recipient_refused(lab: Lab) -> Verdict:
    nobody = f"nosuch{uuid.uuid4().hex[:8]}@{org(lab)}"
    known = f"{local_user(lab)}@{org(lab)}"
    with _session(lab) as s:
        s.ehlo(_helo(lab))
        good = _good_sender_accepted(lab, s, known)
        reply = _sender_refused(s, f"someone@{outside(lab)}", nobody)
    transcript = str(s.transcript)
    if reply.positive:
        return failed(f"RCPT TO:<{nobody}> accepted: {reply}", transcript)
    if reply.code >= 500:
        return passed(f"<{nobody}> refused: {reply}; <{known}> accepted: {good}", transcript)
    return failed(f"<{nobody}> only deferred: {reply}", transcript,
                  hint="a temporary refusal makes the sender retry: refuse unknown addresses "
                       "for good (5xx).")


@check("postfix.dnsbl_listed_client_refused", "A client the DNSBL lists is refused",
       S, hosts=HOSTS,
       hint="Postfix asks a DNSBL for reject_rbl_client ZONE (smtpd_client_restrictions, or "
            "in smtpd_recipient_restrictions after the permits that must come first)",
       lesson=f"{LESSON}#dnsbl")
def dnsbl_listed_client_refused(lab: Lab) -> Verdict:
    listed = str(lab.topology.listed_client(VANTAGE).address)
    answer = dnsbl_listing(lab, MX, listed)
    if not answer:
        raise CannotObserve(f"the lab DNSBL does not list {listed} (it should, from "
                            f"provisioning): nothing can be said of {MX}")
    with _session(lab, source=listed) as s:
        s.ehlo(_helo(lab))
        reply = _sender_refused(s, f"someone@{outside(lab)}", f"{local_user(lab)}@{org(lab)}")
    evidence = f"DNSBL: {answer}\n{s.transcript}"
    if reply.code >= 500:
        return passed(f"mail from listed {listed} refused: {reply}", evidence)
    if reply.positive:
        return failed(f"mail from {listed}, listed in the DNSBL, accepted: {reply}", evidence)
    return failed(f"mail from listed {listed} only deferred: {reply}", evidence)


@check("postfix.rhsbl_sender_refused", "A sender whose domain the RHSBL lists is refused", S,
       hosts=HOSTS,
       hint="Postfix asks a domain list for reject_rhsbl_sender ZONE (the lab's RHSBL zone "
            "is in labkit/topology.yaml, dnsbl: domain_zone)", lesson=f"{LESSON}#rhsbl")
def rhsbl_sender_refused(lab: Lab) -> Verdict:
    domain = next(d for d in lab.topology.dnsbl["listed_domains"] if "." in d)
    answer = rhsbl_listing(lab, MX, domain)
    if not answer:
        raise CannotObserve(f"the lab RHSBL does not list {domain} (it should, from "
                            f"provisioning): nothing can be said of {MX}")
    rcpt = f"{local_user(lab)}@{org(lab)}"
    with _session(lab) as s:
        s.ehlo(_helo(lab))
        _good_sender_accepted(lab, s, rcpt)
        reply = _sender_refused(s, f"someone@{domain}", rcpt)
    evidence = f"RHSBL: {answer}\n{s.transcript}"
    if reply.positive:
        return failed(f"mail from someone@{domain}, a listed domain, accepted: {reply}", evidence)
    if reply.code >= 500 and (reply.enhanced or "").startswith("5.7."):
        return passed(f"MAIL FROM someone@{domain} refused: {reply}", evidence)
    return failed(f"refused, but not as a listed sender (5.7.x): {reply}", evidence)


@check("postfix.org_mail_delivered", "Mail from outside for the organisation still reaches "
       "its users through the backup MX", S, hosts=(VANTAGE, MX, "server"),
       hint="restrictions that refuse strangers must still take the organisation's mail: "
            "relay_domains names the organisation's domain, relay_recipient_maps its real "
            "addresses, and the transport sends it to the internal server",
       lesson=f"{LESSON}#relay", guard=True)
def org_mail_delivered(lab: Lab) -> Verdict:
    rcpt = f"{local_user(lab)}@{org(lab)}"
    fate = lab.send(VANTAGE, rcpt, target=MX, subject="labkit check: mail through the backup MX")
    evidence = f"{fate}\n{fate.transcript}".strip()
    if fate.status == "refused" and fate.reply is None:
        raise CannotObserve(f"could not send from {VANTAGE} to {MX}: {fate.where}")
    if fate.status == "delivered":
        return passed(f"a message for {rcpt} through {MX} was delivered ({fate.where})",
                      evidence)
    if fate.status in ("refused", "bounced"):
        return failed(f"mail for {rcpt} does not get through {MX}: {fate.reply or fate.bounce}",
                      evidence)
    raise CannotObserve(f"the message for {rcpt} was neither refused nor delivered: {fate}")
