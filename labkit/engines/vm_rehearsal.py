"""Rehearse, on this machine, what ``vagrant up`` does inside each of the lab's VMs.

The vagrant engine's VMs start as plain Debian 12 boxes and are provisioned in a booted
system by ``vagrant/provision/provision.sh HOST``; the local engine's images run the
same script in a chroot while they are built. This module closes the gap without a
hypervisor: each host starts from a plain Debian 12 root file system like a Vagrant box
(mmdebstrap's ``important`` variant plus openssh-server, sudo and rsync), boots with
systemd in a container on the lab's own networks (the local engine's namespaces and
bridges), and then runs ``provision.sh HOST`` from a copy of the repository at /labkit,
where the Vagrantfile's rsync puts it, in the Vagrantfile's host order.

The lab's packages are downloaded into the box once, when it is built (cached beside the
images); a rehearsed host has no route off the lab, so its ``apt-get update`` fails
quietly and apt installs from what the box holds. The VM-only provisioners
(``vm-isolate.sh`` and its ``--lift``) are not run: they manage a NAT interface the
containers do not have.

The rehearsed lab is an ordinary local-engine lab once provisioned: ``Lab(name)`` works
on it and ``LocalEngine(topology, name).down()`` removes it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from labkit import images as imagelib
from labkit.engines.base import Progress, signals_interrupt
from labkit.engines.local import LocalEngine
from labkit.errors import ImageBuildError, LabkitError
from labkit.topology import Topology

#: What a Debian 12 Vagrant box has beyond the ``important`` priority.
BOX_EXTRA = ("openssh-server", "sudo", "rsync")
#: Where the Vagrantfile's rsync synced folder puts the repository in each VM.
GUEST_REPO = "/labkit"
_REPO = Path(__file__).resolve().parents[2]


class ProvisioningError(LabkitError):
    """``provision.sh`` failed in a rehearsed host; the message ends with its output."""


@dataclass
class Rehearsal:
    """What a rehearsal measured, in seconds; ``box_build`` is 0 when the box was cached."""

    lab: str
    box: Path
    box_build: float = 0.0
    boot: dict[str, float] = field(default_factory=dict)
    provision: dict[str, float] = field(default_factory=dict)


def _box_key(topo: Topology) -> str:
    sets = [sorted(h.packages) for h in topo.hosts.values()]
    text = f"{imagelib.SUITE}|{imagelib.MIRRORS}|{BOX_EXTRA}|{sets}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def box_path(topo: Topology) -> Path:
    """Where the box for ``topo`` is cached (it changes when any host's packages do)."""
    return imagelib.cache_dir() / f"vm-rehearsal-box-{_box_key(topo)}"


def build_box(topo: Topology, progress: Progress) -> tuple[Path, float]:
    """Build (or reuse) the box: Debian 12 like a Vagrant box, every lab package downloaded.

    Returns the box's path and the seconds the build took (0 when it was cached).
    Raises ImageBuildError with mmdebstrap's last lines when the build fails.
    """
    dest = box_path(topo)
    if (dest / "usr/lib/os-release").exists():
        return dest, 0.0
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    # One download per host: sendmail and postfix conflict, so no single install has both.
    downloads = [
        "--customize-hook=chroot \"$1\" apt-get install --download-only -y -qq "
        "--no-install-recommends " + " ".join(h.packages)
        for h in topo.hosts.values()
    ]
    progress("building the plain Debian 12 box for the rehearsal (once; about a minute)")
    started = time.monotonic()
    res = subprocess.run(
        ["mmdebstrap", "--variant=important", "--mode=root",
         "--include=" + ",".join(BOX_EXTRA), "--skip=cleanup/apt", *downloads,
         "--customize-hook=rm -f \"$1/etc/machine-id\"; touch \"$1/etc/machine-id\"",
         imagelib.SUITE, str(partial), *imagelib.MIRRORS],
        stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if res.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        tail = "\n".join((res.stdout + res.stderr).splitlines()[-15:])
        raise ImageBuildError(f"building the rehearsal box failed (mmdebstrap exited "
                              f"{res.returncode}):\n{tail}")
    partial.rename(dest)
    for old in imagelib.cache_dir().glob("vm-rehearsal-box-*"):
        if old != dest:  # a box for packages the topology no longer has
            shutil.rmtree(old, ignore_errors=True)
    return dest, time.monotonic() - started


def rehearse(topo: Topology, lab: str, progress: Progress) -> Rehearsal:
    """Boot every host of ``topo`` as a plain box and provision it as Vagrant does.

    Leaves the lab ``lab`` running on the local engine when it returns; on any failure
    (ProvisioningError, HostBootError, ImageBuildError, Ctrl-C, SIGTERM) removes what it
    made.
    """
    box, built = build_box(topo, progress)
    result = Rehearsal(lab, box, built)
    engine = LocalEngine(topo, lab)
    if engine.has_leftovers():
        engine.down()
    try:
        with signals_interrupt():
            engine._write_state({"lab": lab, "engine": engine.kind, "hosts": {}})
            engine._create_networks()
            for host in topo.hosts:
                copy = engine._host_dir(host) / "upper" / GUEST_REPO.lstrip("/")
                for sub in ("vagrant", "labkit"):
                    shutil.copytree(_REPO / sub, copy / sub, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__", ".vagrant"))
                started = time.monotonic()
                engine._start_host(topo.host(host), imagelib.Image(host, box.name, box))
                # The box has none of the role's services yet: wait for systemd only.
                engine._wait_booted([host], progress, check_services=False)
                result.boot[host] = time.monotonic() - started
            for host in topo.hosts:  # the Vagrantfile's order: internet (the lab DNS) first
                progress(f"  provisioning {host} as Vagrant does (provision.sh {host})")
                started = time.monotonic()
                res = engine.run(host, ["bash", f"{GUEST_REPO}/vagrant/provision/provision.sh",
                                        host], timeout=900)
                if res.returncode != 0:
                    out = "\n".join((res.stdout + res.stderr).splitlines()[-25:])
                    raise ProvisioningError(f"provision.sh {host} exited {res.returncode} in "
                                            f"the booted box; its output ends:\n{out}")
                result.provision[host] = time.monotonic() - started
    except BaseException:
        progress(f"rehearsal lab {lab!r} failed; removing what was made")
        engine.down()
        raise
    return result
