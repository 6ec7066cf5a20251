"""Section 05, RBLs: the DNSBL checks connect from internet's listed and unlisted
addresses; a DNSBL that does not answer gives an error, never a verdict; a DNSBL rule
that refuses everyone when the list is silent fails the guard; swaks agrees."""

import pytest

from labkit.checks import Status
from labkit.course.hardening import DNSBL_MESSAGE
from labkit.mta import Sendmail
from tests.lab.checktools import run

pytestmark = pytest.mark.lab



def silence_dnsbl(lab):
    """Stop rbldnsd and make Unbound forget what it had from it."""
    lab.run("internet", "systemctl stop rbldnsd && systemctl restart unbound").check()


def revive_dnsbl(lab):
    lab.run("internet", "systemctl start rbldnsd && systemctl restart unbound").check()


def test_the_listed_address_is_in_the_lab_and_in_the_dnsbl(lab):
    listed = lab.topology.listed_client("internet")
    assert str(listed.address) in lab.run("internet", ["ip", "-o", "-4", "addr"]).stdout
    assert lab.dns("relay").dnsbl(str(listed.address), "bl.lab.test").listed
    assert not lab.dns("relay").dnsbl(str(lab.topology.host("internet").address),
                                      "bl.lab.test").listed
    assert lab.dns("relay").ptr(str(listed.address)) == ["listed.example.net."]


def swaks_rcpt(lab, source: str | None) -> str:
    relay = str(lab.topology.address_for("relay", "internet"))
    argv = ["swaks", "--server", relay, "--to", "jo@example.com", "--from", "someone@example.net",
            "--quit-after", "RCPT", "--helo", "internet.example.net"]
    if source:
        argv += ["--local-interface", source]
    res = lab.run("internet", argv, timeout=60)
    return res.stdout + res.stderr


@pytest.mark.parametrize("hardened", [False, True], ids=["baseline", "hardened"])
def test_listed_client_check_agrees_with_swaks(state, hardened):
    if hardened:
        state.through("05")
    else:
        state.set()
    lab = state.lab
    listed = str(lab.topology.listed_client("internet").address)
    out = swaks_rcpt(lab, listed)
    swaks_refused = "<** 550" in out
    result = run(lab, "rbl.listed_client_refused").results[0]
    assert swaks_refused is result.passed, out
    assert swaks_refused is hardened
    assert "<-  250" in swaks_rcpt(lab, None).split("RCPT TO")[-1]  # unlisted: accepted


def test_a_dnsbl_that_does_not_answer_gives_an_error_not_a_verdict(state):
    state.through("05")
    lab = state.lab
    silence_dnsbl(lab)
    try:
        result = run(lab, "rbl.listed_client_refused").results[0]
    finally:
        revive_dnsbl(lab)
    assert result.status is Status.ERROR, result
    assert "does not answer" in result.summary


def test_unlisted_guard_fails_when_a_silent_dnsbl_refuses_everyone(state):
    state.through("05")
    state.changed()
    lab = state.lab
    zone = lab.topology.dnsbl["ip_zone"]
    # the 't' argument: when the DNSBL cannot be asked, refuse (temporarily) every client
    Sendmail(lab.engine).change(lambda mc: mc.add_feature("dnsbl", zone, DNSBL_MESSAGE.format(
        zone=zone), "t"))
    assert run(lab, "rbl.unlisted_client_accepted").results[0].passed  # while it answers
    silence_dnsbl(lab)
    try:
        result = run(lab, "rbl.unlisted_client_accepted").results[0]
    finally:
        revive_dnsbl(lab)
    assert result.status is Status.FAILED, result
    assert " 4" in result.summary or ": 4" in result.summary  # a temporary refusal


# --- the same lists on Postfix (section 09: the backup MX), from outside ------------------

def swaks_mx2(lab, *args: str) -> str:
    res = lab.run("internet", ["swaks", "--server", lab.topology.host("mx2").fqdn,
                               "--helo", "internet.example.net", "--to", "jo@example.com",
                               "--quit-after", "RCPT", *args], timeout=60)
    return res.stdout + res.stderr


@pytest.mark.parametrize("hardened", [False, True], ids=["baseline", "hardened"])
def test_postfix_list_checks_agree_with_swaks(state, hardened):
    if hardened:
        state.through("09")
    else:
        state.set()
    lab = state.lab
    listed = str(lab.topology.listed_client("internet").address)
    from_listed = swaks_mx2(lab, "--local-interface", listed, "--from", "someone@example.net")
    listed_sender = swaks_mx2(lab, "--from", "someone@listed.example.net")
    report = run(lab, "postfix.dnsbl_listed_client_refused", "postfix.rhsbl_sender_refused")
    assert ("<** 554" in from_listed) is report["postfix.dnsbl_listed_client_refused"].passed, \
        from_listed
    assert ("<** 554" in listed_sender) is report["postfix.rhsbl_sender_refused"].passed, \
        listed_sender
    assert report.all_passed is hardened, report.table(verbose=True)


def test_postfix_dnsbl_check_gives_an_error_when_the_dnsbl_is_silent(state):
    state.through("09")
    lab = state.lab
    silence_dnsbl(lab)
    try:
        report = run(lab, "postfix.dnsbl_listed_client_refused", "postfix.rhsbl_sender_refused")
    finally:
        revive_dnsbl(lab)
    assert {r.status for r in report.results} == {Status.ERROR}, report.table()
