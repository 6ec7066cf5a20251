"""A run of checks against one lab, and its faces: a text table, JSON, JUnit XML, HTML."""

from __future__ import annotations

import datetime
import html
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from labkit.checks.base import COLOURS, Result, Status

# Characters XML 1.0 does not allow, even escaped (pytest's junitxml removes them too).
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class ChecksFailedError(AssertionError):
    """Checks that did not pass in a notebook cell; the message has each one's hint, so
    nbval and pytest show what to fix."""


def _xml_text(text: str) -> str:
    return _ILLEGAL_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


@dataclass
class Report:
    """The results of one run of checks against lab ``lab``."""
    lab: str
    results: list[Result]
    started: datetime.datetime = field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC))
    seconds: float = 0.0

    def __repr__(self) -> str:
        return self.table()

    def count(self, status: Status) -> int:
        return sum(1 for r in self.results if r.status is status)

    @property
    def all_passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def exit_code(self) -> int:
        """0 every check passed, 1 a check failed (and none errored), 2 a check errored."""
        if self.count(Status.ERROR):
            return 2
        return 1 if self.count(Status.FAILED) else 0

    def __getitem__(self, check_id: str) -> Result:
        for r in self.results:
            if r.check_id == check_id:
                return r
        raise KeyError(check_id)

    def totals(self) -> str:
        return (f"{self.count(Status.PASSED)} passed, {self.count(Status.FAILED)} failed, "
                f"{self.count(Status.ERROR)} error, of {len(self.results)} checks on lab "
                f"{self.lab!r} in {self.seconds:.1f} s")

    def table(self, verbose: bool = False) -> str:
        """One line per check (id, title, PASS/FAIL/ERROR, seconds), then the totals; with
        ``verbose``, each check's observation, and hint and evidence where it did not pass."""
        width = max((len(r.check_id) for r in self.results), default=10)
        twidth = min(48, max((len(r.title) for r in self.results), default=10))
        lines = [f"{'check':{width}}  {'title':{twidth}}  result  seconds"]
        for r in self.results:
            word = {"passed": "PASS", "failed": "FAIL", "error": "ERROR"}[r.status.value]
            title = r.title if len(r.title) <= twidth else r.title[:twidth - 1] + "…"
            lines.append(f"{r.check_id:{width}}  {title:{twidth}}  {word:6}  {r.seconds:7.1f}")
            if verbose or not r.passed:
                lines.append(f"{'':{width}}    {r.summary}")
            if not r.passed and r.hint:
                lines.append(f"{'':{width}}    what to do: {r.hint}")
            if verbose and r.evidence:
                lines += [f"{'':{width}}    | {ln}" for ln in r.evidence.splitlines()]
        lines.append(self.totals())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict:
        return {"lab": self.lab, "started": self.started.isoformat(timespec="seconds"),
                "seconds": round(self.seconds, 3),
                "totals": {s.value: self.count(s) for s in Status},
                "results": [r.to_dict() for r in self.results]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_junit(self) -> str:
        """JUnit XML as CI systems read it (the shape pytest's junitxml writes): one
        testsuite, one testcase per check; a failure or an error carries a ``message``
        (the observation) and the evidence; every case has the evidence in system-out."""
        suite = ET.Element("testsuite", {
            "name": f"labkit checks ({self.lab})", "tests": str(len(self.results)),
            "failures": str(self.count(Status.FAILED)), "errors": str(self.count(Status.ERROR)),
            "skipped": "0", "time": f"{self.seconds:.3f}",
            "timestamp": self.started.isoformat(timespec="seconds")})
        for r in self.results:
            case = ET.SubElement(suite, "testcase", {
                "classname": f"labkit.checks.{r.check_id.split('.')[0]}",
                "name": r.check_id, "time": f"{r.seconds:.3f}"})
            if not r.passed:
                tag = "failure" if r.status is Status.FAILED else "error"
                child = ET.SubElement(case, tag, {"message": _xml_text(r.summary)})
                child.text = _xml_text("\n".join(x for x in (
                    r.title, f"what to do: {r.hint}" if r.hint else "", r.evidence) if x))
            out = ET.SubElement(case, "system-out")
            out.text = _xml_text(f"{r.summary}\n{r.evidence}".strip())
        root = ET.Element("testsuites")
        root.append(suite)
        ET.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, "unicode") + "\n"

    def _repr_html_(self) -> str:
        e = html.escape
        rows = "".join(
            f"<tr><td><code>{e(r.check_id)}</code></td><td>{e(r.title)}</td>"
            f"<td style='color:{COLOURS[r.status]}'><b>{e(r.status.value.upper())}</b></td>"
            f"<td>{r.seconds:.1f}</td><td>{e(r.summary)}"
            + (f"<br><i>What to do:</i> {e(r.hint)}" if not r.passed and r.hint else "")
            + (f"<details><summary>evidence</summary><pre style='white-space:pre-wrap'>"
               f"{e(r.evidence)}</pre></details>" if r.evidence else "")
            + "</td></tr>" for r in self.results)
        return ("<table><tr><th>check</th><th>title</th><th>result</th><th>s</th>"
                f"<th>what the probe saw</th></tr>{rows}</table><p>{e(self.totals())}</p>")

    def assert_passed(self) -> Report:
        """Raise :class:`ChecksFailedError` naming each check that did not pass, with its
        observation and hint; return self when all passed."""
        bad = [r for r in self.results if not r.passed]
        if bad:
            raise ChecksFailedError("\n".join(
                f"{r.status.value.upper()} {r.check_id} ({r.title}): {r.summary}"
                + (f"\n    what to do: {r.hint}" if r.hint else "") for r in bad))
        return self

