"""A class on one server: one lab per learner, started, watched and stopped together.

The class is a roster (``learner01`` ... or a file of names, each with a password for the
day) kept in ``/var/lib/labkit/class/roster.json`` (mode 0600, root's; ``LABKIT_CLASS``
overrides the folder). Each learner's lab is named after them. :func:`class_up` starts
the labs several at a time; a lab that fails is reported with its reason and the others
go on; Ctrl-C stops the start and removes every lab this call started.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labkit.engines.base import check_lab_name
from labkit.errors import LabkitError

Progress = Callable[[str], None]


class ClassError(LabkitError):
    """A roster that cannot be read, or no class on this machine."""


@dataclass
class Learner:
    name: str
    password: str = ""


@dataclass
class Roster:
    """The learners of the class on this machine, and the engine their labs run on."""
    learners: list[Learner]
    engine: str = "local"
    created: str = field(default_factory=lambda: datetime.datetime.now(
        datetime.UTC).isoformat(timespec="seconds"))
    #: The password of the hub's ``instructor`` (labkit class serve).
    instructor_password: str = field(default_factory=lambda: new_password())

    @property
    def names(self) -> list[str]:
        return [learner.name for learner in self.learners]


def _folder() -> Path:
    return Path(os.environ.get("LABKIT_CLASS", "/var/lib/labkit/class"))


def roster_path() -> Path:
    return _folder() / "roster.json"


def new_password() -> str:
    """A password for the day: four groups of letters and digits, easy to read out."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(4)) for _ in range(3))


def numbered(count: int, prefix: str = "learner") -> list[Learner]:
    """``count`` learners named prefix01, prefix02, ..., each with a new password."""
    if not 1 <= count <= 200:
        raise ClassError(f"a class has 1 to 200 learners, not {count}")
    width = max(2, len(str(count)))
    return [Learner(f"{prefix}{i:0{width}d}", new_password()) for i in range(1, count + 1)]


_LINE = re.compile(r"^\s*([^\s,:#]+)\s*(?:[,:]\s*(\S.*?))?\s*$")


def read_roster(path: str | Path) -> list[Learner]:
    """Learners from a text or CSV file: one per line, ``name`` or ``name,password`` (or
    ``name:password``); '#' starts a comment, a header line ``name,password`` is skipped.
    A learner without a password gets a new one. Names must be valid lab names."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ClassError(f"cannot read the roster {path}: {exc.strerror}") from exc
    learners, seen, problems = [], set(), []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0]
        if not line.strip() or (number == 1 and line.strip().lower().startswith("name")):
            continue
        m = _LINE.match(line)
        if not m:
            problems.append(f"line {number}: {raw.strip()!r} is not 'name' or 'name,password'")
            continue
        name, password = m.group(1), m.group(2) or new_password()
        try:
            check_lab_name(name)
        except LabkitError as exc:
            problems.append(f"line {number}: {exc}")
            continue
        if name in seen:
            problems.append(f"line {number}: {name} is listed twice")
            continue
        seen.add(name)
        learners.append(Learner(name, password))
    if problems:
        raise ClassError(f"roster {path}:\n  " + "\n  ".join(problems))
    if not learners:
        raise ClassError(f"roster {path} names no learner")
    return learners


def save(roster: Roster) -> Path:
    path = roster_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(roster), indent=1))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def load() -> Roster:
    """The class on this machine; ClassError if there is none."""
    try:
        raw = json.loads(roster_path().read_text())
    except FileNotFoundError:
        raise ClassError("no class on this machine: start one with labkit class up "
                         "--learners N (or --roster FILE)") from None
    return Roster([Learner(**x) for x in raw["learners"]], raw.get("engine", "local"),
                  raw.get("created", ""), raw.get("instructor_password", ""))


@dataclass
class Started:
    """How one learner's lab start went."""
    name: str
    ok: bool
    seconds: float
    error: str = ""     # one line
    detail: str = ""    # the whole message (a host's journal, for a lab that did not boot)


def class_up(roster: Roster, at_once: int = 4, progress: Progress | None = None
             ) -> list[Started]:
    """Start a lab for every learner of ``roster`` not yet running, ``at_once`` at a time,
    and record the roster. A lab that fails is reported and the rest go on. On Ctrl-C,
    the labs not started yet are skipped and the ones this call started are removed."""
    from labkit.lab import Lab
    say = progress or (lambda _msg: None)
    save(roster)
    stop = threading.Event()
    started_here: list[str] = []
    lock = threading.Lock()
    results: list[Started] = []
    total = len(roster.learners)

    if roster.engine == "local":  # once, with progress, before the labs start quietly
        from labkit import images, topology
        images.ensure_images(topology.load(), say)

    def one(name: str) -> Started:
        lab = Lab(name, engine=roster.engine, progress=None)
        t0 = time.monotonic()
        if stop.is_set():
            return Started(name, False, 0.0, "not started (interrupted)")
        try:
            if lab.is_running():
                result = Started(name, True, 0.0, "already running")
            else:
                with lock:
                    started_here.append(name)
                lab.up()
                result = Started(name, True, time.monotonic() - t0)
        except Exception as exc:  # noqa: BLE001 - reported per learner, the others go on
            text = str(exc).strip() or type(exc).__name__
            result = Started(name, False, time.monotonic() - t0, text.splitlines()[0], text)
        with lock:
            results.append(result)
            done = len(results)
        state = (f"up in {result.seconds:.1f} s" if result.ok and not result.error
                 else result.error if result.ok else f"FAILED: {result.error}")
        say(f"[{done}/{total}] {name}: {state}")
        return result

    pool = ThreadPoolExecutor(max_workers=max(1, min(at_once, total)))
    futures = [pool.submit(one, n) for n in roster.names]
    try:
        for f in futures:
            f.result()
    except KeyboardInterrupt:
        stop.set()
        say("interrupted: waiting for the labs being started, then removing them")
        pool.shutdown(wait=True, cancel_futures=True)
        for name in started_here:
            Lab(name, engine=roster.engine, progress=None).down()
        raise
    pool.shutdown()
    order = {n: i for i, n in enumerate(roster.names)}
    return sorted(results, key=lambda r: order[r.name])


@dataclass
class LearnerStatus:
    name: str
    lab: str                    # running, stopped, not started
    hosts_up: int = 0
    hosts: int = 0
    services_down: list[str] = field(default_factory=list)
    fault: str = ""


def class_status(roster: Roster | None = None) -> list[LearnerStatus]:
    """Each learner's lab: running or not, hosts and services up, the fault it was given."""
    from labkit.course import faults
    from labkit.lab import Lab
    roster = roster or load()
    given = {(r.engine, r.lab): r.fault for r in faults.records()}

    def one(name: str) -> LearnerStatus:
        lab = Lab(name, engine=roster.engine, progress=None)
        fault = given.get((roster.engine, name), "")
        if not lab.is_running():
            return LearnerStatus(name, "not running", fault=fault)
        hosts = lab.status()
        down = [f"{h.name}:{s.name}" for h in hosts for s in h.services if not s.active]
        return LearnerStatus(name, "running", sum(h.running for h in hosts), len(hosts), down,
                             fault)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, roster.names))


def class_down(progress: Progress | None = None, at_once: int = 4) -> list[str]:
    """Stop every learner's lab and forget the class; the names of the labs stopped."""
    from labkit.lab import Lab
    say = progress or (lambda _msg: None)
    roster = load()

    def one(name: str) -> str:
        Lab(name, engine=roster.engine, progress=None).down()
        say(f"{name}: down")
        return name

    with ThreadPoolExecutor(max_workers=max(1, at_once)) as pool:
        stopped = list(pool.map(one, roster.names))
    roster_path().unlink(missing_ok=True)
    return stopped
