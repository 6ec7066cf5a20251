"""The project's Python, notebooks included, passes ruff with the rules in pyproject.toml.

The notebooks are what learners read first; the lab's own scripts (the outside MX sink)
run on the lab's hosts. setup.sh installs ruff with the project's dev extras.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_python_and_notebooks_pass_ruff():
    ruff = shutil.which("ruff")
    assert ruff, "ruff is missing: run ./setup.sh --install-only"
    res = subprocess.run([ruff, "check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
