"""Safe configuration of the lab's real MTAs (Sendmail on the relay, Postfix on the server).

:func:`mta_for` gives the right editor for a host; every change is validated, and one
that breaks the MTA is rolled back with the tool's own error lines (see ``apply.py``).
Snapshots of a host's mail configuration live on the host, in /var/lib/labkit/snapshots.
"""

from __future__ import annotations

import re

from labkit.engines.base import Engine
from labkit.errors import LabkitError
from labkit.mta.apply import ApplyResult, ConfigRejected
from labkit.mta.postfix import Postfix
from labkit.mta.sendmail import Sendmail

SNAPSHOTS = "/var/lib/labkit/snapshots"
_SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def mta_for(engine: Engine, host: str) -> Sendmail | Postfix:
    """The MTA editor for ``host``, from the packages the topology gives it."""
    packages = engine.topology.host(host).packages
    if "sendmail" in packages:
        return Sendmail(engine, host)
    if "postfix" in packages:
        return Postfix(engine, host)
    raise LabkitError(f"{host} runs no MTA of the lab (the MTAs are on: "
                      + ", ".join(h.name for h in engine.topology.hosts.values()
                                  if {"sendmail", "postfix"} & set(h.packages)) + ")")


def _config_paths(mta: Sendmail | Postfix) -> str:
    return "etc/mail etc/aliases" if isinstance(mta, Sendmail) else "etc/postfix etc/aliases"


def _check_name(name: str) -> str:
    if not _SNAPSHOT_NAME.match(name):
        raise LabkitError(f"invalid snapshot name {name!r}: letters, digits, '.', '_', '-'")
    return name


def snapshot_save(engine: Engine, host: str, name: str) -> str:
    """Save ``host``'s mail configuration as snapshot ``name``; returns its path on the host."""
    mta = mta_for(engine, host)
    path = f"{SNAPSHOTS}/{_check_name(name)}.tar.gz"
    engine.run(host, ["sh", "-c", f"mkdir -p {SNAPSHOTS} && tar -C / -czf {path} "
                      f"{_config_paths(mta)}"]).check()
    return path


def snapshot_list(engine: Engine, host: str) -> list[str]:
    """Names of ``host``'s snapshots, oldest first."""
    mta_for(engine, host)
    out = engine.run(host, ["sh", "-c", f"ls -1tr {SNAPSHOTS} 2>/dev/null"]).stdout
    return [n[:-len(".tar.gz")] for n in out.split() if n.endswith(".tar.gz")]


def _require(engine: Engine, host: str, name: str) -> str:
    path = f"{SNAPSHOTS}/{_check_name(name)}.tar.gz"
    if name not in snapshot_list(engine, host):
        known = ", ".join(snapshot_list(engine, host)) or "none"
        raise LabkitError(f"{host} has no snapshot {name!r} (snapshots: {known})")
    return path


def snapshot_diff(engine: Engine, host: str, name: str) -> str:
    """A unified diff from snapshot ``name`` to ``host``'s current configuration."""
    mta = mta_for(engine, host)
    path = _require(engine, host, name)
    script = (f"d=$(mktemp -d) && tar -C $d -xzf {path} && for p in {_config_paths(mta)}; do "
              "diff -ruN --exclude='*.db' --exclude='*.rejected' $d/$p /$p; done; rm -rf $d")
    return engine.run(host, ["sh", "-c", script]).stdout.replace("/tmp/tmp.", "snapshot:/tmp.")


def snapshot_restore(engine: Engine, host: str, name: str, check: bool = True) -> ApplyResult:
    """Put snapshot ``name`` back, validated and applied like any change."""
    mta = mta_for(engine, host)
    path = _require(engine, host, name)
    engine.run(host, ["sh", "-c", f"tar -C / -xzf {path}"]).check()
    return mta.apply_hand_edits(check=check)


__all__ = ["ApplyResult", "ConfigRejected", "Postfix", "Sendmail", "mta_for", "snapshot_diff",
           "snapshot_list", "snapshot_restore", "snapshot_save"]
