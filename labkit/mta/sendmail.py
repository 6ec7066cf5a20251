"""Sendmail on a lab host: change sendmail.mc safely, maps, aliases, SASL users.

Every change goes through one pipeline run on the host (``scripts/sendmail-apply.sh``):

1. build the new sendmail.cf ASIDE with m4; any m4 diagnostic refuses the change (Debian's
   ``make -C /etc/mail`` would carry on and silently drop, say, a misspelt FEATURE);
2. load the new sendmail.cf with ``sendmail -C new.cf -bt``; any "line N:" complaint
   refuses it;
3. keep the current /etc/mail, install the new sendmail.mc, ``make -C /etc/mail`` (the
   maps too), restart Sendmail, and wait for it to answer on port 25;
4. if make, the restart or the greeting fails, put the kept /etc/mail back, rebuild,
   restart: the MTA serves with its previous configuration.

The previous working configuration is also kept as the host's *last good* snapshot,
which ``labkit apply`` restores when a hand edit is refused.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable

from labkit.engines.base import Engine
from labkit.mta.apply import SCRIPTS, ApplyResult, ConfigRejected, run_pipeline
from labkit.mta.m4 import McFile, McSyntaxError

MC = "/etc/mail/sendmail.mc"
SUBMIT_MC = "/etc/mail/submit.mc"
HELP_FILE = "/etc/mail/helpfile"
CF = "/etc/mail/sendmail.cf"
WORK = "/var/lib/labkit/apply"
LAST_GOOD = "/var/lib/labkit/last-good/mail-config.tar.gz"
BASELINE = "/var/lib/labkit/baseline/mail-config.tar.gz"
#: The MTA's queue; the MSP's (submission through sendmail(8)) is /var/spool/mqueue-client.
QUEUE = "/var/spool/mqueue"

_HAND_OVER = r"""
set -eu
user=$1; group=$2; queue=$3
chown "$user" "$queue" && chmod u=rwx,go=,g-s "$queue"
find "$queue" -mindepth 1 -maxdepth 1 -exec chown "$user" {} +
for f in /etc/sasldb2 $(sed -n 's/^O \(Server\|Client\)KeyFile=//p' /etc/mail/sendmail.cf); do
    [ -f "$f" ] && chown "$user" "$f"
done
mkdir -p /run/sendmail/mta && chown "$user:$group" /run/sendmail/mta
echo "d /run/sendmail/mta 02755 $user $group -" > /etc/tmpfiles.d/labkit-sendmail-runasuser.conf
"""




def _option_hints(engine: Engine, host: str, errors: list[str], mc_text: str) -> list[str]:
    """Point each sendmail.cf complaint back at the sendmail.mc line that caused it."""
    hints = []
    proto = None
    mc_lines = mc_text.splitlines()
    for err in errors:
        m = re.search(r"Op line: (\S+) unrecognized|readcf: option (\S+):", err)
        cf_line = re.search(r": line (\d+):", err)
        if not cf_line:
            continue
        text = engine.run(host, ["sed", "-n", f"{cf_line.group(1)}p",
                                 f"{WORK}/sendmail.cf.new"]).stdout.strip()
        opt = re.match(r"O (\w+)", text)
        if not opt:
            hints.append(f"sendmail.cf line {cf_line.group(1)} reads: {text[:100]}")
            continue
        if proto is None:
            proto = engine.run(host, ["cat", "/usr/share/sendmail/cf/m4/proto.m4"]).stdout
        conf = re.search(rf"_OPTION\({opt.group(1)},\s*`(\w+)'", proto)
        if conf:
            for n, line in enumerate(mc_lines, 1):
                if conf.group(1) in line:
                    hints.append(f"sendmail.mc line {n}: {line.strip()} "
                                 f"(sets {opt.group(1)}{': ' + (m.group(1) or m.group(2)) if m else ''})")
                    break
            else:
                hints.append(f"{text[:100]} comes from {conf.group(1)}")
    return hints


def _m4_hints(errors: list[str], mc_text: str) -> list[str]:
    hints = []
    lines = mc_text.splitlines()
    for err in errors:
        m = re.match(r"m4:[^:]*:(\d+):\s*(.*)", err)  # m4:FILE:LINE: message
        if m and 0 < int(m.group(1)) <= len(lines):
            hints.append(f"sendmail.mc line {m.group(1)}: {lines[int(m.group(1)) - 1].strip()}")
    return hints


class Sendmail:
    """The Sendmail of one lab host (``relay`` by default)."""

    def __init__(self, engine: Engine, host: str = "relay") -> None:
        self.engine = engine
        self.host = host

    def read_mc(self) -> McFile:
        """The host's sendmail.mc, parsed."""
        return McFile(self.engine.read_file(self.host, MC))

    def apply_mc(self, mc: McFile | str, check: bool = True,
                 files: dict[str, str] | None = None) -> ApplyResult:
        """Validate and apply a new sendmail.mc (see the module doc for the steps), with
        ``files`` (path: content, e.g. a map or submit.mc) replaced in the same change.

        Raises :class:`ConfigRejected` (with the tool's error lines) when refused, unless
        ``check`` is False; either way the MTA keeps its previous working configuration.
        """
        text = str(mc)
        try:
            McFile(text)
        except McSyntaxError as exc:
            return self._refused(ApplyResult(self.host, False, "m4", [str(exc)]), check)
        staged = self._stage(files or {})
        cand = f"{WORK}/sendmail.mc.candidate"
        self.engine.write_file(self.host, cand, text)
        result = self._run(cand, text, check, staged)
        if result.ok:
            result.changes[:0] = [f"{path} replaced and rebuilt" for path in files or {}]
        return result

    def change(self, edit: Callable[[McFile], object] | None = None, check: bool = True,
               files: dict[str, str] | None = None) -> ApplyResult:
        """Read sendmail.mc, let ``edit(mc)`` change it, apply the result (with ``files``
        replaced, as :meth:`apply_mc`): one validated change, one restart."""
        mc = self.read_mc()
        if edit is not None:
            edit(mc)
        return self.apply_mc(mc, check, files)

    def read_submit_mc(self) -> McFile:
        """The host's submit.mc (the mail submission program's configuration), parsed;
        apply an edited one with ``change(files={SUBMIT_MC: str(mc)})``."""
        return McFile(self.engine.read_file(self.host, SUBMIT_MC))

    def _stage(self, files: dict[str, str]) -> list[str]:
        """Write each file aside on the host; the pipeline installs them after its backup."""
        staged: list[str] = []
        for path, content in files.items():
            if not (path.startswith("/etc/mail/") or path == "/etc/aliases"):
                raise ConfigRejected(ApplyResult(self.host, False, "start", [
                    f"{path} is not part of Sendmail's configuration (/etc/mail/*, /etc/aliases)"]))
            aside = f"{WORK}/staged{path.replace('/', '_')}"
            self.engine.write_file(self.host, aside, content)
            staged += [aside, path]
        return staged

    def apply_hand_edits(self, check: bool = True) -> ApplyResult:
        """Validate and apply /etc/mail/sendmail.mc as the learner left it.

        When refused, the learner's file is kept as sendmail.mc.rejected and the last
        good sendmail.mc is put back in place.
        """
        text = self.engine.read_file(self.host, MC)
        cand = f"{WORK}/sendmail.mc.candidate"
        self.engine.write_file(self.host, cand, text)
        result = self._run(cand, text, check=False)
        if not result.ok:
            kept = MC + ".rejected"
            self.engine.run(self.host, ["cp", cand, kept]).check()
            self.engine.run(self.host, ["sh", "-c", f"tar -C / -xzf {LAST_GOOD} {MC[1:]} || "
                                        f"tar -C / -xzf {BASELINE} {MC[1:]}"])
            result.kept_as = kept
        return self._refused(result, check) if not result.ok else result

    def set_file(self, path: str, content: str, check: bool = True) -> ApplyResult:
        """Replace a file of the mail configuration (a map such as /etc/mail/access,
        virtusertable, mailertable, relay-domains, the help file, submit.mc, or
        /etc/aliases) and apply: make rebuilds the maps (makemap, newaliases) and the .cf
        files, and any complaint refuses the change."""
        return self.change(None, check, {path: content})

    def set_map(self, name: str, content: str, check: bool = True) -> ApplyResult:
        """/etc/mail/``name`` (access, virtusertable, mailertable, ...) replaced and rebuilt."""
        return self.set_file(f"/etc/mail/{name}", content, check)

    def set_aliases(self, content: str, check: bool = True) -> ApplyResult:
        """/etc/aliases replaced; newaliases runs through make."""
        return self.set_file("/etc/aliases", content, check)

    def smrsh_link(self, program: str) -> None:
        """Allow ``program`` (an absolute path) in smrsh: a link in /etc/mail/smrsh."""
        name = program.rsplit("/", 1)[-1]
        self.engine.run(self.host, ["ln", "-sf", program, f"/etc/mail/smrsh/{name}"]).check()

    def sasl_user(self, user: str, password: str) -> None:
        """Create or change a SASL user in /etc/sasldb2 (realm: the host's FQDN)."""
        realm = self.engine.topology.host(self.host).fqdn
        self.engine.run(self.host, ["saslpasswd2", "-p", "-c", "-u", realm, user],
                        input=password + "\n").check()

    def run_as_user(self) -> str | None:
        """The RunAsUser of the installed sendmail.cf ("smmta:smmsp"), or None when the
        daemon serves sessions as root."""
        res = self.engine.run(self.host, ["sed", "-n", "s/^O RunAsUser=//p", CF])
        return res.stdout.strip() or None

    def set_run_as_user(self, user: str, group: str, check: bool = True) -> ApplyResult:
        """Serve SMTP sessions as ``user:group`` instead of root (confRUN_AS_USER).

        The listener still starts as root to bind port 25; every child that talks to a
        client gives root up. What the children must then read or write is handed to
        ``user`` first: the MTA queue (mode 0700, its owner only), the SASL database and
        the TLS private keys named in sendmail.cf (their modes kept), and
        /run/sendmail/mta for the control socket (also at boot, via tmpfiles.d). Without
        that, Sendmail still starts but AUTH and STARTTLS stop working; the result's
        ``warnings`` show such complaints. The hand-over stays if the change is refused:
        the root-run daemon reads those files all the same.
        """
        self.engine.run(self.host, ["sh", "-s", user, group, QUEUE], input=_HAND_OVER).check()
        return self.change(lambda mc: mc.set_define("confRUN_AS_USER", f"{user}:{group}"), check)

    def install_tls(self, cert_pem: str, key_pem: str, ca_pem: str,
                    directory: str = "/etc/mail/tls") -> dict[str, str]:
        """Put a certificate, its key (0600, owned by the RunAsUser if there is one) and the
        CA in ``directory``; return their paths (for confSERVER_CERT, confSERVER_KEY,
        confCACERT in sendmail.mc)."""
        paths = {"cert": f"{directory}/relay.crt", "key": f"{directory}/relay.key",
                 "ca": f"{directory}/lab-ca.crt"}
        self.engine.write_file(self.host, paths["cert"], cert_pem, "0644")
        self.engine.write_file(self.host, paths["key"], key_pem, "0600")
        self.engine.write_file(self.host, paths["ca"], ca_pem, "0644")
        run_as = self.run_as_user()
        if run_as:
            self.engine.run(self.host, ["chown", run_as.split(":")[0], paths["key"]]).check()
        return paths

    def _run(self, cand: str, text: str, check: bool, staged: list[str] | None = None) -> ApplyResult:
        result, body = run_pipeline(self.engine, self.host,
                                    (SCRIPTS / "sendmail-apply.sh").read_text(),
                                    [cand, WORK, LAST_GOOD, BASELINE, *(staged or [])])
        if result.ok:
            result.diff = "\n".join(body)
            result.changes = [ln for ln in body if re.match(r"^[-+](O |D|C|F)", ln)]
            rules = [ln for ln in body if ln not in result.changes]
            if rules:
                result.changes.append(f"({len(rules)} lines of rules, maps, mailers or headers "
                                      "changed in sendmail.cf: see .diff)")
            return result
        result.errors = [ln.replace(cand, "sendmail.mc").replace(f"{WORK}/sendmail.cf.new",
                                                                 "sendmail.cf (new)")
                         for ln in body]
        if result.stage == "m4":
            result.hints = _m4_hints(result.errors, text)
        elif result.stage == "cf":
            result.hints = _option_hints(self.engine, self.host, result.errors, text)
        if not result.hints:
            result.hints = self._changed_lines(text)
        return self._refused(result, check)

    def _changed_lines(self, text: str) -> list[str]:
        """The lines of ``text`` that differ from the last good sendmail.mc."""
        res = self.engine.run(self.host, ["sh", "-c", f"tar -xzOf {LAST_GOOD} {MC[1:]} 2>/dev/null"
                                          f" || tar -xzOf {BASELINE} {MC[1:]}"])
        if not res.ok:
            return []
        old, new = res.stdout.splitlines(), text.splitlines()
        hints = []
        for tag, _i1, _i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new).get_opcodes():
            if tag in ("replace", "insert"):
                hints += [f"sendmail.mc line {n + 1} (changed): {new[n].strip()}"
                          for n in range(j1, j2) if new[n].strip()]
        return hints[:10]

    @staticmethod
    def _refused(result: ApplyResult, check: bool) -> ApplyResult:
        if check and not result.ok:
            raise ConfigRejected(result)
        return result
