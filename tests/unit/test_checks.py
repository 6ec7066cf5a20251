"""The checks framework without a lab: three states, evidence, reports, selection."""

import json
import socket
import xml.etree.ElementTree as ET

import pytest

from labkit import checks
from labkit.checks.base import Check, Status, mask_secrets
from labkit.checks.common import header_fields, product_words
from labkit.checks.report import Report
from labkit.cli import main
from labkit.probes.smtp import SmtpTimeout, Transcript


class FakeEngine:
    def command_hint(self, verb):
        return f"labkit {verb} --lab fake"


class FakeLab:
    name = "fake"
    engine = FakeEngine()

    def __init__(self, running=True):
        self.running = running

    def is_running(self):
        return self.running


def make(func, **kw):
    return Check("test.thing", "A thing", "08", func, **kw)


def test_a_verdict_becomes_passed_or_failed_with_its_evidence():
    ok = make(lambda lab: checks.passed("all good", "C: VRFY root\nS: 252 2.5.2 no")).run(FakeLab())
    assert ok.status is Status.PASSED and ok.evidence.startswith("C: VRFY")
    bad = make(lambda lab: checks.failed("VRFY says 250", hint="set novrfy."),
               hint="see the lesson").run(FakeLab())
    assert bad.status is Status.FAILED and bad.hint == "set novrfy. see the lesson"


def test_an_exception_is_an_error_never_a_verdict():
    def timeout(lab):
        t = Transcript()
        t.add("C", "EHLO x")
        raise SmtpTimeout("relay did not reply within 10 s", t)

    def refused(lab):
        raise ConnectionRefusedError(111, "Connection refused")

    def bug(lab):
        return {}["missing"]

    def cannot(lab):
        raise checks.CannotObserve("the DNSBL does not answer")

    for func in (timeout, refused, bug, cannot):
        result = make(func).run(FakeLab())
        assert result.status is Status.ERROR, func.__name__
        assert result.summary.startswith("could not observe")
    assert "C: EHLO x" in make(timeout).run(FakeLab()).evidence
    assert "Traceback" in make(bug).run(FakeLab()).evidence
    assert "the DNSBL does not answer" in make(cannot).run(FakeLab()).summary


def test_a_negated_check_does_not_pass_when_its_probe_crashes():
    # kathara-lab-checker's trap: "must NOT reach" passed when the probe raised.
    def must_not_connect(lab):
        raise OSError("network unreachable")
    assert make(must_not_connect).run(FakeLab()).status is Status.ERROR


def test_a_check_that_returns_no_verdict_is_an_error():
    assert make(lambda lab: True).run(FakeLab()).status is Status.ERROR


def test_credentials_are_masked_in_evidence():
    text = ("C: AUTH PLAIN AGpvAGxhYnBhc3M=\nS: 235 2.0.0 OK\nC: AUTH LOGIN\n"
            "S: 334 VXNlcm5hbWU6\nC: am8=\nS: 334 UGFzc3dvcmQ6\nC: bGFicGFzcw==\nS: 235 ok\n"
            "C: MAIL FROM:<jo@example.com>")
    masked = mask_secrets(text)
    assert "AGpvAGxhYnBhc3M=" not in masked and "bGFicGFzcw==" not in masked
    assert "C: AUTH PLAIN ********" in masked and masked.count("C: ********") == 2
    assert "C: MAIL FROM:<jo@example.com>" in masked


def test_product_words_tell_versions_from_addresses_and_status_codes():
    assert product_words("relay.example.com ESMTP Sendmail 8.17.1.9/8.17.1.9/Debian-2; x") == [
        "Sendmail", "8.17.1.9", "Debian"]
    assert product_words("2.0.0 This is the mail relay relay.example.com") == []
    assert product_words("from x (internet.example.net [192.168.56.10]) by relay.example.com") == []
    assert product_words("server.example.com ESMTP Postfix (Debian/GNU)") == ["Postfix", "Debian"]


def test_header_fields_are_unfolded():
    msg = "Received: from a\n\tby b (8.17.1.9)\nReceived: from c\nSubject: x\n\nReceived: body"
    assert header_fields(msg, "received") == ["from a by b (8.17.1.9)", "from c"]


def results():
    return [checks.Result("relay.a", "A", "04", Status.PASSED, "fine", "S: 220 <x@y>"),
            checks.Result("relay.b", "B", "04", Status.FAILED, "open: 250 <victim@example.net>",
                          "C: RCPT TO:<victim@example.net>\x07", "close it"),
            checks.Result("relay.c", "C", "04", Status.ERROR, "could not observe: timeout")]


def test_report_exit_codes_follow_the_worst_result():
    assert Report("l", results()[:1]).exit_code == 0
    assert Report("l", results()[:2]).exit_code == 1
    assert Report("l", results()).exit_code == 2


def test_junit_xml_is_what_ci_systems_read():
    root = ET.fromstring(Report("l", results(), seconds=1.5).to_junit())
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert list(cases["relay.a"]) == [cases["relay.a"].find("system-out")]
    failure = cases["relay.b"].find("failure")
    assert failure.get("message") == "open: 250 <victim@example.net>"
    assert "close it" in failure.text and "\x07" not in failure.text
    assert cases["relay.c"].find("error").get("message").startswith("could not observe")
    assert cases["relay.b"].find("skipped") is None


def test_json_and_html_reports_escape_and_keep_every_field():
    report = Report("l", results())
    data = json.loads(report.to_json())
    assert data["totals"] == {"passed": 1, "failed": 1, "error": 1}
    assert data["results"][1]["hint"] == "close it"
    html = report._repr_html_()
    assert "&lt;victim@example.net&gt;" in html and "<victim@" not in html


def test_assert_passed_names_each_check_with_its_hint():
    with pytest.raises(AssertionError, match=r"FAILED relay.b \(B\)[\s\S]*close it"):
        Report("l", results()).assert_passed()


def test_a_lab_not_running_gives_every_check_an_error_at_once():
    report = checks.run_checks(FakeLab(running=False), checks.for_section("08"))
    assert {r.status for r in report.results} == {Status.ERROR}
    assert "labkit up --lab fake" in report.results[0].hint


def test_checks_are_selected_by_id_and_section_in_course_order():
    chosen = checks.select(["privacy.vrfy_disabled"], ["relay"])
    assert chosen[-1].id == "privacy.vrfy_disabled" and chosen[0].section == "04"
    with pytest.raises(checks.UnknownCheckError, match="checks of privacy: "):
        checks.get("privacy.nope")
    with pytest.raises(Exception, match="unknown section 'dkim'"):
        checks.for_section("dkim")


def test_every_check_is_data_with_a_title_a_hint_and_a_lesson():
    for c in checks.all_checks():
        assert c.title and c.hint and c.lesson.startswith("notebooks/"), c.id
        assert c.id.split(".")[0] and c.section.isdigit() and c.weight > 0


def test_check_list_needs_no_lab(capsys):
    assert main(["check", "--list", "--section", "08"]) == 0
    out = capsys.readouterr().out
    assert "privacy.vrfy_disabled" in out and "relay.closed_from_outside" not in out


def test_check_on_a_lab_that_is_not_running_exits_2(capsys):
    name = f"nolab{socket.gethostname()[:3]}".lower()[:12]
    assert main(["check", "--lab", name, "--section", "08"]) == 2
    assert "is not running" in capsys.readouterr().out
