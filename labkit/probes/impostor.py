"""A stand-in for the internal mail server, for a few seconds: what the relay does when the
server it hands mail to cannot prove who it is.

While :func:`impostor_server` runs, the relay's SMTP connections to the server's port 25
are redirected (one nftables rule in the relay's own namespace, nothing else touched) to a
small SMTP server on ``internet`` that offers STARTTLS with a self-signed certificate
naming the server. A relay that requires a verified certificate before it hands mail on
(Sendmail's ``TLS_Srv:`` / ``TLS_Rcpt:`` entries, Postfix's ``smtp_tls_security_level =
verify``) talks to the stand-in but gives it no message; a relay without that policy hands
it the message. Every other host, and every other port, keeps reaching the real server.

The rule and the stand-in are removed when the block ends, whatever happens; a rule left
by an interrupted run is removed before a new one is set.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from labkit import pki
from labkit.engines.base import Engine
from labkit.errors import LabkitError

SCRIPT = Path(__file__).parent / "scripts" / "impostor_mx.py"
#: nftables table the redirection lives in (on the relay), and where the stand-in runs.
TABLE = "labkit_impostor"
#: The command that removes the redirect (the lab service runs exactly this one).
REMOVE_RULE_ARGV = ["sh", "-c", f"nft delete table ip {TABLE} 2>/dev/null; true"]
WORKDIR = "/run/labkit-impostor"
PORT = 10025
LIFETIME = 90.0


class ImpostorError(LabkitError):
    """The stand-in server or the redirection could not be set up."""


@dataclass
class Impostor:
    """The running stand-in: who it stands in for, and what clients did with it."""

    engine: Engine
    host: str
    stands_for: str
    address: str
    certificate: pki.Issued

    def events(self) -> list[dict]:
        """Every event so far: {"event": "ehlo" | "mail" | "message", "peer", "tls", ...}."""
        res = self.engine.run(self.host, ["sh", "-c", f"cat {WORKDIR}/events 2>/dev/null; true"]
                              ).check()
        return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]

    def messages(self) -> list[dict]:
        """The messages handed to the stand-in (mail_from, rcpt_tos, data, tls)."""
        return [e for e in self.events() if e["event"] == "message"]

    def connected(self) -> bool:
        """A client has said EHLO to the stand-in."""
        return any(e["event"] == "ehlo" for e in self.events())


def _nft_rules(table: str, target: str, port: int, to: str, to_port: int) -> str:
    """Connections to target:port go to to:to_port instead, from the address the host has
    on that side (the stand-in's host has no route back to the first one)."""
    return (f"table ip {table} {{\n"
            f"  chain output {{\n"
            f"    type nat hook output priority -100; policy accept;\n"
            f"    ip daddr {target} tcp dport {port} dnat to {to}:{to_port}\n"
            f"  }}\n"
            f"  chain postrouting {{\n"
            f"    type nat hook postrouting priority 100; policy accept;\n"
            f"    ip daddr {to} tcp dport {to_port} masquerade\n"
            f"  }}\n}}\n")


def _remove_rule(engine: Engine, via: str) -> None:
    engine.run_privileged(via, REMOVE_RULE_ARGV)


@contextmanager
def impostor_server(engine: Engine, stands_for: str = "server", via: str = "relay",
                    host: str = "internet") -> Iterator[Impostor]:
    """While the block runs, ``via``'s SMTP connections to ``stands_for`` (port 25) reach a
    stand-in on ``host`` presenting a self-signed certificate for ``stands_for``'s name."""
    topo = engine.topology
    name = topo.host(stands_for).fqdn
    target = str(topo.address_for(stands_for, via))
    address = str(topo.address_for(host, via))
    issued = pki.self_signed(name)
    _remove_rule(engine, via)
    engine.run(host, ["sh", "-c", f"pkill -f {WORKDIR}/impostor_m[x].py; rm -rf {WORKDIR}; "
                                  f"install -d -m 0700 {WORKDIR}; true"]).check()
    engine.write_file(host, f"{WORKDIR}/impostor_mx.py", SCRIPT.read_text(), "0755")
    engine.write_file(host, f"{WORKDIR}/cert.pem", issued.cert_pem, "0644")
    engine.write_file(host, f"{WORKDIR}/key.pem", issued.key_pem, "0600")
    argv = ["python3", f"{WORKDIR}/impostor_mx.py", "--port", str(PORT),
            "--cert", f"{WORKDIR}/cert.pem", "--key", f"{WORKDIR}/key.pem",
            "--events", f"{WORKDIR}/events", "--hostname", name, "--lifetime", str(LIFETIME)]
    start = (f"touch {WORKDIR}/events; setsid {shlex.join(argv)} > {WORKDIR}/log 2>&1 "
             "< /dev/null &")
    engine.run(host, ["sh", "-c", start]).check()
    try:
        deadline = time.monotonic() + 15
        while "ready" not in engine.run(host, ["cat", f"{WORKDIR}/log"]).stdout:
            if time.monotonic() > deadline:
                log = engine.run(host, ["cat", f"{WORKDIR}/log"]).stdout.strip()
                raise ImpostorError(f"the stand-in server on {host} did not start: "
                                    f"{log or 'no output'}")
            time.sleep(0.2)
        rules = _nft_rules(TABLE, target, 25, address, PORT)
        res = engine.run_privileged(via, ["nft", "-f", "-"], input=rules)
        if not res.ok:
            raise ImpostorError(f"could not redirect {via}'s SMTP to {stands_for}: "
                                f"{res.stderr.strip() or res.stdout.strip()}")
        yield Impostor(engine, host, stands_for, address, issued)
    finally:
        _remove_rule(engine, via)
        engine.run(host, ["sh", "-c", f"pkill -f {WORKDIR}/impostor_m[x].py; true"])
