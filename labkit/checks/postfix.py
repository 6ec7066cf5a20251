"""Section 09, Postfix: the internal server, as the LAN sees it.

The server is on the inside network only, so every SMTP probe runs from ``client``. Any
configuration that gives the behaviour passes (a banner of the learner's own wording, a
header rule of their own). Two controls cannot be seen by a probe from the LAN: whether
smtpd is chrooted is seen on the server, in the root directory of the process serving a
session; which networks Postfix trusts is read from the effective ``mynetworks``, since
no outside host reaches the server to show it. A guard keeps mail from the LAN flowing.
"""

from __future__ import annotations

import ipaddress
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
    rhsbl_listing,
)
from labkit.errors import HostProbeError
from labkit.probes.host import find_session

if TYPE_CHECKING:
    from labkit.lab import Lab
    from labkit.probes.smtp import Reply, SmtpSession

S = "09"
LESSON = "notebooks/09-postfix.ipynb"
HOSTS = ("server", "client")


def _session(lab: Lab) -> SmtpSession:
    """An SMTP session from the LAN workstation to the server."""
    return lab.smtp("client", "server")


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
    """A sender that every rule of the course accepts (a local user of the organisation's
    domain): if even it is refused, the probe cannot tell one rule from another."""
    sender = f"{local_user(lab)}@{org(lab)}"
    reply = _sender_refused(s, sender, rcpt)
    if not reply.positive:
        raise CannotObserve(f"the server refuses even the ordinary sender {sender} from the "
                            f"LAN ({reply}): cannot tell which rule refuses what")
    return reply


@check("postfix.banner_anonymous", "The server's greeting names no MTA product or version", S,
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


@check("postfix.vrfy_disabled", "VRFY does not tell which users exist on the server", S,
       hosts=HOSTS, hint="Postfix answers VRFY unless disable_vrfy_command is set "
                         "(postconf -h disable_vrfy_command)", lesson=f"{LESSON}#vrfy")
def vrfy_disabled(lab: Lab) -> Verdict:
    nobody = f"nosuch{uuid.uuid4().hex[:8]}"
    with _session(lab) as s:
        s.ehlo(fqdn(lab, "client"))
        known = [s.vrfy("root"), s.vrfy(local_user(lab))]
        unknown = s.vrfy(nobody)
    transcript = str(s.transcript)
    confirmed = [r for r in known if r.code in (250, 251)]
    if confirmed:
        return failed(f"VRFY confirms users: {confirmed[0]}", transcript)
    told_apart = [r for r in known if r.code != unknown.code]
    if told_apart:
        return failed(f"VRFY tells users apart: VRFY root -> {known[0]}, VRFY {nobody} -> "
                      f"{unknown}", transcript)
    return passed(f"VRFY answers every name alike: {known[0]}", transcript)


@check("postfix.helo_required", "The server requires HELO/EHLO before MAIL", S, hosts=HOSTS,
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
                            "server takes; Postfix has a restriction for addresses that are "
                            "not in fully-qualified form", lesson=f"{LESSON}#sender")
def non_fqdn_sender_refused(lab: Lab) -> Verdict:
    rcpt = f"{local_user(lab)}@{org(lab)}"
    senders = [local_user(lab), f"{local_user(lab)}@{fqdn(lab, 'client').split('.')[0]}"]
    with _session(lab) as s:
        s.ehlo(fqdn(lab, "client"))
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
        s.ehlo(fqdn(lab, "client"))
        _good_sender_accepted(lab, s, rcpt)
        reply = _sender_refused(s, sender, rcpt)
    transcript = str(s.transcript)
    if reply.positive:
        return failed(f"MAIL FROM:<{sender}> accepted: {reply}", transcript)
    if reply.enhanced in ("4.1.8", "5.1.8") or "Domain not found" in reply.text:
        return passed(f"<{sender}> refused: {reply}", transcript)
    if reply.enhanced == "4.3.0" or "lookup failure" in reply.text.lower():
        raise CannotObserve(f"the server could not look the sender's domain up: {reply}")
    return failed(f"<{sender}> refused, but not because its domain does not exist: {reply}",
                  transcript, hint="the refusal should say the domain was not found "
                                   "(4.1.8 or 5.1.8), not name this one domain.")


SPAM_SUBJECT = "You won the lottery"


def _message(lab: Lab, subject: str) -> str:
    msgid = f"<labkit-{uuid.uuid4().hex[:16]}@{fqdn(lab, 'client')}>"
    return (f"From: <client-user@{org(lab)}>\r\nTo: <{local_user(lab)}@{org(lab)}>\r\n"
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
        s.ehlo(fqdn(lab, "client"))
        for subject in ("Minutes of the meeting", SPAM_SUBJECT):
            for reply in (s.mail(f"client-user@{org(lab)}"), s.rcpt(rcpt)):
                if not reply.positive:
                    raise CannotObserve(f"the server refused the probe message before DATA: "
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
    """The root directory of the process serving an SMTP session from client on the
    server (/proc/PID/root), and what was seen; HostProbeError when it cannot tell."""
    with _session(lab) as s:
        s.ehlo(fqdn(lab, "client"))
        source = lab.engine.source_address(s.sock)
        peer, port = source if source else (str(lab.topology.address_for("client", "server")),
                                            None)
        ss = lab.run("server", ["ss", "-Htnp", "state", "established", "sport", "=", ":25"])
        found = find_session(ss.stdout, "server", 25, peer, port)
        if not found.pids:
            raise HostProbeError(f"on server: ss does not name the process of {found}")
        pid = found.pids[0]
        root = lab.run("server", ["readlink", f"/proc/{pid}/root"])
        ps = lab.run("server", ["ps", "-o", "pid=,user=,args=", "-p", str(pid)])
    if not root.ok or not root.stdout.strip():
        raise HostProbeError(f"on server: cannot read /proc/{pid}/root: {root.stderr.strip()}")
    path = root.stdout.strip()
    evidence = (f"session {found}\nserver# ps -o pid,user,args -p {pid}\n{ps.stdout.strip()}\n"
                f"server# readlink /proc/{pid}/root\n{path}")
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
        res = lab.run("server", ["postconf", "-M", "smtp/inet"])
        fields = res.stdout.split()
        if not res.ok or len(fields) < 8:
            raise CannotObserve(f"neither the session's process ({exc}) nor postconf -M "
                                f"smtp/inet ({res.stderr.strip() or 'no entry'}) could be read") from exc
        evidence = f"({exc})\nserver# postconf -M smtp/inet\n{res.stdout.strip()}"
        if fields[4] == "y":
            return passed(f"master.cf: smtp/inet chroot = {fields[4]}", evidence)
        return failed(f"master.cf: smtp/inet chroot = {fields[4]}", evidence)
    if root == "/":
        return failed("the smtpd serving a session from client runs in the real root (/)",
                      evidence)
    return passed(f"the smtpd serving a session from client is jailed in {root}", evidence)


@check("postfix.starttls_verified", "The server offers STARTTLS with a certificate the lab CA "
       "verifies", S, hosts=HOSTS,
       hint="STARTTLS needs smtpd_tls_security_level (may) and a certificate and key "
            "(smtpd_tls_cert_file, smtpd_tls_key_file) issued for the server's name by "
            "the lab CA", lesson=f"{LESSON}#tls")
def starttls_verified(lab: Lab) -> Verdict:
    report = lab.tls("client", "server")
    evidence = f"{report}\n{report.transcript}".strip()
    if not report.offered:
        if report.error:
            raise CannotObserve(f"could not ask the server for STARTTLS: {report.error}")
        return failed("EHLO does not offer STARTTLS", evidence)
    if not report.verified:
        return failed(f"the certificate does not verify for {fqdn(lab, 'server')}: "
                      f"{report.verify_error}", evidence)
    return passed(f"STARTTLS ({report.version}), certificate for {fqdn(lab, 'server')} "
                  "verified by the lab CA", evidence)


def _outside_addresses(lab: Lab) -> tuple[list[ipaddress.IPv4Address], list[ipaddress.IPv4Address]]:
    """The addresses of the outside network that lab hosts use, and every address of it."""
    used = []
    for host in lab.topology.hosts:
        address = lab.topology.host(host).address_on("outside")
        if address is not None:
            used.append(ipaddress.IPv4Address(str(address)))
    every = list(dict.fromkeys([*used, *lab.topology.networks["outside"].subnet.hosts()]))
    return used, every


def _trusted(entry: str, address: ipaddress.IPv4Address) -> bool | None:
    """Does one mynetworks pattern (address, network/mask, [address]) match ``address``?
    None for a pattern that is not an address (a host name, a table)."""
    pattern = entry.replace("[", "").replace("]", "")
    try:
        return address in ipaddress.ip_network(pattern, strict=False)
    except ValueError:
        return None


def _table_matches(lab: Lab, table: str, address: ipaddress.IPv4Address) -> tuple[bool, str]:
    res = lab.run("server", ["postmap", "-q", str(address), table])
    return res.returncode == 0 and bool(res.stdout.strip()), f"postmap -q {address} {table}"


@check("postfix.mynetworks_lan_only", "Postfix trusts the LAN only, not the outside network", S,
       hosts=("server",),
       hint="the clients permit_mynetworks lets through are those of mynetworks "
            "(postconf -h mynetworks): it should name the inside network, not a range that "
            "also covers the outside one", lesson=f"{LESSON}#mynetworks")
def mynetworks_lan_only(lab: Lab) -> Verdict:
    res = lab.run("server", ["postconf", "-hx", "mynetworks"])
    if not res.ok:
        raise CannotObserve(f"postconf -hx mynetworks failed: {res.stderr.strip()[-200:]}")
    value = res.stdout.strip()
    evidence = [f"server# postconf -hx mynetworks\n{value}"]
    entries = []
    for entry in value.replace(",", " ").split():
        if entry.lstrip("!").startswith("/"):  # a file of patterns, read in its place
            text = lab.read_file("server", entry.lstrip("!"))
            evidence.append(f"server# cat {entry.lstrip('!')}\n{text.strip()}")
            entries += [w for ln in text.splitlines() if not ln.lstrip().startswith("#")
                        for w in ln.replace(",", " ").split()]
        else:
            entries.append(entry)
    outside_net = lab.topology.networks["outside"].subnet
    trusted, skipped = [], []
    used, every = _outside_addresses(lab)
    for address in every:
        for entry in entries:
            negate = entry.startswith("!")
            pattern = entry.lstrip("!")
            if re.match(r"^[a-z][a-z0-9_]*:", pattern):  # type:table
                if address not in used:  # a table is asked about the hosts' addresses only
                    continue
                hit, seen = _table_matches(lab, pattern, address)
                evidence.append(f"{seen} -> {'match' if hit else 'no match'}")
            else:
                hit = _trusted(pattern, address)
                if hit is None:
                    skipped.append(pattern)
                    continue
            if hit:
                if not negate:
                    trusted.append((address, entry))
                break
    evidence += [f"(not an address, not judged: {p})" for p in dict.fromkeys(skipped)]
    if trusted:
        sample = ", ".join(f"{a} (by {e})" for a, e in trusted[:3])
        return failed(f"mynetworks trusts {len(trusted)} addresses of the outside network "
                      f"{outside_net}: {sample}", "\n".join(evidence))
    return passed(f"no address of the outside network {outside_net} is in mynetworks: {value}",
                  "\n".join(evidence))


@check("postfix.dnsbl_listed_client_refused", "A client the DNSBL lists is refused by the server",
       S, hosts=HOSTS,
       hint="Postfix asks a DNSBL for reject_rbl_client ZONE; where it stands matters: behind "
            "permit_mynetworks it is never asked for the LAN (smtpd_client_restrictions "
            "applies it to every client)", lesson=f"{LESSON}#dnsbl")
def dnsbl_listed_client_refused(lab: Lab) -> Verdict:
    listed = str(lab.topology.listed_client("client").address)
    answer = dnsbl_listing(lab, "server", listed)
    if not answer:
        raise CannotObserve(f"the lab DNSBL does not list {listed} (it should, from "
                            "provisioning): nothing can be said of the server")
    with lab.smtp("client", "server", source=listed) as s:
        s.ehlo(fqdn(lab, "client"))
        reply = _sender_refused(s, f"{local_user(lab)}@{org(lab)}", f"{local_user(lab)}@{org(lab)}")
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
    answer = rhsbl_listing(lab, "server", domain)
    if not answer:
        raise CannotObserve(f"the lab RHSBL does not list {domain} (it should, from "
                            "provisioning): nothing can be said of the server")
    rcpt = f"{local_user(lab)}@{org(lab)}"
    with _session(lab) as s:
        s.ehlo(fqdn(lab, "client"))
        _good_sender_accepted(lab, s, rcpt)
        reply = _sender_refused(s, f"someone@{domain}", rcpt)
    evidence = f"RHSBL: {answer}\n{s.transcript}"
    if reply.positive:
        return failed(f"mail from someone@{domain}, a listed domain, accepted: {reply}", evidence)
    if reply.code >= 500 and (reply.enhanced or "").startswith("5.7."):
        return passed(f"MAIL FROM someone@{domain} refused: {reply}", evidence)
    return failed(f"refused, but not as a listed sender (5.7.x): {reply}", evidence)


@check("postfix.lan_mail_goes_out", "Mail from the LAN still leaves through the server", S,
       hosts=("client", "server", "relay", "internet"),
       hint="restrictions that refuse strangers must still let the LAN send out: the inside "
            "network belongs in mynetworks, which permit_mynetworks lets relay",
       lesson=f"{LESSON}#mynetworks", guard=True)
def lan_mail_goes_out(lab: Lab) -> Verdict:
    fate = lab.send("client", f"someone@{outside(lab)}", target="server",
                    subject="labkit check: mail from the LAN through the server")
    evidence = f"{fate}\n{fate.transcript}".strip()
    if fate.status == "refused" and fate.reply is None:
        raise CannotObserve(f"could not send from client through the server: {fate.where}")
    if fate.status == "at-sink":
        return passed("a message from client through the server reached the outside", evidence)
    if fate.status in ("refused", "bounced"):
        return failed(f"mail from the LAN does not leave: {fate.reply or fate.bounce}", evidence)
    raise CannotObserve(f"the message from client was neither refused nor delivered: {fate}")
