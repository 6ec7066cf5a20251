"""The class board: where the whole class stands, for the instructor.

One row per learner, one column per check of the chosen sections, refreshed while the
class works: each learner's lab is graded by probing it (the checks themselves, a few
labs at a time), every ``interval`` seconds. A cell shows PASS, FAIL or ERROR; clicked, the
evidence of what the probe saw. A learner whose count of passed checks has not grown for
``stuck_after`` seconds, and who has not passed everything, stands out. The board exports
as CSV.

``labkit class serve`` runs it as a service of the hub (only the hub's admins, the
instructor, may open it), at ``/services/class-board/``; a key printed at start lets a
classroom screen show it without a login.
"""

from __future__ import annotations

import csv
import html
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from labkit.checks import Check, Result, Status, run_checks

#: How a cell shows each state.
CELL = {Status.PASSED: ("PASS", "#0a7d22"), Status.FAILED: ("FAIL", "#b00020"),
        Status.ERROR: ("ERROR", "#a15c00")}


@dataclass
class Row:
    """One learner on the board."""
    learner: str
    results: dict[str, Result] = field(default_factory=dict)
    checked_at: float = 0.0
    lab_state: str = "not checked yet"
    best: int = 0                 # the most checks passed so far
    progress_at: float = field(default_factory=time.time)   # when ``best`` last grew

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.results.values())


class Board:
    """The class's results, refreshed in the background (see the module doc)."""

    def __init__(self, learners: list[str], checks: list[Check], interval: float = 60,
                 stuck_after: float = 600, at_once: int = 4, engine: str = "local") -> None:
        self.checks = checks
        self.rows = {name: Row(name) for name in learners}
        self.interval = interval
        self.stuck_after = stuck_after
        self.at_once = at_once
        self.engine = engine
        self.refreshed_at = 0.0
        self._lock = threading.Lock()

    def refresh_once(self) -> None:
        """Grade every learner's running lab once."""
        from labkit.lab import Lab

        def one(name: str) -> None:
            lab = Lab(name, engine=self.engine, progress=None)
            try:
                running = lab.is_running()
            except Exception:  # noqa: BLE001 - shown as the lab's state
                running = False
            if not running:
                with self._lock:
                    self.rows[name].lab_state = "lab not running"
                return
            report = run_checks(lab, self.checks)
            now = time.time()
            with self._lock:
                row = self.rows[name]
                row.results = {r.check_id: r for r in report.results}
                row.checked_at, row.lab_state = now, "running"
                if row.passed > row.best:
                    row.best, row.progress_at = row.passed, now

        with ThreadPoolExecutor(max_workers=max(1, self.at_once)) as pool:
            list(pool.map(one, list(self.rows)))
        self.refreshed_at = time.time()

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.refresh_once()
            stop.wait(self.interval)

    def stuck(self, row: Row, now: float | None = None) -> bool:
        """True when ``row`` has not passed everything and has made no progress lately."""
        now = now or time.time()
        done = row.results and row.passed == len(self.checks)
        return bool(row.results) and not done and now - row.progress_at >= self.stuck_after

    # --- views ---------------------------------------------------------------------------

    def to_csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["learner", "lab", "passed", "of", "stuck", *(c.id for c in self.checks)])
        with self._lock:
            for row in self.rows.values():
                w.writerow([row.learner, row.lab_state, row.passed, len(self.checks),
                            "yes" if self.stuck(row) else "no",
                            *((row.results[c.id].status.value if c.id in row.results else "")
                              for c in self.checks)])
        return out.getvalue()

    def evidence(self, learner: str, check_id: str) -> dict:
        with self._lock:
            result = self.rows[learner].results[check_id]
        return {"learner": learner, "check": check_id, "status": result.status.value,
                "summary": result.summary, "hint": result.hint, "evidence": result.evidence}

    def html(self, query: str = "") -> str:
        """The page: the table, a panel for a clicked cell's evidence, refreshed by itself
        every 15 s. ``query`` (e.g. "?key=...") is kept on the page's own requests."""
        e = html.escape
        now = time.time()
        head = "".join(f"<th title='{e(c.title)}'><div>{e(c.id)}</div></th>" for c in self.checks)
        body = []
        with self._lock:
            rows = list(self.rows.values())
            for row in rows:
                stuck = self.stuck(row, now)
                cells = []
                for c in self.checks:
                    r = row.results.get(c.id)
                    if r is None:
                        cells.append("<td class='none'>&middot;</td>")
                        continue
                    word, colour = CELL[r.status]
                    cells.append(f"<td class='cell' style='background:{colour}' "
                                 f"data-learner='{e(row.learner)}' data-check='{e(c.id)}' "
                                 f"title='{e(r.summary)}'>{word}</td>")
                mark = " stuck" if stuck else ""
                since = (f"{int((now - row.progress_at) // 60)} min without progress"
                         if stuck else "")
                body.append(f"<tr class='row{mark}'><th class='who'>{e(row.learner)}"
                            f"<small>{e(row.lab_state)} {e(since)}</small></th>"
                            f"<td class='count'>{row.passed}/{len(self.checks)}</td>"
                            + "".join(cells) + "</tr>")
        stamp = (time.strftime("%H:%M:%S", time.localtime(self.refreshed_at))
                 if self.refreshed_at else "not yet")
        q = e(query)
        return f"""<!doctype html><html><head><meta charset='utf-8'>
<title>Class board</title><meta http-equiv='refresh' content='15'>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 16px; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 3px 6px; text-align: center; }}
thead th {{ height: 150px; vertical-align: bottom; }}
thead th div {{ writing-mode: vertical-rl; transform: rotate(180deg); font-weight: normal; }}
td.cell {{ color: #fff; font-weight: bold; cursor: pointer; font-size: 11px; }}
td.none {{ color: #999; }}
th.who {{ text-align: left; white-space: nowrap; }}
th.who small {{ display: block; font-weight: normal; color: #666; }}
tr.stuck th.who {{ background: #ffe08a; }}
tr.stuck th.who small {{ color: #7a4d00; font-weight: bold; }}
#panel {{ white-space: pre-wrap; font-family: monospace; background: #f6f6f6; padding: 8px;
          margin-top: 12px; max-height: 40vh; overflow: auto; display: none; }}
</style></head><body>
<h1>Class board</h1>
<p>{len(rows)} learners, {len(self.checks)} checks; graded {stamp}, every
{self.interval:.0f} s. A learner without progress for {self.stuck_after / 60:.0f} minutes
stands out. Click a cell for its evidence.
<a href='board.csv{q}'>Export as CSV</a></p>
<table><thead><tr><th>learner</th><th>passed</th>{head}</tr></thead>
<tbody>{''.join(body)}</tbody></table>
<div id='panel'></div>
<script>
document.querySelectorAll('td.cell').forEach(function (td) {{
  td.addEventListener('click', function () {{
    var q = '{q}' ? '{q}&' : '?';
    fetch('evidence' + q + 'learner=' + encodeURIComponent(td.dataset.learner) +
          '&check=' + encodeURIComponent(td.dataset.check))
      .then(function (r) {{ return r.json(); }})
      .then(function (d) {{
        var p = document.getElementById('panel');
        p.style.display = 'block';
        p.textContent = d.learner + '  ' + d.check + '  ' + d.status.toUpperCase() + '\\n' +
          d.summary + (d.hint ? '\\nwhat to do: ' + d.hint : '') + '\\n\\n' + d.evidence;
      }});
  }});
}});
</script></body></html>"""

    def to_json(self) -> str:
        with self._lock:
            return json.dumps({row.learner: {"lab": row.lab_state, "passed": row.passed,
                                             "stuck": self.stuck(row),
                                             "results": {k: v.status.value
                                                         for k, v in row.results.items()}}
                               for row in self.rows.values()})
