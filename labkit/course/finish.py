"""``labkit finish``: the lab back to its baseline, saying what that removed.

Before the MTA hosts are reset, each host's mail configuration is compared with the
baseline its provisioning kept (``/var/lib/labkit/baseline/mail-config.tar.gz``: /etc/mail
or /etc/postfix, the aliases, the SASL database): every file added, removed, changed, or
given another mode or owner is listed, with the course's systemd drop-ins and the host's
snapshots. Then the hosts are reset and the faults recorded for the lab are forgotten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from labkit import mta
from labkit.course import faults
from labkit.course.hardening import MTA_HOSTS
from labkit.engines.base import Engine

if TYPE_CHECKING:
    from labkit.lab import Lab

BASELINE = "/var/lib/labkit/baseline/mail-config.tar.gz"

#: Lists the baseline's files and the live ones: "E path type mode owner link" per entry,
#: "M md5 path" per regular file, under "== base" and "== live".
_WALK = r"""
b=BASELINE
[ -f "$b" ] || { echo "no baseline at $b"; exit 3; }
d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
tar -C "$d" -xzf "$b"
tops=$(tar -tzf "$b" | awk -F/ 'NF { print $1 "/" $2 }' | sed 's,/$,,' | sort -u)
walk() {
    cd "$1" || exit 3
    for t in $tops; do
        [ -e "$t" ] || [ -L "$t" ] || continue
        find "$t" -printf 'E\t%p\t%y\t%m\t%u:%g\t%l\n'
        find "$t" -type f -exec md5sum {} + | sed 's/^\([0-9a-f]*\)  /M\t\1\t/'
    done
}
echo "== base"; (walk "$d")
echo "== live"; (walk /)
echo "== dropins"; ls -1d /etc/systemd/system/labkit-*.service.d/* 2>/dev/null
exit 0
""".replace("BASELINE", BASELINE)


def _parse(section: list[str]) -> dict[str, dict[str, str]]:
    entries: dict[str, dict[str, str]] = {}
    for line in section:
        parts = line.split("\t")
        if parts[0] == "E" and len(parts) >= 6:
            entries.setdefault(parts[1], {}).update(type=parts[2], mode=parts[3].zfill(4),
                                                    owner=parts[4], link=parts[5])
        elif parts[0] == "M" and len(parts) >= 3:
            entries.setdefault(parts[2], {})["md5"] = parts[1]
    return entries


def config_changes(engine: Engine, host: str) -> list[str]:
    """What differs on ``host`` from its baseline mail configuration, one line each:
    "added /etc/mail/tls/relay.key", "changed /etc/mail/sendmail.mc", "mode 0644 (was
    0600) /etc/sasldb2", "removed /etc/mail/smrsh/procmail", and the course's drop-ins."""
    out = engine.run(host, ["bash", "-c", _WALK]).check().stdout.splitlines()
    parts: dict[str, list[str]] = {"base": [], "live": [], "dropins": []}
    current = None
    for line in out:
        if line.startswith("== "):
            current = line[3:].strip()
            continue
        if current in parts and line:
            parts[current].append(line)
    base, live = _parse(parts["base"]), _parse(parts["live"])
    lines = []
    for path in sorted(set(base) | set(live)):
        was, now = base.get(path), live.get(path)
        shown = "/" + path
        if was is None:
            lines.append(f"added {shown}")
        elif now is None:
            lines.append(f"removed {shown}")
        elif was.get("type") != now.get("type"):
            lines.append(f"replaced {shown}")
        else:
            if was.get("md5") != now.get("md5") or was.get("link") != now.get("link"):
                lines.append(f"changed {shown}")
            if was.get("mode") != now.get("mode"):
                lines.append(f"mode {now.get('mode')} (was {was.get('mode')}) {shown}")
            if was.get("owner") != now.get("owner"):
                lines.append(f"owner {now.get('owner')} (was {was.get('owner')}) {shown}")
    lines += [f"added {p}" for p in parts["dropins"]]
    return lines


@dataclass
class Finished:
    """What ``finish`` removed: per host, the changed files and the snapshots; the
    faults the lab had been given."""
    lab: str
    changes: dict[str, list[str]] = field(default_factory=dict)
    snapshots: dict[str, list[str]] = field(default_factory=dict)
    faults: list[faults.FaultRecord] = field(default_factory=list)

    def text(self) -> str:
        out = []
        for host, lines in self.changes.items():
            if not lines and not self.snapshots.get(host):
                out.append(f"{host}: already at its baseline, reset all the same")
                continue
            out.append(f"{host}: {len(lines)} change(s) to its mail configuration removed")
            out += [f"  {ln}" for ln in lines]
            if self.snapshots.get(host):
                out.append(f"  snapshots removed: {', '.join(self.snapshots[host])}")
        for r in self.faults:
            out.append(f"fault {r.fault} (injected {r.at}) removed with the rest")
        out.append(f"lab {self.lab!r} is at its baseline: relay, mx2 and server as "
                   "provisioned; internet and client were not touched")
        return "\n".join(out)

    def __str__(self) -> str:
        return self.text()


def finish(lab: Lab, progress: Callable[[str], None] | None = None) -> Finished:
    """Reset the MTA hosts of ``lab`` to their baseline, after listing what differs."""
    done = Finished(lab.name)
    for host in MTA_HOSTS:
        done.changes[host] = config_changes(lab.engine, host)
        before = mta.snapshot_list(lab.engine, host)
        lab.engine.reset(host, progress)
        after = set(mta.snapshot_list(lab.engine, host))
        done.snapshots[host] = [s for s in before if s not in after]
    done.faults = faults.forget(lab)
    return done
