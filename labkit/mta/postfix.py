"""Postfix on a lab host: postconf, master.cf, lookup tables, all applied safely.

Every change is one transaction run on the host (``scripts/postfix-transaction.sh``): keep the
current /etc/postfix, make the change (``postconf -e``, ``-X``, ``-M``, ``-P``,
``postmap``), then refuse it if ``postconf -n`` warns (a misspelt parameter is "unused"),
if ``postfix check`` complains, if the reload fails, or if a test SMTP session to the
host itself gets a 4xx configuration error or makes Postfix log a fatal error or an
unknown restriction. A refused change is rolled back and Postfix reloaded: it keeps
serving with its previous configuration.
"""

from __future__ import annotations

import shlex

from labkit.engines.base import Engine
from labkit.mta.apply import SCRIPTS, ApplyResult, ConfigRejected, run_pipeline

WORK = "/var/lib/labkit/apply"
LAST_GOOD = "/var/lib/labkit/last-good/mail-config.tar.gz"
BASELINE = "/var/lib/labkit/baseline/mail-config.tar.gz"


#: After the transaction, labkit checks the restriction lists, then runs one of these.
COMMIT = f"tar -C / -czf {LAST_GOOD} etc/postfix etc/aliases"
ROLLBACK = (f"rm -rf /etc/postfix && tar -C / -xzf {WORK}/previous.tar.gz && "
            "(postfix reload || systemctl restart postfix)")

#: Postfix 3.7's SMTP access restrictions (postconf(5), SMTPD_ACCESS_README).
RESTRICTIONS = set("""
check_ccert_access check_client_access check_client_a_access check_client_mx_access
check_client_ns_access check_reverse_client_hostname_access
check_reverse_client_hostname_a_access check_reverse_client_hostname_mx_access
check_reverse_client_hostname_ns_access check_sasl_access permit_inet_interfaces
permit_mynetworks permit_sasl_authenticated permit_tls_all_clientcerts permit_tls_clientcerts
reject_unknown_client_hostname reject_unknown_reverse_client_hostname
reject_unknown_forward_client_hostname reject_rbl_client reject_rhsbl_client
reject_rhsbl_reverse_client permit_dnswl_client permit_rhswl_client reject_plaintext_session
reject_unauth_pipelining check_helo_access check_helo_a_access check_helo_mx_access
check_helo_ns_access reject_invalid_helo_hostname reject_non_fqdn_helo_hostname
reject_unknown_helo_hostname reject_rhsbl_helo check_sender_access check_sender_a_access
check_sender_mx_access check_sender_ns_access reject_authenticated_sender_login_mismatch
reject_known_sender_login_mismatch reject_non_fqdn_sender reject_rhsbl_sender
reject_sender_login_mismatch reject_unauthenticated_sender_login_mismatch
reject_unknown_sender_domain reject_unlisted_sender reject_unverified_sender
check_recipient_access check_recipient_a_access check_recipient_mx_access
check_recipient_ns_access permit_auth_destination permit_mx_backup reject_non_fqdn_recipient
reject_rhsbl_recipient reject_unauth_destination defer_unauth_destination
reject_unknown_recipient_domain reject_unlisted_recipient reject_unverified_recipient
check_etrn_access check_policy_service defer defer_if_permit defer_if_reject permit reject
reject_multi_recipient_bounce sleep warn_if_reject check_address_map
reject_invalid_hostname reject_non_fqdn_hostname reject_unknown_hostname
""".split())
#: Restrictions whose next word is their argument (a table, a DNS zone, seconds).
WITH_ARGUMENT = {r for r in RESTRICTIONS if r.startswith("check_")} | {
    "reject_rbl_client", "reject_rhsbl_client", "reject_rhsbl_reverse_client",
    "permit_dnswl_client", "permit_rhswl_client", "reject_rhsbl_helo", "reject_rhsbl_sender",
    "reject_rhsbl_recipient", "sleep"}


def unknown_restrictions(postconf_n: str) -> list[str]:
    """Words of ``*_restrictions`` parameters (and restriction classes) that Postfix does
    not know: smtpd would only find them at the first session that reaches them."""
    params = {}
    for line in postconf_n.splitlines():
        name, _, value = line.partition(" = ")
        params[name.strip()] = value.strip()
    classes = set(params.get("smtpd_restriction_classes", "").replace(",", " ").split())
    problems = []
    for name, value in params.items():
        if not (name.endswith("_restrictions") or name in classes):
            continue
        words = value.replace(",", " ").split()
        skip = False
        for word in words:
            if skip:
                skip = False
                continue
            if word in WITH_ARGUMENT:
                skip = True
            elif word not in RESTRICTIONS and word not in classes and ":" not in word:
                problems.append(f"{name}: unknown restriction {word!r}")
    return problems


class Postfix:
    """The Postfix of one lab host (``server`` by default)."""

    def __init__(self, engine: Engine, host: str = "server") -> None:
        self.engine = engine
        self.host = host
        org = engine.topology.domains["organisation"]
        self._org = org

    def get(self, name: str) -> str:
        """The value in force of parameter ``name`` (``postconf -h``)."""
        return self.engine.run(self.host, ["postconf", "-h", name]).check().stdout.strip()

    def set(self, params: dict[str, str] | None = None, check: bool = True,
            **kwargs: str) -> ApplyResult:
        """``postconf -e name=value`` for each parameter, as one change."""
        items = {**(params or {}), **kwargs}
        return self.transaction([["postconf", "-e", *(f"{k}={v}" for k, v in items.items())]],
                                check)

    def unset(self, *names: str, check: bool = True) -> ApplyResult:
        """``postconf -X``: back to Postfix's default for each parameter."""
        return self.transaction([["postconf", "-X", *names]], check)

    def set_service(self, service: str, line: str, check: bool = True) -> ApplyResult:
        """``postconf -M 'service/type=line'``: a whole master.cf entry."""
        return self.transaction([["postconf", "-M", f"{service}={line}"]], check)

    def set_service_field(self, service: str, field: str, value: str,
                          check: bool = True) -> ApplyResult:
        """``postconf -F 'service/type/field=value'`` (e.g. smtp/inet/chroot=y)."""
        return self.transaction([["postconf", "-F", f"{service}/{field}={value}"]], check)

    def set_table(self, path: str, content: str, kind: str = "hash",
                  params: dict[str, str] | None = None, check: bool = True) -> ApplyResult:
        """Write a lookup table (``postmap`` it if ``kind`` is hash) and set ``params``
        (e.g. ``{"header_checks": "regexp:/etc/postfix/header_checks"}``), as one change."""
        commands = [["install", "-D", "-m", "0644", "/dev/stdin", path]]
        stdin_content = content
        if kind in ("hash", "btree", "cdb", "lmdb"):
            commands.append(["postmap", f"{kind}:{path}"])
        if params:
            commands.append(["postconf", "-e", *(f"{k}={v}" for k, v in params.items())])
        return self.transaction(commands, check, stdin_content=stdin_content)

    def change(self, params: dict[str, str] | None = None,
               tables: dict[str, tuple[str, str]] | None = None,
               fields: dict[str, str] | None = None, check: bool = True) -> ApplyResult:
        """Several changes as ONE validated transaction (one check, one reload): lookup
        ``tables`` ({path: (content, kind)}, postmapped when hashed), ``params`` (postconf
        -e) and master.cf ``fields`` ({"smtp/inet/chroot": "y"}, postconf -F)."""
        commands: list = []
        for path, (content, kind) in (tables or {}).items():
            commands.append((["install", "-D", "-m", "0644", "/dev/stdin", path], content))
            if kind in ("hash", "btree", "cdb", "lmdb"):
                commands.append(["postmap", f"{kind}:{path}"])
        if params:
            commands.append(["postconf", "-e", *(f"{k}={v}" for k, v in params.items())])
        for name, value in (fields or {}).items():
            commands.append(["postconf", "-F", f"{name}={value}"])
        return self.transaction(commands, check)

    def apply_hand_edits(self, check: bool = True) -> ApplyResult:
        """Validate main.cf and master.cf as the learner left them, and reload.

        The hand edits are set aside, the last good configuration put back, and the
        edits applied as one change. When refused, the learner's files are kept as
        main.cf.rejected and master.cf.rejected beside the restored ones.
        """
        edits = f"{WORK}/hand-edits.tar.gz"
        self.engine.run(self.host, ["sh", "-c",
                                    f"mkdir -p {WORK} && tar -C / -czf {edits} etc/postfix && "
                                    f"rm -rf /etc/postfix && (tar -C / -xzf {LAST_GOOD} etc/postfix"
                                    f" 2>/dev/null || tar -C / -xzf {BASELINE} etc/postfix)"]).check()
        result = self.transaction([["tar", "-C", "/", "-xzf", edits]], check=False)
        if not result.ok:
            self.engine.run(self.host, ["sh", "-c",
                                        f"d=$(mktemp -d) && tar -C $d -xzf {edits} && for f in "
                                        "main.cf master.cf; do cp $d/etc/postfix/$f "
                                        "/etc/postfix/$f.rejected; done; rm -rf $d"]).check()
            result.kept_as = "/etc/postfix/main.cf.rejected and /etc/postfix/master.cf.rejected"
            if check:
                raise ConfigRejected(result)
        return result

    def transaction(self, commands: list, check: bool = True,
                    stdin_content: str | None = None) -> ApplyResult:
        """Run ``commands`` on the host as one validated change (see the module doc). A
        command is an argv list, or an (argv, text) pair whose text is its standard input;
        ``stdin_content`` is the standard input of the (first) ``install -D`` command."""
        lines = []
        for c in commands:
            argv, text = c if isinstance(c, tuple) else (c, None)
            if text is None and stdin_content is not None and argv[:2] == ["install", "-D"]:
                text, stdin_content = stdin_content, None
            heredoc = ' <<"LABKIT_EOF"\n' + text.rstrip("\n") + "\nLABKIT_EOF" if text is not None else ""
            lines.append(shlex.join(argv) + heredoc)
        body = "\n".join(lines)
        script = (f"change() {{\n{body}\n}}\n"
                  + (SCRIPTS / "postfix-transaction.sh").read_text())
        result, lines = run_pipeline(self.engine, self.host, script,
                                     [WORK, LAST_GOOD, BASELINE, self._org])
        if result.ok:
            problems = unknown_restrictions(
                self.engine.run(self.host, ["postconf", "-n"]).stdout)
            if problems:
                self.engine.run(self.host, ["sh", "-c", ROLLBACK])
                result.ok, result.stage, result.errors = False, "check", problems
            else:
                self.engine.run(self.host, ["sh", "-c", COMMIT]).check()
                result.changes = lines
                result.diff = "\n".join(lines)
        if not result.ok:
            result.errors = result.errors or lines
            if check:
                raise ConfigRejected(result)
        return result
