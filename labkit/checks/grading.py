"""Grading: an assignment (which checks, their weights, a pass mark) applied to labs.

An assignment is a small YAML file::

    title: Relay control and privacy
    pass_mark: 70            # percent of the points, default 100
    sections: ["04", "08"]   # every check of these sections, weight 1 each
    checks:                  # more checks, or other weights: an id, or {id: weight}
      - privacy.vrfy_disabled: 2
      - rbl.listed_client_refused

The grade comes only from running the checks against each lab (probing its servers):
a check that passed earns its weight, a failed one nothing, and one that could not
observe (error) nothing either, and marks that lab's grade INCOMPLETE so nobody takes
a lab that was down for a lab that was wrong.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from labkit.checks.base import Check, Result, Status
from labkit.checks.report import Report
from labkit.checks.runner import DEFAULT_JOBS, for_section, get, run_checks
from labkit.errors import LabkitError

if TYPE_CHECKING:
    from labkit.lab import Lab


class AssignmentError(LabkitError):
    """The assignment file is unreadable or names something that does not exist."""


@dataclass
class Assignment:
    """Which checks count, with what weight, and the mark needed to pass."""
    title: str
    weights: dict[str, float]  # check id -> points, in course order
    pass_mark: float = 100.0   # percent
    source: str = ""

    @property
    def checks(self) -> list[Check]:
        return [get(i) for i in self.weights]

    @property
    def possible(self) -> float:
        return sum(self.weights.values())

    @classmethod
    def load(cls, path: str | Path) -> Assignment:
        """Read and validate an assignment file; AssignmentError names what is wrong."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise AssignmentError(f"cannot read assignment {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise AssignmentError(f"{path} is not valid YAML: {exc}") from exc
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw: object, source: str = "assignment") -> Assignment:
        if not isinstance(raw, dict):
            raise AssignmentError(f"{source}: expected a mapping with title, sections, checks")
        unknown = set(raw) - {"title", "pass_mark", "sections", "checks"}
        if unknown:
            raise AssignmentError(f"{source}: unknown keys {sorted(unknown)}; known: title, "
                                  "pass_mark, sections, checks")
        weights: dict[str, float] = {}
        try:
            for s in raw.get("sections") or []:
                for c in for_section(str(s)):
                    weights[c.id] = 1.0
            for entry in raw.get("checks") or []:
                items = entry.items() if isinstance(entry, dict) else [(entry, 1.0)]
                for check_id, weight in items:
                    get(str(check_id))
                    weights[str(check_id)] = _number(weight, f"{source}: weight of {check_id}")
        except LabkitError as exc:
            raise AssignmentError(f"{source}: {exc}") from exc
        if not weights:
            raise AssignmentError(f"{source}: names no checks (give sections or checks)")
        if any(w < 0 for w in weights.values()) or not sum(weights.values()):
            raise AssignmentError(f"{source}: weights must be positive")
        pass_mark = _number(raw.get("pass_mark", 100), f"{source}: pass_mark")
        if not 0 <= pass_mark <= 100:
            raise AssignmentError(f"{source}: pass_mark is a percentage (0 to 100)")
        ordered = {c.id: weights[c.id] for c in _course_order(weights)}
        return cls(str(raw.get("title") or source), ordered, pass_mark, source)


def _number(value: object, what: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise AssignmentError(f"{what} must be a number, not {value!r}") from None


def _course_order(weights: dict[str, float]) -> list[Check]:
    from labkit.checks.runner import all_checks
    return [c for c in all_checks() if c.id in weights]


@dataclass
class Grade:
    """One lab (or submitted notebook) graded against an assignment. ``cell_errors``: the
    errors a submitted notebook's cells raised when run (shown, never graded)."""
    lab: str
    assignment: Assignment
    report: Report
    cell_errors: list[str] = field(default_factory=list)

    def points(self, result: Result) -> float:
        return self.assignment.weights[result.check_id] if result.passed else 0.0

    @property
    def score(self) -> float:
        return sum(self.points(r) for r in self.report.results)

    @property
    def percent(self) -> float:
        return 100.0 * self.score / self.assignment.possible

    @property
    def complete(self) -> bool:
        """False when a check could not observe: the grade is not final."""
        return not self.report.count(Status.ERROR)

    @property
    def verdict(self) -> str:
        if not self.complete:
            return "INCOMPLETE"
        return "PASS" if self.percent >= self.assignment.pass_mark else "FAIL"

    def to_dict(self) -> dict:
        return {"lab": self.lab, "score": self.score, "possible": self.assignment.possible,
                "percent": round(self.percent, 1), "verdict": self.verdict,
                "cell_errors": self.cell_errors,
                "checks": [{**r.to_dict(), "points": self.points(r),
                            "possible": self.assignment.weights[r.check_id]}
                           for r in self.report.results]}

    def text(self) -> str:
        """What a learner reads: each check's points, and for each failure what the probe
        saw and what to do."""
        lines = [f"lab {self.lab!r}: {self.score:g} of {self.assignment.possible:g} points "
                 f"({self.percent:.0f}%), {self.verdict} (pass mark {self.assignment.pass_mark:g}%)"]
        for r in self.report.results:
            lines.append(f"  {r.status.value.upper():6} {self.points(r):>4g}/"
                         f"{self.assignment.weights[r.check_id]:<4g} {r.check_id}: {r.title}")
            if not r.passed:
                lines.append(f"         {r.summary}")
                if r.hint:
                    lines.append(f"         what to do: {r.hint}")
        return "\n".join(lines)


@dataclass
class ClassReport:
    """Every lab graded against one assignment: one row per lab."""
    assignment: Assignment
    grades: list[Grade] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(g.complete for g in self.grades)

    def table(self) -> str:
        width = max([len(g.lab) for g in self.grades] + [3])
        lines = [f"{self.assignment.title}: {len(self.grades)} labs, pass mark "
                 f"{self.assignment.pass_mark:g}%",
                 f"{'lab':{width}}  {'points':>11}  {'%':>4}  verdict     failed / error"]
        for g in self.grades:
            bad = [f"{r.check_id}{' (error)' if r.status is Status.ERROR else ''}"
                   for r in g.report.results if not r.passed]
            lines.append(f"{g.lab:{width}}  {g.score:>5g}/{self.assignment.possible:<5g}  "
                         f"{g.percent:>4.0f}  {g.verdict:10}  {', '.join(bad) or '-'}")
        return "\n".join(lines)

    def to_csv(self) -> str:
        """One row per lab: each check's points (or 'error'), total, percent, verdict."""
        ids = list(self.assignment.weights)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["lab", *ids, "score", "possible", "percent", "verdict"])
        for g in self.grades:
            by_id = {r.check_id: r for r in g.report.results}
            writer.writerow([g.lab, *("error" if by_id[i].status is Status.ERROR
                                      else f"{g.points(by_id[i]):g}" for i in ids),
                             f"{g.score:g}", f"{self.assignment.possible:g}",
                             f"{g.percent:.1f}", g.verdict])
        return out.getvalue()

    def to_json(self) -> str:
        return json.dumps({"assignment": {"title": self.assignment.title,
                                          "source": self.assignment.source,
                                          "pass_mark": self.assignment.pass_mark,
                                          "weights": self.assignment.weights},
                           "labs": [g.to_dict() for g in self.grades]}, indent=2)


def grade(labs: Iterable[Lab], assignment: Assignment, at_once: int = 4,
          jobs: int = DEFAULT_JOBS, on_grade: Callable[[Grade], None] | None = None
          ) -> ClassReport:
    """Run the assignment's checks against every lab (``at_once`` labs at a time) and
    grade each; ``on_grade`` is called as each lab's grade comes in."""
    labs = list(labs)

    def one(lab: Lab) -> Grade:
        result = Grade(lab.name, assignment, run_checks(lab, assignment.checks, jobs=jobs))
        if on_grade:
            on_grade(result)
        return result
    with ThreadPoolExecutor(max_workers=max(1, min(at_once, len(labs)))) as pool:
        grades = list(pool.map(one, labs))
    return ClassReport(assignment, grades)


# --- submitted notebooks ------------------------------------------------------------------

#: Labs graded at once by default (``labkit grade --at-once``): each boots four hosts and
#: runs a notebook's kernel; two keep a 2-core machine busy without timeouts.
DEFAULT_AT_ONCE = 2


def submission_section(path: Path) -> str:
    """The course section a submitted notebook belongs to (its metadata ``labkit.section``,
    as generated from the solution); AssignmentError if it does not say."""
    import nbformat
    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError) as exc:
        raise AssignmentError(f"cannot read the notebook {path}: {exc}") from exc
    section = nb.metadata.get("labkit", {}).get("section")
    if not section:
        raise AssignmentError(f"{path} does not say which section it belongs to (notebook "
                              "metadata labkit.section): give --section")
    return str(section)


#: The capstone's assignment, in the repository: every check of the course, the guards
#: weighted (section 11's notebooks are graded on it).
CAPSTONE_ASSIGNMENT = "assignments/capstone.yaml"


def section_assignment(section: str, pass_mark: float = 100.0) -> Assignment:
    """Every check of ``section``, one point each: the default for a submitted notebook;
    for the capstone, whose learner hardens the whole topology, the capstone's assignment.
    It comes from the course, never from the submission (whose cells may be edited)."""
    from labkit.course.hardening import section as course_section
    from labkit.topology import REPO_DIR
    if course_section(section).from_baseline:
        return Assignment.load(REPO_DIR / CAPSTONE_ASSIGNMENT)
    return Assignment.from_dict({"title": f"section {section}", "sections": [section],
                                 "pass_mark": pass_mark}, f"section {section}")


#: Labs (and, run by root, users) of submitted notebooks: lkgrPID-N.
GRADED_LAB_PREFIX = "lkgr"


def run_notebook(path: Path, lab_name: str, timeout: float = 300) -> list[str]:
    """Run every cell of the notebook at ``path`` in a fresh kernel talking to lab
    ``lab_name`` (failing cells do not stop it); the errors it raised, one line each."""
    import nbformat
    from nbclient import NotebookClient

    from labkit.topology import REPO_DIR
    nb = nbformat.read(path, as_version=4)
    path_var = os.pathsep.join(p for p in (str(REPO_DIR), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "LABKIT_LAB": lab_name, "PYTHONPATH": path_var}
    NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
    return [f"cell {i + 1}: {o.ename}: {o.evalue}"[:300] for i, c in enumerate(nb.cells)
            if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]


def _boot(lab: Lab, section: str, say: Callable[[str], None], tries: int = 2) -> None:
    """Start ``lab`` in ``section``'s start state; a lab that does not boot (a busy
    machine) is removed and started once more before giving up."""
    for attempt in range(1, tries + 1):
        try:
            lab.up()
            lab.start(section)
            return
        except LabkitError as exc:
            lab.down()
            if attempt == tries:
                raise
            say(f"  lab {lab.name} did not start ({str(exc).splitlines()[0]}): trying again")


def grade_notebooks(paths: Iterable[Path], section: str | None = None,
                    assignment: Assignment | None = None, at_once: int = DEFAULT_AT_ONCE,
                    progress: Callable[[str], None] | None = None) -> ClassReport:
    """Grade submitted notebooks: each gets a fresh lab of its own in its section's start
    state, its cells run in that lab, then the section's checks run against the lab, and
    the lab is removed. The grade comes only from probing the lab: what the notebook's
    own check cells say (or whether they are there at all) does not count.

    Notebooks are graded ``at_once`` at a time. Run by root, each notebook's cells run as
    a system user made for it, allowed its own lab only (labkit.checks.sandbox); run by
    anybody else, as that user."""
    from labkit.checks import sandbox
    from labkit.course.hardening import section as course_section
    from labkit.lab import Lab
    paths = [Path(p) for p in paths]
    sections = {p: course_section(section or submission_section(p)).number for p in paths}
    if assignment is None:
        numbers = set(sections.values())
        if len(numbers) > 1:
            raise AssignmentError(f"the submissions belong to several sections "
                                  f"({', '.join(sorted(numbers))}): grade them one section "
                                  "at a time, or give an assignment")
        assignment = section_assignment(numbers.pop())
    say = progress or (lambda _msg: None)
    # labs (and users) of this grading apart from any other's, in this process or another
    stamp = "".join(secrets.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(3))
    if os.geteuid() == 0 and not sandbox.available():
        raise sandbox.SandboxError(
            f"submissions run as users of their own, in the learners' environment "
            f"{sandbox.VENV}, which is missing: run setup.sh --install-only")
    service = sandbox.GradingService() if os.geteuid() == 0 else None

    def cells(path: Path, lab: Lab) -> list[str]:
        if service is None:
            return run_notebook(path, lab.name)
        with sandbox.submission_user(lab.name, service) as home:
            say(f"  {path.name}: running its cells as user {lab.name}")
            return sandbox.run_as(lab.name, home, path, lab.name, service)

    def one(index_path: tuple[int, Path]) -> Grade:
        index, path = index_path
        lab = Lab(f"{GRADED_LAB_PREFIX}{stamp}-{index}", progress=None)
        try:
            try:
                say(f"  {path.name}: starting lab {lab.name}")
                _boot(lab, sections[path], say)
            except LabkitError as exc:  # no lab to run the cells in: every check an error
                errors = [f"the lab did not start: {exc}"]
            else:
                try:
                    errors = cells(path, lab)
                except LabkitError as exc:
                    errors = [f"the cells could not run: {exc}"]
                say(f"  {path.name}: cells run ({len(errors)} raised an error); "
                    "checking the lab")
            report = run_checks(lab, assignment.checks)
        finally:
            lab.down()
        report.lab = path.name
        result = Grade(path.name, assignment, report, errors)
        say(f"  {path.name}: {result.score:g}/{assignment.possible:g} {result.verdict}")
        return result
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(at_once, len(paths)))) as pool:
            grades = list(pool.map(one, enumerate(paths)))
    finally:
        if service is not None:
            service.close()
    return ClassReport(assignment, grades)
