"""Faults for the capstone's troubleshooting: realistic misconfigurations injected into a
hardened lab, each with the graded checks that must catch it and its documented fix.

A fault is data (:class:`Fault`): what a user or colleague reports (``ticket``, which
never names the cause), what was done (``cause``), how to put it right (``fix``), the
checks that catch it, and two functions: ``inject`` makes the change as a careless admin
would, ``repair`` applies the documented fix. The suite proves, for every fault, that
exactly the checks it names fail after ``inject`` and pass again after ``repair``.

:func:`inject` first runs the fault's checks (they must pass: a fault is injected into a
lab where its controls are in place), then injects it and records which fault each lab got
on THIS machine, out of the learners' reach (``/var/lib/labkit/faults``, or
``LABKIT_FAULTS``): the instructor's view is :func:`records`. :func:`pick` chooses a
fault for a learner from a seed and the lab's name, the same one every time.
"""

from __future__ import annotations

import datetime
import json
import os
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.course import hardening
from labkit.engines.base import Engine
from labkit.errors import LabkitError
from labkit.mta import Postfix, Sendmail
from labkit.mta.m4 import McFile

if TYPE_CHECKING:
    from labkit.checks import Report
    from labkit.lab import Lab

Action = Callable[[Engine], object]


class FaultError(LabkitError):
    """A fault that does not exist, or cannot be injected into this lab as it is."""


@dataclass(frozen=True, repr=False)
class Fault:
    """One misconfiguration of the catalogue (see the module doc). Shown (repr, HTML) it
    gives only its ticket, so a learner who injects one in a notebook is not told what
    it is; its fields say everything."""
    name: str
    host: str
    title: str
    ticket: str
    cause: str
    fix: str
    catches: tuple[str, ...]
    inject: Action = field(repr=False, compare=False)
    repair: Action = field(repr=False, compare=False)
    #: Checks that must also pass before the fault is injected: the controls it strikes,
    #: for a fault that only guards catch (they pass on the baseline too).
    requires: tuple[str, ...] = ()


    def __repr__(self) -> str:
        return (f"Ticket for the {self.host} team: {self.ticket}\n"
                "(find the fault with the graded checks and the logs: labkit check)")

    def _repr_html_(self) -> str:
        import html
        return (f"<div style='border-left:4px solid #a15c00;padding:2px 8px'><b>Ticket for "
                f"the {html.escape(self.host)} team:</b> {html.escape(self.ticket)}<br>"
                "<i>Find the fault with the graded checks and the logs.</i></div>")

    def explain(self) -> str:
        """Everything about the fault, for the instructor: what was done and the fix."""
        return (f"{self.name} ({self.host}): {self.title}\n  ticket: {self.ticket}\n"
                f"  cause:  {self.cause}\n  fix:    {self.fix}\n"
                f"  caught by: {', '.join(self.catches)}"
                + (f"\n  needs in place: {', '.join(self.requires)}" if self.requires else ""))


# --- how the careless admin works ---------------------------------------------------------

ACCESS = "/etc/mail/access"


def _inside_prefix(engine: Engine) -> str:
    """The access map's key for the LAN ("192.168.57")."""
    net = engine.topology.networks["inside"].subnet
    return ".".join(str(net.network_address).split(".")[: net.prefixlen // 8])


def _outside_prefix(engine: Engine) -> str:
    net = engine.topology.networks["outside"].subnet
    return ".".join(str(net.network_address).split(".")[: net.prefixlen // 8])


def _edit_access(engine: Engine, edit: Callable[[list[str]], list[str]]) -> None:
    lines = engine.read_file("relay", ACCESS).splitlines()
    Sendmail(engine).set_map("access", "\n".join(edit(lines)) + "\n")


def _drop_lines(pattern: Callable[[Engine], str]) -> Action:
    """Remove the access map lines matching ``pattern`` (made from the topology)."""
    def action(engine: Engine) -> None:
        rx = re.compile(pattern(engine))
        _edit_access(engine, lambda lines: [ln for ln in lines if not rx.search(ln)])
    return action


def _retarget_access(engine: Engine, key: str, old: str, new: str) -> None:
    """The access map line ``key`` + ``old`` (e.g. "TLS_Srv:server.example.com\t" +
    "VERIFY") made ``key`` + ``new``."""
    _edit_access(engine, lambda lines: [key + new if ln == key + old else ln for ln in lines])


def _add_lines(*new: Callable[[Engine], str], before: str | None = None) -> Action:
    """Add access map lines (before the first line matching ``before``, else at the end)."""
    def action(engine: Engine) -> None:
        wanted = [make(engine) for make in new]

        def edit(lines: list[str]) -> list[str]:
            add = [w for w in wanted if w not in lines]
            at = next((i for i, ln in enumerate(lines) if before and re.search(before, ln)),
                      len(lines))
            return lines[:at] + add + lines[at:]
        _edit_access(engine, edit)
    return action


def _mc(edit: Callable[[McFile], object]) -> Action:
    return lambda engine: Sendmail(engine).change(edit)


def _define(name: str, value: str) -> Action:
    return _mc(lambda mc: mc.set_define(name, value))


def _chmod(host: str, mode: str, path: str) -> Action:
    return lambda engine: engine.run(host, ["chmod", mode, path]).check()


def _postfix(host: str, params: dict[str, str] | None = None,
             fields: dict[str, str] | None = None) -> Action:
    return lambda engine: Postfix(engine, host).change(params=params, fields=fields)


#: Reload Postfix as an admin does by hand, then wait until the master has re-read its
#: configuration and every smtpd of the old one has gone (5 s at most), so that the next
#: session sees what the files now say.
_POSTFIX_RELOAD = r"""
touch -d "@$(( $(date +%s) - 2 ))" /etc/postfix/main.cf /etc/postfix/master.cf
old=$(pgrep -d ' ' -x smtpd)
mark=$(journalctl -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p')
postfix reload 2>&1
for _ in $(seq 1 50); do
    if journalctl --after-cursor="$mark" --no-pager -o cat | grep -q '^reload -- version'; then
        alive=""; for p in $old; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ -z "$alive" ] && exit 0
    fi
    sleep 0.1
done
exit 0
"""


def _postfix_by_hand(host: str, *commands: str) -> Action:
    """Shell ``commands`` on ``host`` (postconf -e, sed on a file), then a bare reload:
    nothing validates them, as when an admin edits main.cf in an editor."""
    script = "set -e\n" + "\n".join(commands) + "\n" + _POSTFIX_RELOAD
    return lambda engine: engine.run(host, ["bash", "-c", script]).check()


def _server_aliases(edit: str) -> Action:
    return lambda engine: engine.run("server", ["sh", "-c", f"{edit} && newaliases"]).check()


def _last_user(engine: Engine) -> str:
    return engine.topology.mail["users"][-1]


def _tls_srv(engine: Engine) -> str:
    return f"TLS_Srv:{engine.topology.host('server').fqdn}\t"


def _org(engine: Engine) -> str:
    return engine.topology.domains["organisation"]


# --- the catalogue ------------------------------------------------------------------------

_PRIVACY_WITHOUT_NOEXPN = ("needmailhelo,needvrfyhelo,novrfy,noverb,noetrn,noreceipts,"
                           "authwarnings,restrictmailq,restrictqrun,restrictexpand")
_TYPO_ZONE = "bl.lab.tset"


def _dnsbl(zone: Callable[[Engine], str]) -> Action:
    def action(engine: Engine) -> None:
        z = zone(engine)
        msg = hardening.DNSBL_MESSAGE.format(zone=z)
        Sendmail(engine).change(lambda mc: (mc.remove_feature("dnsbl"),
                                            mc.add_feature("dnsbl", z, msg)))
    return action


def _milter_dropin(present: bool) -> Action:
    def action(engine: Engine) -> None:
        if present:
            engine.write_file("relay", hardening.MILTER_DROPIN, "[Service]\nUser=labkit-milter\n"
                              "Group=labkit-milter\nNoNewPrivileges=yes\n")
        else:
            engine.run("relay", ["rm", "-f", hardening.MILTER_DROPIN]).check()
        hardening.restart_milter(engine)
    return action


FAULTS: tuple[Fault, ...] = (
    Fault("partner-relay", "relay",
          "a partner's whole network allowed to relay",
          "A partner says their mail through our relay works again. The weekly audit "
          "disagrees.",
          "a Connect: line gives RELAY to the whole outside network (192.168.56), where the "
          "partner has one address; it also skips the DNSBL for that network",
          "remove the Connect: line for the outside network from /etc/mail/access (or narrow "
          "it to the partner's single address), then rebuild access.db (makemap, or "
          "labkit apply relay)",
          ("relay.closed_from_outside", "rbl.listed_client_refused", "tls.certificate_relay",
           "logs.refused_relay_logged"),
          _add_lines(lambda e: f"Connect:{_outside_prefix(e)}\tRELAY", before=r"^To:"),
          _drop_lines(lambda e: rf"^Connect:{re.escape(_outside_prefix(e))}\s")),
    Fault("lan-rejected", "relay",
          "a REJECT meant for one infected workstation written for the whole LAN",
          "Since the helpdesk blocked an infected PC this morning, nobody in the office can "
          "send mail to customers. Mail from customers still comes in.",
          "the access map's line for the inside network says 'Connect:192.168.57 REJECT' "
          "where the helpdesk meant the PC's own address",
          "make the line for the inside network RELAY again and block the PC alone "
          "('Connect:192.168.57.44 REJECT'), then rebuild access.db",
          ("relay.open_from_inside",),
          lambda e: _retarget_access(e, f"Connect:{_inside_prefix(e)}\t", "RELAY", "REJECT"),
          lambda e: (_retarget_access(e, f"Connect:{_inside_prefix(e)}\t", "REJECT", "RELAY"),
                     _add_lines(lambda e: f"Connect:{_inside_prefix(e)}.44\tREJECT",
                                before=r"^To:")(e)),
          requires=("relay.closed_from_outside",)),
    Fault("postmaster-refused", "relay",
          "recipient validation made strict, the role addresses forgotten",
          "Another company's postmaster reports that mail to postmaster@ and abuse@ our "
          "domain comes back 'User unknown'.",
          "the access map's To: lines for postmaster and abuse were removed, so the "
          "domain-wide 'User unknown' refuses them",
          "put 'To:postmaster@example.com RELAY' and 'To:abuse@example.com RELAY' back into "
          "/etc/mail/access and rebuild access.db",
          ("relay.known_recipients_accepted", "capstone.role_addresses_reachable"),
          _drop_lines(lambda e: r"^To:(postmaster|abuse)@"),
          _add_lines(lambda e: f"To:postmaster@{_org(e)}\tRELAY",
                     lambda e: f"To:abuse@{_org(e)}\tRELAY", before=r"^To:[^@]+\s"),
          requires=("relay.unknown_recipient_refused",)),
    Fault("user-forgotten", "relay",
          "a current user's line removed from the access map instead of a leaver's",
          "averell has had no mail from customers since Monday. Mail from colleagues "
          "reaches him.",
          "the access map's 'To:averell@example.com RELAY' line was removed (a leaver's line "
          "was meant): the domain-wide 'User unknown' refuses averell",
          "put 'To:averell@example.com RELAY' back into /etc/mail/access and rebuild "
          "access.db",
          ("capstone.every_user_reachable",),
          _drop_lines(lambda e: rf"^To:{re.escape(_last_user(e))}@"),
          _add_lines(lambda e: f"To:{_last_user(e)}@{_org(e)}\tRELAY", before=r"^To:[^@]+\s"),
          requires=("relay.unknown_recipient_refused",)),
    Fault("server-tls-unverified", "relay",
          "the relay's TLS policy for the server relaxed from VERIFY to ENCR",
          "During the server's certificate renewal someone relaxed a TLS setting 'for a "
          "day'. That was a month ago.",
          "TLS_Srv:server.example.com is ENCR:128 in the access map: the relay encrypts to "
          "the server but no longer checks who answers",
          "set the access map's 'TLS_Srv:server.example.com' back to VERIFY and rebuild "
          "access.db",
          ("tls.relay_verifies_server",),
          lambda e: _retarget_access(e, _tls_srv(e), "VERIFY", "ENCR:128"),
          lambda e: _retarget_access(e, _tls_srv(e), "ENCR:128", "VERIFY")),
    Fault("dnsbl-zone-typo", "relay",
          "the DNSBL zone misspelt in FEATURE(dnsbl)",
          "Spam from a well-known listed address reached the users again this week.",
          f"FEATURE(`dnsbl') names {_TYPO_ZONE}, a zone that does not exist: every lookup "
          "says 'not listed'",
          "correct the zone in sendmail.mc's FEATURE(`dnsbl', `bl.lab.test', ...) and apply",
          ("rbl.listed_client_refused",),
          _dnsbl(lambda e: _TYPO_ZONE),
          _dnsbl(lambda e: e.topology.dnsbl["ip_zone"])),
    Fault("runasuser-dropped", "relay",
          "RunAsUser lost when sendmail.mc was restored from an old copy",
          "After last night's restore of the relay's configuration, mail flows as before. "
          "The security team asks whether anything else changed.",
          "confRUN_AS_USER is no longer defined: SMTP sessions are served as root again",
          "define(`confRUN_AS_USER', `smmta:smmsp') in sendmail.mc again and apply",
          ("privileges.session_not_root",),
          _mc(lambda mc: mc.remove_define("confRUN_AS_USER")),
          lambda e: Sendmail(e).set_run_as_user(*hardening.RUN_AS)),
    Fault("banner-version", "relay",
          "the greeting gives the product and version back",
          "A scanner's report lists our relay's software and exact version.",
          "confSMTP_LOGIN_MSG is '$j Sendmail $v/$Z; $b' again",
          "set confSMTP_LOGIN_MSG back to a greeting without $v and $Z (e.g. '$j MTA; $b')",
          ("privacy.greeting_anonymous",),
          _define("confSMTP_LOGIN_MSG", "$j Sendmail $v/$Z; $b"),
          _define("confSMTP_LOGIN_MSG", "$j MTA; $b")),
    Fault("smrsh-shell-link", "relay",
          "a shell linked into smrsh's directory",
          "A colleague made jack's vacation script work by 'allowing sh for smrsh'.",
          "/etc/mail/smrsh/sh links to /bin/sh: an alias or a .forward of the form "
          "'|sh -c ...' runs any command (programs named directly are still refused)",
          "remove /etc/mail/smrsh/sh (link only the programs the aliases need)",
          ("smrsh.prog_mailer_restricted",),
          lambda e: Sendmail(e).smrsh_link("/bin/sh"),
          lambda e: e.run("relay", ["rm", "-f", "/etc/mail/smrsh/sh"]).check()),
    Fault("key-world-readable", "relay",
          "the relay's TLS private key made world readable",
          "While copying the relay's certificate to the new load balancer someone 'fixed "
          "the permissions'.",
          "/etc/mail/tls/relay.key is mode 0644",
          "chmod 0600 /etc/mail/tls/relay.key (owner smmta); think about a new key: any "
          "local user could have read it",
          ("tls.key_private",),
          _chmod("relay", "0644", "/etc/mail/tls/relay.key"),
          _chmod("relay", "0600", "/etc/mail/tls/relay.key")),
    Fault("sasldb-readable", "relay",
          "the SASL password database made world readable",
          "A helpdesk script that resets mail passwords 'could not read the database'. It "
          "can now.",
          "/etc/sasldb2 is mode 0644: every local user reads every mail password",
          "chmod 0640 /etc/sasldb2 (root or smmta, group sasl); change the passwords",
          ("sasl.sasldb_private",),
          _chmod("relay", "0644", "/etc/sasldb2"),
          _chmod("relay", "0640", "/etc/sasldb2")),
    Fault("plain-auth-in-clear", "relay",
          "AUTH PLAIN and LOGIN offered again before STARTTLS",
          "An old mail client that 'does not do TLS' can log in again. Its user is happy.",
          "confAUTH_OPTIONS lost its 'p': passwords may cross the network in clear",
          "define(`confAUTH_OPTIONS', `A,p,y') again and apply",
          ("sasl.no_plaintext_in_clear",),
          _define("confAUTH_OPTIONS", "A,y"),
          _define("confAUTH_OPTIONS", "A,p,y")),
    Fault("expn-reopened", "relay",
          "EXPN allowed again while debugging an alias",
          "Someone debugged the 'all-staff' alias with EXPN from home and forgot to undo "
          "it.",
          "confPRIVACY_FLAGS lists its flags one by one, without goaway and without noexpn",
          "put noexpn (or goaway) back into confPRIVACY_FLAGS and apply",
          ("privacy.expn_disabled", "logs.expn_probe_logged"),
          _define("confPRIVACY_FLAGS", _PRIVACY_WITHOUT_NOEXPN),
          _define("confPRIVACY_FLAGS",
                  "goaway,noetrn,noreceipts,restrictmailq,restrictqrun,restrictexpand")),
    Fault("access-world-writable", "relay",
          "the access map made writable by every local user",
          "A junior admin could not edit /etc/mail/access without sudo, so they fixed that.",
          "/etc/mail/access is mode 0666: any local user can grant themselves RELAY",
          "chmod 0644 /etc/mail/access (or 0640), owner root",
          ("privileges.config_not_writable",),
          _chmod("relay", "0666", ACCESS),
          _chmod("relay", "0644", ACCESS)),
    Fault("size-limit-removed", "relay",
          "the message size limit removed for one large attachment",
          "The sales team had to send a large video to a customer last week.",
          "confMAX_MESSAGE_SIZE is 0 (no limit): one client can fill the queue's disk",
          "define(`confMAX_MESSAGE_SIZE', `10000000') again and apply",
          ("dos.message_size_limited",),
          _define("confMAX_MESSAGE_SIZE", "0"),
          _define("confMAX_MESSAGE_SIZE", hardening.DOS_LIMITS["confMAX_MESSAGE_SIZE"])),
    Fault("milter-as-root", "relay",
          "the mail filter's drop-in removed: it runs as root again",
          "The mail filter was reinstalled from the package after an update.",
          "/etc/systemd/system/labkit-milter.service.d/unprivileged.conf is gone: the "
          "filter parses every message's attachments as root",
          "put the drop-in back (User=labkit-milter, Group=labkit-milter), then systemctl "
          "daemon-reload and restart labkit-milter",
          ("milter.unprivileged",),
          _milter_dropin(False),
          _milter_dropin(True)),
    Fault("mx2-vrfy-typo", "mx2",
          "a misspelt parameter in mx2's main.cf",
          "The backup MX was 'tidied up' by hand; postfix reload said nothing alarming.",
          "disable_vrfy_command was rewritten as disable_vrfy_comand: Postfix reloads, warns "
          "'unused parameter' in the log and postconf -n, and keeps the default (VRFY on)",
          "spell disable_vrfy_command = yes correctly (postconf -n shows no warning), and "
          "reload",
          ("postfix.vrfy_disabled",),
          _postfix_by_hand("mx2", "postconf -X disable_vrfy_command",
                           "postconf -e disable_vrfy_comand=yes"),
          lambda e: Postfix(e, "mx2").transaction([
              ["postconf", "-X", "disable_vrfy_comand"],
              ["postconf", "-e", "disable_vrfy_command=yes"]])),
    Fault("mx2-mynetworks-wide", "mx2",
          "mx2's mynetworks taken from an old server",
          "After a disk failure mx2's main.cf came back from the old server's backup.",
          "mynetworks includes 192.168.0.0/16: strangers on the outside network relay "
          "through permit_mynetworks",
          "set mynetworks = 127.0.0.0/8 [::1]/128 and reload",
          ("postfix.closed_from_outside",),
          _postfix("mx2", {"mynetworks": "127.0.0.0/8 [::1]/128 192.168.0.0/16"}),
          _postfix("mx2", {"mynetworks": "127.0.0.0/8 [::1]/128"})),
    Fault("mx2-chroot-off", "mx2",
          "mx2's smtpd taken out of its chroot jail",
          "A colleague 'fixed' a DNS lookup problem on mx2 by changing one letter in "
          "master.cf.",
          "the smtp service's chroot column in master.cf is n",
          "set the chroot column of the smtp inet service to y (postconf -F "
          "smtp/inet/chroot=y) and reload",
          ("postfix.smtpd_chrooted",),
          _postfix("mx2", fields={"smtp/inet/chroot": "n"}),
          _postfix("mx2", fields={"smtp/inet/chroot": "y"})),
    Fault("mx2-backscatter", "mx2",
          "mx2 takes mail for any address of the organisation again",
          "mx2's queue is full of bounces to addresses nobody here has written to.",
          "relay_recipient_maps is empty: mx2 accepts unknown users and bounces later "
          "(backscatter)",
          "set relay_recipient_maps = hash:/etc/postfix/relay_recipients and reload",
          ("postfix.unknown_recipient_refused",),
          _postfix("mx2", {"relay_recipient_maps": ""}),
          _postfix("mx2", {"relay_recipient_maps": "hash:/etc/postfix/relay_recipients"})),
    Fault("server-postmaster-alias", "server",
          "the server's postmaster alias deleted",
          "A stranger wrote to postmaster@ about spam from our network. Their message came "
          "back, and the relay took it.",
          "the server's /etc/aliases has no postmaster: mail for it bounces on the server, "
          "after the relay accepted it",
          "put 'postmaster: root' back into the server's /etc/aliases and run newaliases",
          ("capstone.role_addresses_reachable",),
          _server_aliases("sed -i '/^postmaster:/d' /etc/aliases"),
          _server_aliases("grep -q '^postmaster:' /etc/aliases || "
                          "echo 'postmaster: root' >> /etc/aliases"),
          requires=("relay.unknown_recipient_refused",)),
)


def catalogue() -> list[Fault]:
    """Every fault, in catalogue order."""
    return list(FAULTS)


def get(name: str) -> Fault:
    """The fault ``name``; FaultError listing the catalogue if there is none."""
    for f in FAULTS:
        if f.name == name:
            return f
    raise FaultError(f"no fault {name!r}; the faults are: {', '.join(f.name for f in FAULTS)} "
                     "(labkit break --list)")


def pick(seed: int, learner: str) -> Fault:
    """The fault for ``learner`` (a name: the lab's, by default) from ``seed``: the same
    every time, and learners given the same seed mostly get different ones."""
    return random.Random(f"{seed}/{learner}").choice(FAULTS)


# --- the record of who got which ------------------------------------------------------------

def _store() -> Path:
    return Path(os.environ.get("LABKIT_FAULTS", "/var/lib/labkit/faults"))


@dataclass
class FaultRecord:
    """A fault injected into a lab: which, for whom, when; ``seed`` if picked at random."""
    lab: str
    engine: str
    fault: str
    at: str
    seed: int | None = None


def _record_path(engine: str, lab: str) -> Path:
    return _store() / f"{engine}-{lab}.json"


def records() -> list[FaultRecord]:
    """Every fault injected on this machine and not yet repaired or finished, by lab."""
    found = []
    for path in sorted(_store().glob("*.json")):
        try:
            found += [FaultRecord(**r) for r in json.loads(path.read_text())]
        except (OSError, ValueError, TypeError):
            continue
    return found


def records_for(lab: Lab) -> list[FaultRecord]:
    if _through_service():
        from labkit.engines.service import request
        got = request("fault_records", lab.name)[0]
        return [FaultRecord(**r) for r in got]
    return lab_records(lab.engine.kind, lab.name)


def lab_records(engine: str, lab: str) -> list[FaultRecord]:
    """The records of lab ``lab`` of engine ``engine``, read from this machine's store."""
    return [r for r in records() if r.lab == lab and r.engine == engine]


def _through_service() -> bool:
    """True for a learner who is not root: the records are root's (the store is 0700),
    kept for them by the lab service."""
    from labkit.engines.service import available
    return available()


def _save(lab: Lab, recs: list[FaultRecord]) -> None:
    if _through_service():
        from labkit.engines.service import request
        request("fault_records", lab.name, records=[asdict(r) for r in recs])
        return
    save_records(lab.engine.kind, lab.name, recs)


def save_records(engine: str, lab: str, recs: list[FaultRecord]) -> None:
    """Replace the records of lab ``lab`` of engine ``engine`` in this machine's store."""
    path = _record_path(engine, lab)
    if not recs:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(r) for r in recs], indent=1))
    tmp.chmod(0o600)
    tmp.replace(path)


def forget(lab: Lab) -> list[FaultRecord]:
    """Drop the records of ``lab`` (its faults are gone: finished, reset, or down)."""
    if _through_service():
        gone = records_for(lab)
        _save(lab, [])
        return gone
    return forget_lab(lab.engine.kind, lab.name)


def forget_lab(engine: str, lab: str) -> list[FaultRecord]:
    """Drop the records of the lab ``lab`` of engine ``engine``; the records dropped."""
    gone = lab_records(engine, lab)
    _record_path(engine, lab).unlink(missing_ok=True)
    return gone


# --- injecting and repairing ------------------------------------------------------------------

def verify(lab: Lab, fault: Fault) -> Report:
    """Run the checks that catch ``fault`` against ``lab``, and those it requires."""
    from labkit import checks
    return checks.run_checks(lab, [checks.get(c) for c in dict.fromkeys(
        [*fault.catches, *fault.requires])])


def inject(lab: Lab, fault: Fault, seed: int | None = None, require_passing: bool = True
           ) -> FaultRecord:
    """Inject ``fault`` into ``lab`` and record it. Unless ``require_passing`` is False,
    its checks (those that catch it, those it requires) must pass first: FaultError naming
    those that do not (the lab is not hardened where this fault strikes, so nobody could
    tell it was injected)."""
    if require_passing:
        before = verify(lab, fault)
        if not before.all_passed:
            bad = [r for r in before.results if not r.passed]
            raise FaultError(
                f"fault {fault.name} strikes where the lab {lab.name!r} is not hardened yet: "
                + "; ".join(f"{r.check_id} {r.status.value}: {r.summary}" for r in bad)
                + ". Put the lab in the hardened state first (labkit break --hardened).")
    fault.inject(lab.engine)
    record = FaultRecord(lab.name, lab.engine.kind, fault.name,
                         datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), seed)
    _save(lab, [r for r in records_for(lab) if r.fault != fault.name] + [record])
    return record


def repair(lab: Lab, fault: Fault) -> None:
    """Apply ``fault``'s documented fix to ``lab`` and drop its record."""
    fault.repair(lab.engine)
    _save(lab, [r for r in records_for(lab) if r.fault != fault.name])


def harden_all(lab: Lab, progress: Callable[[str], None] | None = None) -> None:
    """Put the MTAs in the hardened state of the whole course: the baseline, every section
    hardened (what a fault is injected into)."""
    last = [s for s in hardening.SECTIONS if s.harden][-1].number
    for host in hardening.MTA_HOSTS:
        lab.engine.reset(host, progress)
    forget(lab)
    hardening.harden_through(lab.engine, last, progress)
