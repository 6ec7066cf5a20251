"""labkit up makes room in root's inotify limits for one more lab, or says exactly what
to run: never a 90-second wait for hosts whose systemd cannot start."""

from pathlib import Path

import pytest

from labkit import preflight
from labkit.errors import PreflightError


def sysctl_dir(tmp_path, instances=128, watches=60000):
    (tmp_path / "max_user_instances").write_text(f"{instances}\n")
    (tmp_path / "max_user_watches").write_text(f"{watches}\n")
    return tmp_path


def test_a_limit_with_room_is_left_alone(tmp_path):
    d = sysctl_dir(tmp_path)
    said = []
    assert preflight.ensure_inotify_room(said.append, d, {"max_user_instances": 0,
                                                          "max_user_watches": 500}) == []
    assert (d / "max_user_instances").read_text() == "128\n" and not said


def test_the_seventh_lab_gets_the_limit_raised_and_is_told(tmp_path):
    d = sysctl_dir(tmp_path)
    said = []
    raised = preflight.ensure_inotify_room(said.append, d, {"max_user_instances": 120,
                                                            "max_user_watches": 500})
    assert raised == ["fs.inotify.max_user_instances 128 -> 1024"]
    assert (d / "max_user_instances").read_text() == "1024\n"
    assert "raised fs.inotify.max_user_instances from 128 to 1024" in said[0]


def test_a_class_starting_labs_at_once_gets_room_for_several_more(tmp_path):
    """Four labs starting together each see the room before any of them holds its
    instances: the limit needs room for four, and is raised with room for many more."""
    d = sysctl_dir(tmp_path, instances=1234)
    raised = preflight.ensure_inotify_room(None, d, {"max_user_instances": 1210,
                                                     "max_user_watches": 500})
    per_lab = preflight.INOTIFY_PER_LAB["max_user_instances"]
    assert raised == [f"fs.inotify.max_user_instances 1234 -> {1210 + 16 * per_lab}"]


def test_a_limit_that_cannot_be_raised_stops_with_the_sysctl_to_run(tmp_path, monkeypatch):
    d = sysctl_dir(tmp_path)
    real_write = Path.write_text

    def read_only(self, *args, **kwargs):
        if self.name == "max_user_instances":
            raise PermissionError(30, "Read-only file system")
        return real_write(self, *args, **kwargs)
    monkeypatch.setattr(Path, "write_text", read_only)
    with pytest.raises(PreflightError, match=r"Run: sysctl -w fs.inotify.max_user_instances=1024"):
        preflight.ensure_inotify_room(None, d, {"max_user_instances": 127, "max_user_watches": 0})


def test_root_inotify_use_counts_this_machines_instances():
    use = preflight.root_inotify_use()
    assert use["max_user_instances"] >= 0 and use["max_user_watches"] >= 0
