"""labkit up makes room in root's inotify limits before a lab boots (Debian's 128
instances stop the 7th lab after a 90 s wait otherwise)."""

from pathlib import Path

import pytest

from labkit import Lab, preflight
from tests.lab.conftest import lab_name

pytestmark = [pytest.mark.lab, pytest.mark.solo]

LIMIT = Path("/proc/sys/fs/inotify/max_user_instances")


def test_up_raises_an_inotify_limit_that_leaves_no_room_for_one_more_lab():
    before = LIMIT.read_text()
    in_use = preflight.root_inotify_use()["max_user_instances"]
    LIMIT.write_text(f"{in_use + 4}\n")  # what a machine with six labs looks like
    said: list[str] = []
    lab = Lab(lab_name("k"), progress=said.append)
    try:
        lab.up()
        assert int(LIMIT.read_text()) >= preflight.INOTIFY_RAISE_TO["max_user_instances"]
        assert any("raised fs.inotify.max_user_instances" in s for s in said), said
        assert all(s.running for s in lab.status())
    finally:
        lab.down()
        LIMIT.write_text(before)
