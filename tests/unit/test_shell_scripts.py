"""Every shell script of the project passes shellcheck (setup.sh installs it).

The provisioning scripts run in both engines' hosts and the MTA apply scripts run on
the lab's hosts, where a quoting slip breaks a learner's lab, not a test's.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def shell_scripts() -> list[str]:
    """Tracked files ending in .sh or starting with a bash or sh shebang, repo-relative."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.split()
    found = []
    for name in files:
        path = REPO / name
        if not path.is_file():
            continue
        if name.endswith(".sh"):
            found.append(name)
            continue
        with path.open("rb") as f:
            head = f.read(32)
        if head.startswith((b"#!/bin/bash", b"#!/bin/sh", b"#!/usr/bin/env bash")):
            found.append(name)
    return sorted(found)


def test_the_project_has_the_shell_scripts_it_is_known_to_have():
    scripts = shell_scripts()
    for expected in ("setup.sh", ".ci/run", "vagrant/provision/provision.sh",
                     "vagrant/provision/vm-isolate.sh", "labkit/mta/scripts/sendmail-apply.sh"):
        assert expected in scripts


@pytest.mark.parametrize("script", shell_scripts())
def test_shell_script_passes_shellcheck(script):
    assert shutil.which("shellcheck"), "shellcheck is missing: run ./setup.sh --install-only"
    res = subprocess.run(["shellcheck", "--external-sources", script], cwd=REPO,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
