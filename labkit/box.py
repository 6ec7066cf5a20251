"""``labkit box build``: the lab's own Vagrant box, built here from Debian's packages.

A training room with poor internet should not download ``debian/bookworm64`` and the lab's
packages on thirty laptops at 9 a.m. This box is Debian 12 for vagrant-libvirt (a qcow2
disk) with, inside it, every package any lab host needs, as a local APT repository
(``/var/lib/labkit/debs``, the only source the box's APT knows): the provisioning's
``apt-get install`` of each host finds them there, and ``vagrant up`` downloads nothing.
The repository holds the packages of every host of the topology (``HOST_PACKAGES``, the
same lists the local engine's images use) and what they depend on; Sendmail and Postfix
cannot be installed side by side, so they wait in the repository until a host's
provisioning installs one of them.

The box is what Vagrant expects of a base box: a ``vagrant`` user with sudo and Vagrant's
public insecure key (Vagrant replaces it with a key of its own at the first ``vagrant
up``), OpenSSH (host keys made at first boot), DHCP on the first interface (the provider's
management network), ifupdown for the private networks Vagrant configures, rsync for the
synced folder. It boots with EXTLINUX from an ext4 partition, with the serial console on.

Building needs root, mmdebstrap, a loop device, extlinux and qemu-img (Debian's
packages: setup.sh installs them); the packages come from Debian's mirrors at build time,
never at ``vagrant up``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from labkit import images as imagelib
from labkit import sysutil
from labkit.errors import LabkitError
from labkit.topology import REPO_DIR, Topology

#: The box's name in Vagrant, and where the Vagrantfile looks for its file by default.
BOX_NAME = "labkit/bookworm"
DEFAULT_BOX = REPO_DIR / "vagrant" / "boxes" / "labkit-bookworm-libvirt.box"
#: What a Vagrant base box needs beyond the lab hosts' own base packages.
VM_PACKAGES = (
    "linux-image-amd64", "initramfs-tools", "openssh-server", "sudo", "ifupdown",
    "isc-dhcp-client", "rsync", "apt-utils", "dbus",
)
#: The local APT repository inside the box.
REPO_IN_BOX = "/var/lib/labkit/debs"
#: Vagrant's public insecure key, as Debian's vagrant package ships it.
VAGRANT_PUBKEYS = sorted(Path("/usr/share/rubygems-integration/all/gems").glob(
    "vagrant-*/keys/vagrant.pub"))
DISK_GB = 8
PARTITION_OFFSET = 1024 * 1024  # the first partition starts at 1 MiB
MBR = Path("/usr/lib/syslinux/mbr/mbr.bin")
TOOLS = {"mmdebstrap": "mmdebstrap", "extlinux": "extlinux", "qemu-img": "qemu-utils",
         "sfdisk": "fdisk", "losetup": "mount", "mkfs.ext4": "e2fsprogs"}

Progress = Callable[[str], None]


class BoxBuildError(LabkitError):
    """The box could not be built; the message says what failed."""


@dataclass
class BuiltBox:
    path: Path
    size: int          # bytes of the .box file
    seconds: float
    packages: int      # .deb files in the box's local repository
    from_cache: bool = False

    def summary(self) -> str:
        how = "from the cache" if self.from_cache else f"built in {self.seconds:.0f} s"
        return (f"{self.path} ({self.size / 1e6:.0f} MB, {self.packages} packages in its "
                f"local repository, {how})")


#: Bumped when the recipe changes in a way its inputs do not show.
RECIPE_VERSION = "1"


def box_key(topology: Topology) -> str:
    """A short hash of everything the box is made of: Debian's suite and mirrors, its
    packages, every host's packages, this recipe."""
    h = hashlib.sha256()
    h.update(f"{RECIPE_VERSION}|{imagelib.SUITE}|{imagelib.MIRRORS}|{imagelib.BASE_PACKAGES}|"
             f"{VM_PACKAGES}|{sorted(host_packages(topology).items())}|{DISK_GB}".encode())
    h.update(_customize_script(topology, "").encode())
    h.update(_extlinux_conf("").encode())
    return h.hexdigest()[:12]


def cached_box(topology: Topology) -> Path:
    """Where the box of ``topology`` is kept once built: /var/cache/labkit/boxes."""
    return imagelib.cache_dir() / "boxes" / f"labkit-bookworm-libvirt-{box_key(topology)}.box"


def missing_tools() -> list[str]:
    """Debian packages to install before a box can be built here."""
    need = [pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)]
    if not MBR.exists():
        need.append("syslinux-common")
    if not VAGRANT_PUBKEYS:
        need.append("vagrant")
    return sorted(set(need))


def host_packages(topology: Topology) -> dict[str, list[str]]:
    """Each host's packages (the topology's lists, as the images install them)."""
    return {h.name: list(h.packages) for h in topology.hosts.values()}


def _customize_script(topology: Topology, pubkey: str) -> str:
    """What runs in the box's root file system after mmdebstrap installed its packages:
    every host's packages fetched into the local repository, and the base-box set-up."""
    fetch = "\n".join(
        f"chroot \"$1\" apt-get install --download-only -y -q --no-install-recommends {' '.join(p)}"
        for p in host_packages(topology).values())
    return f"""set -eu
export DEBIAN_FRONTEND=noninteractive
{fetch}
mkdir -p "$1{REPO_IN_BOX}"
mv "$1"/var/cache/apt/archives/*.deb "$1{REPO_IN_BOX}/"
chroot "$1" sh -c 'cd {REPO_IN_BOX} && apt-ftparchive packages . > Packages'
echo "deb [trusted=yes] file:{REPO_IN_BOX} ./" > "$1/etc/apt/sources.list"
rm -f "$1"/etc/apt/sources.list.d/*
chroot "$1" useradd --create-home --shell /bin/bash --user-group vagrant
echo vagrant:vagrant | chroot "$1" chpasswd
install -d -m 0700 -o 1000 -g 1000 "$1/home/vagrant/.ssh"
printf '%s\\n' '{pubkey}' > "$1/home/vagrant/.ssh/authorized_keys"
chown 1000:1000 "$1/home/vagrant/.ssh/authorized_keys"
chmod 0600 "$1/home/vagrant/.ssh/authorized_keys"
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$1/etc/sudoers.d/vagrant"
chmod 0440 "$1/etc/sudoers.d/vagrant"
echo 'UseDNS no' > "$1/etc/ssh/sshd_config.d/vagrant.conf"
rm -f "$1"/etc/ssh/ssh_host_*
cat > "$1/etc/systemd/system/labkit-ssh-host-keys.service" <<'UNIT'
[Unit]
Description=Host keys for OpenSSH, made at first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
UNIT
chroot "$1" systemctl enable labkit-ssh-host-keys.service
printf 'auto lo\\niface lo inet loopback\\n\\nallow-hotplug eth0\\niface eth0 inet dhcp\\n' \\
    > "$1/etc/network/interfaces"
echo labkit > "$1/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tlabkit\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
    > "$1/etc/hosts"
rm -f "$1/etc/machine-id"; touch "$1/etc/machine-id"
"""


def _run(argv: list[str], what: str, log: Path, progress: Progress | None = None,
         procs: list | None = None) -> None:
    """Run ``argv``, its output appended to ``log`` (lines starting "I: " shown as
    progress); BoxBuildError with the log's tail if it fails."""
    with open(log, "a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        if procs is not None:
            procs.append(proc)
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            out.flush()
            if progress and line.startswith("I: "):
                progress(f"  {line.strip()[:100]}")
        code = proc.wait()
    if code:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise BoxBuildError(f"{what} failed (exit {code}); the end of {log}:\n  "
                            + "\n  ".join(tail))


@contextlib.contextmanager
def _loop(disk: Path, offset: int) -> Iterator[str]:
    dev = subprocess.run(["losetup", "--find", "--show", "--offset", str(offset), str(disk)],
                         capture_output=True, text=True)
    if dev.returncode:
        raise BoxBuildError(f"no loop device for the box's disk: {dev.stderr.strip()}")
    name = dev.stdout.strip()
    try:
        yield name
    finally:
        subprocess.run(["losetup", "--detach", name], capture_output=True)


def _extlinux_conf(root_uuid: str) -> str:
    return (f"DEFAULT debian\nTIMEOUT 1\nPROMPT 0\nSERIAL 0 115200\n\nLABEL debian\n"
            f"  LINUX /vmlinuz\n  INITRD /initrd.img\n"
            f"  APPEND root=UUID={root_uuid} ro console=tty0 console=ttyS0,115200n8 "
            f"net.ifnames=0 biosdevname=0\n")


def _disk(rootfs: Path, raw: Path, log: Path, size_gb: int) -> None:
    """A raw disk: an MBR with EXTLINUX's boot code, one bootable ext4 partition holding
    ``rootfs``, EXTLINUX installed in it."""
    with open(raw, "wb") as f:
        f.truncate(size_gb * 1024 ** 3)
    sector = PARTITION_OFFSET // 512
    table = subprocess.run(["sfdisk", "--quiet", str(raw)], input=f"label: dos\nstart={sector}, "
                           "type=83, bootable\n", text=True, capture_output=True)
    if table.returncode:
        raise BoxBuildError(f"sfdisk could not write the partition table: {table.stderr.strip()}")
    root_uuid = str(uuid.uuid4())
    part_bytes = size_gb * 1024 ** 3 - PARTITION_OFFSET
    (rootfs / "etc" / "fstab").write_text(f"UUID={root_uuid} / ext4 errors=remount-ro 0 1\n")
    boot = rootfs / "boot" / "extlinux"
    boot.mkdir(parents=True, exist_ok=True)
    (boot / "extlinux.conf").write_text(_extlinux_conf(root_uuid))
    with _loop(raw, PARTITION_OFFSET) as dev:
        # EXTLINUX 6.04 reads ext4 without the 64bit and metadata_csum features.
        _run(["mkfs.ext4", "-q", "-F", "-U", root_uuid, "-L", "labkit-root",
              "-O", "^64bit,^metadata_csum", "-d", str(rootfs), dev,
              f"{part_bytes // 1024}k"], "making the file system", log)
        mnt = Path(tempfile.mkdtemp(prefix="labkit-box-mnt-"))
        try:
            _run(["mount", dev, str(mnt)], "mounting the file system", log)
            try:
                _run(["extlinux", "--install", str(mnt / "boot" / "extlinux")],
                     "installing EXTLINUX", log)
            finally:
                subprocess.run(["umount", str(mnt)], check=False)
        finally:
            mnt.rmdir()
    with open(raw, "r+b") as f:
        f.write(MBR.read_bytes()[:440])


def build(topology: Topology, output: Path | None = None, force: bool = False,
          progress: Progress | None = None) -> BuiltBox:
    """The box, in ``output`` (default: vagrant/boxes/labkit-bookworm-libvirt.box): built,
    or taken from the cache when a box of the same inputs was built before (unless
    ``force``). Ctrl-C or SIGTERM stops a build and removes what it made."""
    say = progress or (lambda _m: None)
    output = Path(output or DEFAULT_BOX)
    cached = cached_box(topology)
    if cached.exists() and not force:
        started = time.monotonic()
        _place(cached, output)
        say(f"the box of these inputs was built before: {cached}")
        return BuiltBox(output, output.stat().st_size, time.monotonic() - started,
                        _debs_in(cached), from_cache=True)
    cached.parent.mkdir(parents=True, exist_ok=True)
    with open(cached.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time on a machine: wait for it
        if cached.exists() and not force:
            _place(cached, output)
            return BuiltBox(output, output.stat().st_size, 0.0, _debs_in(cached), True)
        built = _build(topology, cached, DISK_GB, say)
    _place(cached, output)
    _forget_older_box(say)
    built.path = output
    return built


def _forget_older_box(say: Progress) -> None:
    """Vagrant keeps a box it added under its name and never looks at the file again: an
    older labkit/bookworm is removed, so that the next ``vagrant up`` adds this one."""
    if not shutil.which("vagrant"):
        return
    listed = subprocess.run(["vagrant", "box", "list"], capture_output=True, text=True)
    if not any(ln.split()[:1] == [BOX_NAME] for ln in listed.stdout.splitlines()):
        return
    gone = subprocess.run(["vagrant", "box", "remove", BOX_NAME, "--provider", "libvirt",
                           "--all"], capture_output=True, text=True)
    if gone.returncode:
        say(f"Vagrant still has the previous {BOX_NAME} (its VMs use it): remove it once they "
            f"are gone (vagrant box remove {BOX_NAME}), or the next vagrant up uses it")
    else:
        say(f"the previous {BOX_NAME} removed from Vagrant: the next vagrant up adds this one")


def _place(cached: Path, output: Path) -> None:
    """``output`` made the cached box: a hard link where it can be, else a copy."""
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.resolve() == cached.resolve():
        return
    partial = output.with_name(output.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        os.link(cached, partial)
    except OSError:
        shutil.copyfile(cached, partial)
    partial.replace(output)


def _debs_in(box: Path) -> int:
    """How many packages the box's local repository holds (read from its metadata)."""
    with tarfile.open(box) as tar:
        try:
            meta = json.load(tar.extractfile("metadata.json"))  # type: ignore[arg-type]
        except (KeyError, ValueError):
            return 0
    return int(meta.get("labkit_packages", 0))


def _build(topology: Topology, output: Path, size_gb: int, say: Progress) -> BuiltBox:
    if os.geteuid() != 0:
        raise BoxBuildError("building the box needs root (mmdebstrap, a loop device)")
    need = missing_tools()
    if need:
        raise BoxBuildError(f"building the box needs Debian's {', '.join(need)}: "
                            f"apt-get install {' '.join(need)} (setup.sh does)")
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="labkit-box-", dir=imagelib.cache_dir()
                                 if imagelib.cache_dir().is_dir() else None))
    log = imagelib.cache_dir() / "logs" / "box.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    rootfs, raw = work / "rootfs", work / "disk.raw"
    started = time.monotonic()
    procs: list[subprocess.Popen] = []

    def stop(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt
    old = signal.signal(signal.SIGTERM, stop)
    try:
        pubkey = VAGRANT_PUBKEYS[-1].read_text().strip()
        script = work / "customize.sh"
        script.write_text(_customize_script(topology, pubkey))
        packages = ",".join(imagelib.BASE_PACKAGES + VM_PACKAGES)
        say("Debian 12 with a kernel, OpenSSH and the lab's packages (mmdebstrap) ...")
        _run(["mmdebstrap", "--variant=apt", "--mode=root", f"--include={packages}",
              "--aptopt=Acquire::Retries \"3\"",
              "--dpkgopt=path-exclude=/usr/share/doc/*",
              "--dpkgopt=path-include=/usr/share/doc/*/copyright",
              f"--customize-hook=sh {script} \"$1\"",
              imagelib.SUITE, str(rootfs), *imagelib.MIRRORS], "mmdebstrap", log, say, procs)
        debs = len(list((rootfs / REPO_IN_BOX.lstrip("/")).glob("*.deb")))
        say(f"the disk: {size_gb} GB, ext4, EXTLINUX ...")
        _disk(rootfs, raw, log, size_gb)
        say("qcow2, compressed (qemu-img) ...")
        _run(["qemu-img", "convert", "-c", "-O", "qcow2", str(raw), str(work / "box.img")],
             "qemu-img convert", log, None, procs)
        raw.unlink()
        (work / "metadata.json").write_text(json.dumps(
            {"provider": "libvirt", "format": "qcow2", "virtual_size": size_gb,
             "labkit_packages": debs, "labkit_key": box_key(topology)}))
        (work / "Vagrantfile").write_text(
            'Vagrant.configure("2") do |config|\n'
            '  config.vm.provider :libvirt do |libvirt|\n'
            '    libvirt.disk_bus = "virtio"\n'
            '  end\n'
            'end\n')
        say(f"the box file: {output} ...")
        partial = output.with_name(output.name + ".partial")
        with tarfile.open(partial, "w") as tar:
            for name in ("metadata.json", "Vagrantfile", "box.img"):
                tar.add(work / name, arcname=name)
        partial.replace(output)
        return BuiltBox(output, output.stat().st_size, time.monotonic() - started, debs)
    except BaseException:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        output.with_name(output.name + ".partial").unlink(missing_ok=True)
        raise
    finally:
        signal.signal(signal.SIGTERM, old)
        sysutil.remove_tree(work)
