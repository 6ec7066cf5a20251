"""The provisioning scripts shared by both engines."""

import os
import shutil
import subprocess

import pytest

from labkit import images
from labkit import topology as topolib

SCRIPTS = sorted(topolib.PROVISION_DIR.rglob("*.sh"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(topolib.PROVISION_DIR)))
def test_provision_script_is_valid_bash(script):
    res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_every_host_has_a_role_script():
    for name in topolib.load().hosts:
        assert (topolib.PROVISION_DIR / "roles" / f"{name}.sh").is_file(), name


def test_provision_refuses_an_unknown_host():
    res = subprocess.run(["bash", str(topolib.PROVISION_DIR / "provision.sh"), "mailhub"],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert "unknown host 'mailhub'" in res.stderr


def test_image_key_follows_only_its_own_role_inputs():
    relay = topolib.load().host("relay")
    inputs = {str(p.relative_to(topolib.PROVISION_DIR)) for p in images._provision_inputs(relay)}
    assert "roles/relay.sh" in inputs and "files/relay/sendmail.mc" in inputs
    assert "roles/server.sh" not in inputs and "files/server/main.cf" not in inputs


def test_image_key_changes_when_packages_change():
    relay = topolib.load().host("relay")
    from dataclasses import replace
    assert images.image_key(relay) != images.image_key(replace(relay, packages=("postfix",)))


FAKE_MMDEBSTRAP = r"""#!/usr/bin/env python3
# Stands in for mmdebstrap: makes a minimal tree at the destination, copies the
# provisioning tree in as the copy-in hook says, and (first call only) edits the live
# role of client while the "build" runs, as a developer saving a file would.
import os, shutil, sys
args = sys.argv[1:]
hook = next(a for a in args if a.startswith("--customize-hook=copy-in "))
source, parent = hook.split(" ", 1)[1].split(" ")
dest = [a for a in args if not a.startswith("--")][1]
os.makedirs(os.path.join(dest, "etc"))
open(os.path.join(dest, "etc", "os-release"), "w").write("ID=debian\n")
shutil.copytree(source, dest + parent + "/" + os.path.basename(source))
live = os.environ["LIVE_ROLE"]
if not os.path.exists(live + ".edited"):
    open(live, "a").write("# edited while the image was being built\n")
    open(live + ".edited", "w").close()
"""


def test_an_image_holds_the_provisioning_its_name_says_even_if_a_file_changes_meanwhile(
        tmp_path, monkeypatch):
    live = tmp_path / "provision"
    shutil.copytree(topolib.PROVISION_DIR, live)
    fake = tmp_path / "bin" / "mmdebstrap"
    fake.parent.mkdir()
    fake.write_text(FAKE_MMDEBSTRAP)
    fake.chmod(0o755)
    monkeypatch.setattr(images, "PROVISION_DIR", live)
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.setenv("LIVE_ROLE", str(live / "roles" / "client.sh"))
    topo = topolib.load()
    before = images.image_key(topo.host("client"), live)
    built = images.ensure_images(topo, progress=lambda msg: None)
    client = built["client"]
    assert client.key == before  # named after the files as they were when it began
    inside = client.path / "usr/local/share/labkit/provision/roles/client.sh"
    assert "edited while" not in inside.read_text()
    assert "edited while" in (live / "roles" / "client.sh").read_text()
    again = images.ensure_images(topo, progress=lambda msg: None)  # the edit: a new image
    assert again["client"].key == images.image_key(topo.host("client"), live) != before
    assert "edited while" in (again["client"].path / "usr/local/share/labkit/provision/roles/"
                              "client.sh").read_text()
