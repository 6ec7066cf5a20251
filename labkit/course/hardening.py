"""The HARDENED state of each course section, expressed with labkit.mta.

Each section's ``harden(engine)`` turns its part of the baseline into the hardened
state, through the same validated pipeline a learner's change goes through, and returns
the results. Solutions, tests and section start states all use these functions: the
start state of section N is the baseline with every earlier section hardened.

Sections with no configuration of their own to harden (00 topology, 11 capstone) have no
``harden``; 10's logging needs none either (LogLevel 9 is already Debian's default): its
hardening is the lab's mail filter. Postfix's part of
01 has nothing to harden either: Postfix refuses to run smtpd as root ("the Postfix SMTP
server must run with $mail_owner privileges") and keeps its own queue private.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from labkit import pki
from labkit.engines.base import Engine
from labkit.errors import LabkitError
from labkit.mta import ApplyResult, Postfix, Sendmail
from labkit.mta.m4 import McFile
from labkit.mta.sendmail import HELP_FILE, SUBMIT_MC

Harden = Callable[[Engine], list[ApplyResult]]


@dataclass(frozen=True)
class Section:
    number: str
    slug: str
    title: str
    harden: Harden | None = None
    #: True for a section whose exercise starts from the baseline itself, every earlier
    #: section undone (the capstone: the learner hardens the whole topology).
    from_baseline: bool = False


# --- Sendmail on the relay ----------------------------------------------------------

#: The unprivileged user and group Sendmail serves sessions as: Debian's MTA user, which
#: owns the queue and the maps and is already the TrustedUser (confTRUSTED_USER), with
#: mail:mail already the DefaultUser (confDEF_USER_ID) in Debian's sendmail.cf.
RUN_AS = ("smmta", "smmsp")
#: The queue of the mail submission program (MSP, submit.cf), set-group-id smmsp.
MSP_QUEUE = "/var/spool/mqueue-client"


def harden_privileges(engine: Engine) -> list[ApplyResult]:
    """01: sessions served as an unprivileged user, the MTA queue private to it; the mail
    configuration (/etc/mail, its maps, /etc/aliases) writable by its owner only (the
    baseline's /etc/mail/access is writable by every local user); the submission
    program's queue open to its group smmsp only (the baseline's is 0777)."""
    engine.run("relay", ["chmod", "-R", "go-w", "/etc/mail", "/etc/aliases"]).check()
    engine.run("relay", ["chmod", "2770", MSP_QUEUE]).check()  # Debian's own mode
    return [Sendmail(engine).set_run_as_user(*RUN_AS)]


def harden_smrsh(engine: Engine) -> list[ApplyResult]:
    """02: programs run from aliases and .forward only through smrsh, whose directory no
    longer offers procmail; no delivery into files: SafeFileEnvironment names an empty
    directory to chroot into before any file write (a daemon with a RunAsUser cannot
    chroot at all, so every file delivery bounces), in the same change."""
    safe = "/var/lib/sendmail/safe"
    engine.run("relay", ["sh", "-c", "rm -f /etc/mail/smrsh/procmail && "
                                     f"install -d -m 0755 {safe}"]).check()

    def edit(mc: McFile) -> None:
        mc.add_feature("smrsh")
        mc.set_define("confSAFE_FILE_ENV", safe)
    return [Sendmail(engine).change(edit)]


DOS_LIMITS = {
    "confMAX_DAEMON_CHILDREN": "20",
    "confMAX_MESSAGE_SIZE": "10000000",
    "confCONNECTION_RATE_THROTTLE": "5",
    "confBAD_RCPT_THROTTLE": "3",
    "confMAX_RCPTS_PER_MESSAGE": "50",
    # A lab host sees the load average of the whole machine it shares with other labs
    # (a classroom server runs dozens): limits for a small dedicated server would slow
    # or close the lab's relay whenever the machine is busy.
    "confDELAY_LA": "30",
    "confREFUSE_LA": "50",
    "confMIN_FREE_BLOCKS": "1000",
}


def harden_dos(engine: Engine) -> list[ApplyResult]:
    """03: limits on children, message size, connection rate, bad and many recipients."""
    def edit(mc: McFile) -> None:
        for name, value in DOS_LIMITS.items():
            mc.set_define(name, value)
    return [Sendmail(engine).change(edit)]


def relay_access_map(engine: Engine) -> str:
    """The hardened /etc/mail/access: relaying for the inside network only, and
    recipient validation for the organisation's domain (known users, postmaster, abuse)."""
    topo = engine.topology
    org = topo.domains["organisation"]
    inside = topo.networks["inside"].subnet
    prefix = ".".join(str(inside.network_address).split(".")[: inside.prefixlen // 8])
    users = [*topo.mail["users"], *topo.mail["aliases"]]
    lines = ["# Relay access, hardened: the LAN only, and only known recipients.",
             "Connect:localhost.localdomain\tRELAY", "Connect:localhost\tRELAY",
             "Connect:127.0.0.1\tRELAY", f"Connect:{prefix}\tRELAY"]
    lines += [f"To:{u}@{org}\tRELAY" for u in dict.fromkeys(users)]
    # The relay's own names are subdomains of the organisation's: without these lines the
    # domain-wide "User unknown" below would also refuse postmaster@relay.example.com.
    relay = topo.host("relay")
    lines += [f"To:{name}\tOK" for name in dict.fromkeys(
        [relay.fqdn, *(i.name for i in relay.interfaces if i.name)])]
    lines.append(f"To:{org}\tERROR:5.1.1:550 User unknown")
    return "\n".join(lines) + "\n"


def harden_relay_control(engine: Engine) -> list[ApplyResult]:
    """04: no open relay, recipient validation on the relay, no UUCP bang paths."""
    sm = Sendmail(engine)
    first = sm.change(lambda mc: (mc.add_feature("blocklist_recipients"),
                                  mc.add_feature("nouucp", "reject")))
    return [first, sm.set_map("access", relay_access_map(engine))]


#: The refusal FEATURE(`dnsbl') gives a listed client (``zone``: the DNSBL's zone).
DNSBL_MESSAGE = '"550 5.7.1 Rejected: " $&{{client_addr}} " is listed at {zone}"'


def harden_rbl(engine: Engine) -> list[ApplyResult]:
    """05: refuse clients listed in the lab DNSBL."""
    zone = engine.topology.dnsbl["ip_zone"]
    message = DNSBL_MESSAGE.format(zone=zone)
    return [Sendmail(engine).change(lambda mc: mc.add_feature("dnsbl", zone, message))]


#: The submission port for roaming users (RFC 6409): ETRN refused, AUTH required.
SUBMISSION_DAEMON = "Family=inet, Name=MSP-v4, Port=submission, M=Ea"
#: SMTPS beside STARTTLS (RFC 8314): TLS from the first byte on port 465.
SMTPS_DAEMON = "Family=inet, Name=MTA-SSL, Port=smtps, M=s"


def harden_sasl(engine: Engine) -> list[ApplyResult]:
    """06: no plain-text mechanisms without TLS, no anonymous logins; the submission port
    587 for roaming users takes mail only from users who log in (M=Ea); the SASL secrets
    (/etc/sasldb2) closed to other users. Its owner (root, or the RunAsUser section 01
    handed it to) and group sasl still read it, as Debian's update_auth leaves it."""
    engine.run("relay", ["chmod", "o-rwx,g-wx", "/etc/sasldb2"]).check()
    return [Sendmail(engine).change(lambda mc: (
        mc.set_define("confAUTH_OPTIONS", "A,p,y"),
        mc.set_daemon_options("MSP-v4", SUBMISSION_DAEMON)))]


def xtext(text: str) -> str:
    """``text`` as Sendmail writes certificate names in macros such as ${cert_issuer}:
    spaces, controls, non-ASCII, '+' and '<>")' as +XX (RFC 3461 xtext)."""
    return "".join(f"+{b:02X}" if b <= 0x20 or b >= 0x7F or chr(b) in '+<>")' else chr(b)
                   for b in text.encode())


def certificate_relay_line(ca: pki.LabCA) -> str:
    """The access map entry that lets a client relay when it presents a certificate the
    lab CA signed and Sendmail verified: ``CERTISSUER:/O=.../CN=... RELAY``."""
    issuer = "".join(f"/{a.rfc4514_attribute_name}={a.value}" for a in ca.cert.subject)
    return f"CERTISSUER:{xtext(issuer)}\tRELAY"


def install_postfix_tls(engine: Engine, host: str = "server") -> dict[str, str]:
    """A certificate from the lab CA for the Postfix of ``host``, its key 0600; the main.cf
    parameters that serve it (STARTTLS offered, not required)."""
    ca = pki.LabCA()
    issued = pki.issue_for_host(ca, engine.topology.host(host))
    engine.write_file(host, f"/etc/postfix/tls/{host}.crt", issued.cert_pem, "0644")
    engine.write_file(host, f"/etc/postfix/tls/{host}.key", issued.key_pem, "0600")
    engine.write_file(host, "/etc/postfix/tls/lab-ca.crt", ca.cert_pem, "0644")
    return {"smtpd_tls_cert_file": f"/etc/postfix/tls/{host}.crt",
            "smtpd_tls_key_file": f"/etc/postfix/tls/{host}.key",
            "smtpd_tls_CAfile": "/etc/postfix/tls/lab-ca.crt",
            "smtpd_tls_security_level": "may"}


def server_tls_policy_line(engine: Engine) -> str:
    """The relay's access map entry: hand mail to the internal server only over TLS with
    a certificate the lab CA signed (Sendmail's tls_server ruleset, cf/README)."""
    return f"TLS_Srv:{engine.topology.host('server').fqdn}\tVERIFY"


def harden_starttls(engine: Engine) -> list[ApplyResult]:
    """07: a certificate for the relay from the lab CA, its key readable by its user only;
    SMTPS on port 465 beside STARTTLS; clients with a certificate from the lab CA may relay
    (CERTISSUER in the access map); the relay hands mail to the internal server only over
    TLS with a verified certificate (TLS_Srv), and the server has one from the lab CA."""
    ca = pki.LabCA()
    issued = pki.issue_for_host(ca, engine.topology.host("relay"))
    results = [Postfix(engine).change(params=install_postfix_tls(engine, "server"))]
    sm = Sendmail(engine)
    paths = sm.install_tls(issued.cert_pem, issued.key_pem, ca.cert_pem)

    def edit(mc: McFile) -> None:
        mc.set_define("CERT_DIR", "/etc/mail/tls")
        mc.set_define("confCACERT_PATH", "/etc/mail/tls")
        mc.set_define("confCACERT", paths["ca"])
        mc.set_define("confSERVER_CERT", paths["cert"])
        mc.set_define("confSERVER_KEY", paths["key"])
        mc.set_define("confCLIENT_CERT", paths["cert"])
        mc.set_define("confCLIENT_KEY", paths["key"])
        mc.set_daemon_options("MTA-SSL", SMTPS_DAEMON)
    results.append(sm.change(edit))
    access = engine.read_file("relay", "/etc/mail/access")
    lines = access.splitlines()
    added = ""
    if certificate_relay_line(ca) not in lines:
        added += ("# Clients with a certificate from the lab CA may relay.\n"
                  + certificate_relay_line(ca) + "\n")
    if server_tls_policy_line(engine) not in lines:
        added += ("# Mail for the internal server goes only over TLS, its certificate verified.\n"
                  + server_tls_policy_line(engine) + "\n")
    if added:
        results.append(sm.set_map("access", access.rstrip("\n") + "\n" + added))
    return results


#: The 'by' clause of the Received: header Sendmail adds, without its default "($v/$Z)".
RECEIVED_BY = "$.by $j$?r with $r$. id $i$?{tls_version}"


def anonymous_help(text: str) -> str:
    """Sendmail's help file without what names the product: its version line ($v) and
    the pointer to sendmail.org for bug reports."""
    lines = [ln for ln in text.splitlines()
             if not ln.startswith("smtp\t") or not ("To report bugs" in ln or "sendmail.org" in ln)]
    return "\n".join(lines).replace("This is sendmail version $v", "This is the mail relay $j") + "\n"


def harden_privacy(engine: Engine) -> list[ApplyResult]:
    """08: a greeting, HELP and Received: header without product or version; no VRFY,
    EXPN, ETRN, VERB, DSN; a private queue; forged local senders marked (the submission
    program's authwarnings), all as one change."""
    sm = Sendmail(engine)

    def edit(mc: McFile) -> None:
        mc.set_define("confPRIVACY_FLAGS",
                      "goaway,noetrn,noreceipts,restrictmailq,restrictqrun,restrictexpand")
        mc.set_define("confSMTP_LOGIN_MSG", "$j MTA; $b")
        mc.set_define("_REC_BY_", RECEIVED_BY)
    submit = sm.read_submit_mc()
    submit.set_define("confPRIVACY_FLAGS", "goaway,noetrn,restrictqrun")
    help_text = anonymous_help(engine.read_file(sm.host, HELP_FILE))
    return [sm.change(edit, files={SUBMIT_MC: str(submit), HELP_FILE: help_text})]


# --- Postfix in the DMZ: the backup MX ----------------------------------------------------

#: The host where section 09 hardens Postfix: the backup MX, in the DMZ beside the relay.
POSTFIX_MX = "mx2"


def relay_recipients(engine: Engine) -> str:
    """The addresses of the organisation the backup MX takes mail for (its users and the
    aliases RFC 2142 requires), as a relay_recipient_maps table."""
    topo = engine.topology
    org = topo.domains["organisation"]
    names = [*topo.mail["users"], *topo.mail["aliases"]]
    return "".join(f"{name}@{org}\tOK\n" for name in dict.fromkeys(names))


def harden_postfix(engine: Engine) -> list[ApplyResult]:
    """09: Postfix where strangers reach it, the backup MX: no open relay (mynetworks is
    the host itself), only the organisation's real recipients, client and sender checks,
    the DNSBL and RHSBL, header checks, a quiet banner, no VRFY, HELO required, TLS with a
    lab certificate, smtpd in its chroot jail; one transaction."""
    topo = engine.topology
    pf = Postfix(engine, POSTFIX_MX)
    tls = install_postfix_tls(engine, POSTFIX_MX)
    return [pf.change(params={
        "smtpd_banner": "$myhostname ESMTP",
        "disable_vrfy_command": "yes",
        "mynetworks": "127.0.0.0/8 [::1]/128",
        "smtpd_helo_required": "yes",
        "smtpd_helo_restrictions": "permit_mynetworks, reject_invalid_helo_hostname, "
                                   "reject_non_fqdn_helo_hostname",
        "smtpd_client_restrictions": f"reject_rbl_client {topo.dnsbl['ip_zone']}",
        "smtpd_sender_restrictions": f"reject_rhsbl_sender {topo.dnsbl['domain_zone']}, "
                                     "reject_non_fqdn_sender, reject_unknown_sender_domain",
        "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
        "relay_recipient_maps": "hash:/etc/postfix/relay_recipients",
        **tls,
        "smtp_tls_security_level": "may",
        "smtpd_discard_ehlo_keywords": "dsn, etrn",
        "header_checks": "regexp:/etc/postfix/header_checks",
    }, tables={
        "/etc/postfix/header_checks": (
            "/^Subject:.*(lottery|viagra)/ REJECT 5.7.1 Message refused by the lab's header "
            "checks\n", "regexp"),
        "/etc/postfix/relay_recipients": (relay_recipients(engine), "hash"),
    }, fields={"smtp/inet/chroot": "y"})]


# --- 10: the lab's mail filter in the relay's mail path ---------------------------------

#: The lab's filter as Sendmail names it, where it listens, and what Sendmail does when it
#: does not answer (F=T: mail waits, it does not pass unfiltered), with its time-outs.
MILTER = ("labkit", "S=inet:8894@127.0.0.1, F=T, T=S:10s;R:10s;E:1m")
MILTER_DROPIN = "/etc/systemd/system/labkit-milter.service.d/unprivileged.conf"


def restart_milter(engine: Engine, port: int = 8894) -> None:
    """Restart the lab's filter with its unit's drop-ins re-read, and wait (5 s at most)
    until it listens on ``port``; CommandError if it does not."""
    engine.run("relay", ["sh", "-c", "systemctl daemon-reload && systemctl restart "
                         f"labkit-milter && for i in $(seq 50); do ss -Hltn sport = :{port} | "
                         "grep -q . && exit 0; sleep 0.1; done; exit 1"]).check()


def harden_logging(engine: Engine) -> list[ApplyResult]:
    """10: the lab's filter in the relay's mail path (INPUT_MAIL_FILTER), running as a user
    of its own (a systemd drop-in: the baseline runs it as root). Logging needs nothing:
    Debian's LogLevel 9 already records every refusal."""
    engine.write_file("relay", MILTER_DROPIN, "[Service]\nUser=labkit-milter\n"
                      "Group=labkit-milter\nNoNewPrivileges=yes\n")
    restart_milter(engine)
    return [Sendmail(engine).change(lambda mc: mc.set_mail_filter(*MILTER))]


SECTIONS: tuple[Section, ...] = (
    Section("00", "topology", "The lab's topology"),
    Section("01", "privileges", "Privileges", harden_privileges),
    Section("02", "smrsh", "smrsh and mailers", harden_smrsh),
    Section("03", "dos", "Denial of service", harden_dos),
    Section("04", "relay", "Relay control", harden_relay_control),
    Section("05", "rbl", "RBLs", harden_rbl),
    Section("06", "sasl", "SMTP AUTH", harden_sasl),
    Section("07", "starttls", "STARTTLS", harden_starttls),
    Section("08", "privacy", "Privacy flags", harden_privacy),
    Section("09", "postfix", "Postfix", harden_postfix),
    Section("10", "logging", "Logging and forgery", harden_logging),
    Section("11", "capstone", "Capstone", from_baseline=True),
)


def section(key: str) -> Section:
    """A section by number ("04", "4") or slug ("relay")."""
    for s in SECTIONS:
        if key in (s.number, s.slug) or (key.isdigit() and int(key) == int(s.number)):
            return s
    raise LabkitError(f"unknown section {key!r}; sections: "
                      + ", ".join(f"{s.number} {s.slug}" for s in SECTIONS))


def harden_through(engine: Engine, last: str, progress: Callable[[str], None] | None = None
                   ) -> list[ApplyResult]:
    """Harden every section up to and including ``last``, in course order."""
    stop = section(last).number
    results: list[ApplyResult] = []
    for s in SECTIONS:
        if s.number > stop:
            break
        if s.harden:
            if progress:
                progress(f"  hardening section {s.number} ({s.slug})")
            results += s.harden(engine)
    return results


#: The hosts whose mail configuration the course changes (reset for a start state).
MTA_HOSTS = ("relay", POSTFIX_MX, "server")


def start_state(engine: Engine, key: str, progress: Callable[[str], None] | None = None
                ) -> list[ApplyResult]:
    """Put the relay, the backup MX and the server in the start state of section ``key``:
    the baseline, with every earlier section hardened (the capstone's: the baseline)."""
    target = section(key)
    for host in MTA_HOSTS:
        engine.reset(host, progress)
    earlier = [] if target.from_baseline else [s for s in SECTIONS if s.number < target.number]
    return harden_through(engine, earlier[-1].number, progress) if earlier else []
