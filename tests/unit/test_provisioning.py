"""The provisioning scripts shared by both engines."""

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
