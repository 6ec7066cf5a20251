"""Root file systems for the lab's hosts, built with mmdebstrap and cached.

One image per host of the topology: Debian 12 with systemd, the host's packages, and
the host provisioned by ``vagrant/provision/provision.sh HOST`` run inside the image at
build time (the same script Vagrant runs in its VMs). Images are cached under
``/var/cache/labkit/images`` (``LABKIT_CACHE`` overrides), keyed by a hash of every
input, so a change to a provisioning script or the topology rebuilds just what it
touches. Images are read-only once built: each running host gets an overlay on top.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from labkit import sysutil
from labkit.errors import ImageBuildError
from labkit.topology import PROVISION_DIR, Host, Topology

SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
#: Packages every host gets: systemd as init, and the tools a learner expects on a host.
BASE_PACKAGES = (
    "systemd-sysv", "iproute2", "procps", "iputils-ping", "psmisc", "less", "nano",
    "netcat-openbsd", "ca-certificates",
)
#: Bumped when the build recipe itself changes in a way the inputs do not show.
RECIPE_VERSION = "1"
#: Where the provisioning scripts live inside an image.
PROVISION_IN_IMAGE = "/usr/local/share/labkit/provision"

Progress = Callable[[str], None]


def cache_dir() -> Path:
    return Path(os.environ.get("LABKIT_CACHE", "/var/cache/labkit"))


def images_dir() -> Path:
    return cache_dir() / "images"


def _provision_inputs(host: Host, root: Path | None = None) -> list[Path]:
    """The files whose content decides what an image of ``host`` contains (under the
    provisioning tree ``root``, by default the repository's)."""
    root = root or PROVISION_DIR
    role = root / "roles" / f"{host.name}.sh"
    paths = [root / "provision.sh", root / "lib.sh", role,
             root / "generated" / "lab.env",
             root / "generated" / f"host-{host.name}.env"]
    subs = [f"files/{host.name}"]
    if role.exists() and "generated/zones" in role.read_text():
        subs.append("generated/zones")
    for sub in subs:
        tree = root / sub
        if tree.is_dir():
            paths += sorted(p for p in tree.rglob("*") if p.is_file())
    return paths


def image_key(host: Host, root: Path | None = None) -> str:
    """A short hash of every input of ``host``'s image."""
    root = root or PROVISION_DIR
    h = hashlib.sha256()
    h.update(f"{RECIPE_VERSION}|{SUITE}|{MIRRORS}|{BASE_PACKAGES}|{host.packages}".encode())
    for path in _provision_inputs(host, root):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class Image:
    host: str
    key: str
    path: Path

    @property
    def exists(self) -> bool:
        return (self.path / "etc" / "os-release").exists() or (
            self.path / "usr" / "lib" / "os-release").exists()


def image_for(host: Host, root: Path | None = None) -> Image:
    key = image_key(host, root)
    return Image(host.name, key, images_dir() / f"{host.name}-{key}")


def _mmdebstrap_argv(host: Host, dest: Path, provision: Path) -> list[str]:
    packages = ",".join(BASE_PACKAGES + host.packages)
    parent = os.path.dirname(PROVISION_IN_IMAGE)
    return [
        "mmdebstrap", "--variant=apt", "--mode=root", f"--include={packages}",
        "--aptopt=Acquire::Retries \"3\"",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        f"--customize-hook=mkdir -p \"$1{parent}\"",
        f"--customize-hook=copy-in {provision} {parent}",
        f"--customize-hook=chroot \"$1\" bash {PROVISION_IN_IMAGE}/provision.sh {host.name}",
        # A unique machine id per container comes from nspawn; the image has none.
        "--customize-hook=rm -f \"$1/etc/machine-id\"; touch \"$1/etc/machine-id\"",
        SUITE, str(dest), *MIRRORS,
    ]


def _build_one(host: Host, image: Image, progress: Progress, procs: list,
               provision: Path) -> None:
    partial = image.path.with_name(image.path.name + f".partial-{os.getpid()}")
    sysutil.remove_tree(partial)
    log_path = cache_dir() / "logs" / f"{host.name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            _mmdebstrap_argv(host, partial, provision), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        procs.append(proc)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            log.flush()
            if line.startswith("I: ") or line.startswith("[provision"):
                progress(f"  {host.name}: {line.strip()[:100]}")
        rc = proc.wait()
    if rc != 0:
        sysutil.remove_tree(partial)
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-20:])
        raise ImageBuildError(
            f"building the {host.name} image failed (mmdebstrap exited {rc}); "
            f"full log: {log_path}\n{tail}")
    partial.rename(image.path)
    progress(f"  {host.name}: image ready in {time.monotonic() - start:.0f} s "
             f"({sysutil.disk_usage_mb(image.path):.0f} MB)")


def _remove_abandoned_partials() -> None:
    """Remove half-built images left by a build whose process is gone."""
    if not images_dir().is_dir():
        return
    for partial in images_dir().glob("*.partial-*"):
        pid = partial.name.rsplit("-", 1)[-1]
        if not (pid.isdigit() and sysutil.pid_alive(int(pid))):
            sysutil.remove_tree(partial)


def prune(topo: Topology, keep: list[Image]) -> None:
    """Remove cached images of the topology's hosts that are neither wanted nor mounted."""
    keep_paths = {i.path for i in keep}
    in_use = sysutil.overlay_lowerdirs()
    for host in topo.hosts.values():
        for old in images_dir().glob(f"{host.name}-*"):
            if old not in keep_paths and old not in in_use and ".partial-" not in old.name:
                sysutil.remove_tree(old)


def ensure_images(topo: Topology, progress: Progress | None = None,
                  rebuild: bool = False) -> dict[str, Image]:
    """Return an image for every host, building (two at a time) those not cached.

    Shows progress through ``progress``. On failure or Ctrl-C no partial image is left
    in the cache; :class:`ImageBuildError` carries the builder's last lines.
    """
    progress = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    images = {name: image_for(host) for name, host in topo.hosts.items()}
    if not rebuild and all(img.exists for img in images.values()):
        return images
    from labkit.engines.base import signals_interrupt  # engines import this module
    # SIGTERM and SIGHUP stop a build as Ctrl-C does: builders killed, no half image left.
    with signals_interrupt(), _build_lock(progress):
        return _build_missing(topo, images, progress, rebuild)


@contextmanager
def _build_lock(progress: Progress) -> Iterator[None]:
    """One build at a time on this machine: another labkit (a second lab starting, a
    test worker) waits for the images the first one is building instead of building them
    a second time beside it."""
    path = cache_dir() / "images.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress("another labkit is building images: waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build_missing(topo: Topology, images: dict[str, Image], progress: Progress,
                   rebuild: bool) -> dict[str, Image]:
    _remove_abandoned_partials()
    todo = [topo.hosts[n] for n, img in images.items() if rebuild or not img.exists]
    if not todo:
        return images
    images_dir().mkdir(parents=True, exist_ok=True)
    # What is built is a copy of the provisioning tree taken now, and each image is named
    # by that copy's content: an edit made while the build runs cannot end up in an image
    # named after the files as they were before it.
    with tempfile.TemporaryDirectory(prefix="labkit-provision-") as tmp:
        snapshot = Path(tmp) / PROVISION_DIR.name
        shutil.copytree(PROVISION_DIR, snapshot, symlinks=True)
        for host in todo:
            images[host.name] = image_for(host, snapshot)
        todo = [h for h in todo if rebuild or not images[h.name].exists]
        if todo:
            _build_all(topo, todo, images, progress, rebuild, snapshot)
    return images


def _build_all(topo: Topology, todo: list[Host], images: dict[str, Image], progress: Progress,
               rebuild: bool, provision: Path) -> None:
    def why(host: Host) -> str:
        if rebuild:
            return "rebuild asked"
        stale = [p for p in images_dir().glob(f"{host.name}-*") if ".partial-" not in p.name]
        return "its inputs changed" if stale else "not built yet"
    progress("building images (cached in " + str(images_dir()) + "): "
             + "; ".join(f"{h.name}, {why(h)}" for h in todo))
    for host in todo:
        if images[host.name].exists:
            sysutil.remove_tree(images[host.name].path)
    errors: list[BaseException] = []
    procs: list[subprocess.Popen] = []
    pending = list(todo)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not pending or errors:
                    return
                host = pending.pop(0)
            try:
                _build_one(host, images[host.name], progress, procs, provision)
            except BaseException as exc:  # noqa: BLE001 - reported below
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except BaseException:
        with lock:
            pending.clear()
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for t in threads:
            t.join(30)
        for host in todo:
            for partial in images_dir().glob(f"{host.name}-*.partial-*"):
                sysutil.remove_tree(partial)
        raise
    if errors:
        raise errors[0]
    prune(topo, list(images.values()))


def remove_all() -> None:
    """Remove every cached image (``labkit images --clear``)."""
    if images_dir().exists():
        for path in images_dir().iterdir():
            sysutil.remove_tree(path)


def size_mb(images: dict[str, Image]) -> dict[str, float]:
    return {name: sysutil.disk_usage_mb(img.path) for name, img in images.items()}


__all__ = ["Image", "ensure_images", "image_for", "image_key", "prune", "remove_all"]
