"""Section 10's filter in the mail path (the lab's milter on the relay): the checks beside
swaks sending the same attachment, on partly right and differently right set-ups, and when
the filter does not answer."""

from __future__ import annotations

import pytest

from labkit.course.hardening import MILTER, MILTER_DROPIN, harden_logging, restart_milter
from labkit.mta import Sendmail
from tests.lab.checktools import in_netns, run, statuses

pytestmark = pytest.mark.lab

def swaks_exe(lab, tmp_path) -> str:
    """swaks, from internet, sending jo a message with an .exe attachment."""
    exe = tmp_path / "invoice.exe"
    exe.write_bytes(b"MZ\x90\x00" * 16)
    address = str(lab.topology.address_for("relay", "internet"))
    return in_netns(lab, "internet", [
        "swaks", "--server", address, "--ehlo", "internet.example.net",
        "--from", "someone@example.net", "--to", "jo@example.com",
        "--attach-type", "application/octet-stream", "--attach-name", "invoice.exe",
        "--attach", f"@{exe}"])


def test_filter_checks_agree_with_swaks_on_the_baseline(state, tmp_path):
    state.set()
    out = swaks_exe(state.lab, tmp_path)
    report = run(state.lab, "milter.in_mail_path", "milter.unprivileged")
    assert "250 2.0.0" in out and "Message accepted" in out, out  # not filtered
    assert statuses(report) == {"milter.in_mail_path": "failed",
                                "milter.unprivileged": "failed"}, report.table()
    assert "not in the mail path" in report["milter.in_mail_path"].summary
    assert "runs as root" in report["milter.unprivileged"].summary


def test_filter_in_the_path_but_run_as_root_passes_one_check_only(state, tmp_path):
    state.set()
    state.changed()
    Sendmail(state.lab.engine).change(lambda mc: mc.set_mail_filter(*MILTER))
    out = swaks_exe(state.lab, tmp_path)
    report = run(state.lab, "milter.in_mail_path", "milter.unprivileged")
    assert "550 5.7.1 Executable attachments are refused" in out, out
    assert statuses(report) == {"milter.in_mail_path": "passed",
                                "milter.unprivileged": "failed"}, report.table()
    assert "X-Labkit-Filter: checked by the lab's filter" in report["milter.in_mail_path"].summary


def test_a_filter_on_another_port_with_a_dynamic_user_passes_too(state):
    """Another correct means: the filter moved to a port of the learner's choice and run
    as a user systemd makes up for it (DynamicUser=yes)."""
    state.set()
    state.changed()
    lab = state.lab
    lab.write_file("relay", "/etc/systemd/system/labkit-milter.service.d/mine.conf",
                   "[Service]\nDynamicUser=yes\nExecStart=\nExecStart=/usr/bin/python3 "
                   "/usr/local/lib/labkit/labkit-milter.py --socket inet:9999@127.0.0.1\n")
    restart_milter(lab.engine, 9999)
    Sendmail(lab.engine).change(lambda mc: mc.set_mail_filter("mine", "S=inet:9999@127.0.0.1, F=T"))
    report = run(lab, "milter.in_mail_path", "milter.unprivileged")
    assert report.all_passed, report.table(verbose=True)


def test_a_stopped_filter_holds_mail_with_f_t_and_the_user_check_cannot_observe(state):
    state.through("10")
    lab = state.lab
    lab.run("relay", ["systemctl", "stop", "labkit-milter"]).check()
    try:
        report = run(lab, "milter.in_mail_path", "milter.unprivileged")
    finally:
        restart_milter(lab.engine)
    assert statuses(report) == {"milter.in_mail_path": "failed",
                                "milter.unprivileged": "error"}, report.table()
    assert "turns mail away for now" in report["milter.in_mail_path"].summary
    assert "451" in report["milter.in_mail_path"].summary


def test_hardening_twice_leaves_one_filter_line_and_one_drop_in(state):
    state.through("10")
    state.changed()
    harden_logging(state.lab.engine)
    mc = Sendmail(state.lab.engine).read_mc()
    assert list(mc.mail_filters()) == ["labkit"]
    assert "User=labkit-milter" in state.lab.read_file("relay", MILTER_DROPIN)
    assert run(state.lab, "milter.in_mail_path", "milter.unprivileged").all_passed
