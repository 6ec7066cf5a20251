"""The lab's own Vagrant box, without building one: what goes in it, its cache, and the
libvirt settings for a machine without systemd. tests/vm/ boots a built box for real."""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile

import pytest

from labkit import box, topology
from labkit.engines import libvirtd


@pytest.fixture
def topo():
    return topology.load()


def test_the_box_fetches_every_hosts_packages_into_its_own_repository(topo):
    script = box._customize_script(topo, "ssh-rsa KEY vagrant")
    for host in topo.hosts.values():
        line = next(ln for ln in script.splitlines() if "--download-only" in ln
                    and ln.endswith(" ".join(host.packages)))
        assert "--no-install-recommends" in line, host.name
    assert f'echo "deb [trusted=yes] file:{box.REPO_IN_BOX} ./" > "$1/etc/apt/sources.list"' \
        in script
    assert 'rm -f "$1"/etc/apt/sources.list.d/*' in script
    assert "apt-ftparchive packages ." in script


def test_the_box_is_a_vagrant_base_box(topo):
    script = box._customize_script(topo, "ssh-rsa KEY vagrant")
    assert "useradd --create-home --shell /bin/bash --user-group vagrant" in script
    assert "'ssh-rsa KEY vagrant'" in script and "authorized_keys" in script
    assert "vagrant ALL=(ALL) NOPASSWD: ALL" in script
    assert "iface eth0 inet dhcp" in script and "ssh-keygen -A" in script
    for pkg in ("openssh-server", "sudo", "ifupdown", "rsync", "linux-image-amd64"):
        assert pkg in box.VM_PACKAGES


def test_the_box_boots_its_root_by_uuid_with_a_serial_console():
    conf = box._extlinux_conf("1234-abcd")
    assert "root=UUID=1234-abcd" in conf and "console=ttyS0" in conf
    assert "net.ifnames=0" in conf  # eth0, as the box's DHCP configuration names it


def test_the_box_key_follows_the_hosts_packages(topo):
    same = box.box_key(topo)
    assert box.box_key(topology.load()) == same
    relay = topo.hosts["relay"]
    changed = dataclasses.replace(topo, hosts={**topo.hosts, "relay": dataclasses.replace(
        relay, packages=[*relay.packages, "mutt"])})
    assert box.box_key(changed) != same


def test_missing_tools_are_named_as_debian_packages(monkeypatch):
    monkeypatch.setattr(box.shutil, "which", lambda _tool: None)
    assert {"mmdebstrap", "extlinux", "qemu-utils", "fdisk"} <= set(box.missing_tools())


def _fake_box(path, packages=7):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for name, data in (("metadata.json", json.dumps(
                {"provider": "libvirt", "format": "qcow2", "virtual_size": 8,
                 "labkit_packages": packages}).encode()), ("box.img", b"qcow2")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_box_of_the_same_inputs_comes_from_the_cache(topo, tmp_path, monkeypatch):
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(box, "_build", lambda *a, **k: pytest.fail("built again"))
    _fake_box(box.cached_box(topo))
    out = tmp_path / "class" / "labkit.box"
    built = box.build(topo, out)
    assert built.from_cache and built.packages == 7 and out.read_bytes() == \
        box.cached_box(topo).read_bytes()
    assert "from the cache" in built.summary()


def test_libvirts_settings_are_one_block_written_once(tmp_path):
    text = "# qemu.conf\n#user = \"libvirt-qemu\"\n"
    once = libvirtd._with_block(text, libvirtd.QEMU_SETTINGS)
    assert once.startswith(text) and 'security_driver = "none"' in once
    assert libvirtd._with_block(once, libvirtd.QEMU_SETTINGS) == once
    changed = libvirtd._with_block(once, ('user = "root"',))
    assert changed.count(libvirtd.BEGIN) == 1 and "security_driver" not in changed
