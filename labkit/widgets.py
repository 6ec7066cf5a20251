"""Widgets for the notebooks, where a person would rather look or click than type.

- :func:`topology_view`: a drawing of the lab's hosts and networks, each service's state;
- :func:`smtp_console`: choose where to speak from and to, type SMTP commands, see the
  transcript;
- :func:`check_panel`: a section's graded checks, PASS / FAIL / ERROR, evidence on click.

Each works in JupyterLab (ipywidgets) and falls back to plain text elsewhere (a terminal,
nbval, a notebook rendered on GitHub): ``text=True``, or no ipywidgets, gives text. The
widgets hold no logic of their own: they call the Lab, its probes and ``labkit.checks``.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from labkit import checks as checklib
from labkit.checks.base import COLOURS

if TYPE_CHECKING:
    from labkit.engines.base import HostStatus
    from labkit.lab import Lab

_E = html.escape


def _ipywidgets():
    try:
        import ipywidgets
    except ImportError:  # pragma: no cover - ipywidgets is a dependency
        return None
    return ipywidgets


# --- topology -----------------------------------------------------------------------------

def topology_svg(lab: Lab, statuses: list[HostStatus] | None = None) -> str:
    """An SVG drawing of the lab: one bus per network, each host on the networks it has a
    leg on, with its names, addresses and services (green running, red not)."""
    topo = lab.topology
    statuses = statuses if statuses is not None else lab.status()
    state = {s.name: s for s in statuses}
    nets = list(topo.networks)
    hosts = list(topo.hosts.values())
    width, box_w, gap = 200 * len(hosts) + 40, 180, 260
    bus_y = {net: 40 + gap * i for i, net in enumerate(nets)}
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{bus_y[nets[-1]] + 20}" font-family="sans-serif" font-size="12">']
    for net, y in bus_y.items():
        parts.append(f'<line x1="20" y1="{y}" x2="{width - 20}" y2="{y}" stroke="#555" '
                     f'stroke-width="4"/><text x="24" y="{y - 8}" font-weight="bold">'
                     f'{_E(net)} {topo.networks[net].subnet}</text>')
    for i, host in enumerate(hosts):
        st = state.get(host.name)
        running = bool(st and st.running)
        services = list(st.services) if st else []
        lines = [(f"{host.name}{'' if running else ' (DOWN)'}", "bold", None), (host.fqdn, "normal", None)]
        lines += [(str(itf.address), "normal", None) for itf in host.interfaces]
        lines += [(f"{svc.name}: {svc.state}", "normal", svc.active) for svc in services]
        box_h = 12 + 15 * len(lines)
        x = 30 + 200 * i
        legs = [itf.network for itf in host.interfaces]
        if len(legs) > 1:
            y = (bus_y[legs[0]] + bus_y[legs[-1]]) / 2 - box_h / 2
        elif nets.index(legs[0]) == 0:
            y = bus_y[legs[0]] + 30
        else:
            y = bus_y[legs[0]] - 30 - box_h
        for itf in host.interfaces:
            by = bus_y[itf.network]
            edge = y if by < y else y + box_h
            parts.append(f'<line x1="{x + box_w / 2}" y1="{by}" x2="{x + box_w / 2}" '
                         f'y2="{edge}" stroke="#555" stroke-width="2"/>')
        parts.append(f'<rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="8" '
                     f'fill="{"#f4f8ff" if running else "#fbeaea"}" stroke="#333"/>')
        for j, (text, weight, active) in enumerate(lines):
            ty = y + 18 + 15 * j
            tx = x + 8
            if active is not None:
                colour = COLOURS[checklib.Status.PASSED if active else checklib.Status.FAILED]
                parts.append(f'<circle cx="{x + 12}" cy="{ty - 4}" r="4" fill="{colour}"/>')
                tx = x + 20
            parts.append(f'<text x="{tx}" y="{ty}" font-weight="{weight}">{_E(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def topology_text(lab: Lab, statuses: list[HostStatus] | None = None) -> str:
    """The same as :func:`topology_svg`, as text."""
    statuses = statuses if statuses is not None else lab.status()
    state = {s.name: s for s in statuses}
    lines = [f"network {n.name}: {n.subnet}" for n in lab.topology.networks.values()]
    for host in lab.topology.hosts.values():
        st = state.get(host.name)
        legs = ", ".join(f"{i.address} ({i.network})" for i in host.interfaces)
        lines.append(f"{host.name:9} {host.fqdn:22} {'running' if st and st.running else 'DOWN':8}"
                     f" {legs}")
        for svc in st.services if st else []:
            lines.append(f"          {'ok' if svc.active else '!!'} {svc.name}: {svc.state}")
    return "\n".join(lines)


def topology_view(lab: Lab, text: bool = False):
    """The lab drawn, with a button that looks again at every host's services."""
    w = None if text else _ipywidgets()
    if w is None:
        return _Text(topology_text(lab))
    picture = w.HTML(topology_svg(lab))
    refresh = w.Button(description="look again", icon="refresh")

    def redraw(_button=None) -> None:
        picture.value = topology_svg(lab)
    refresh.on_click(redraw)
    return w.VBox([refresh, picture])


# --- SMTP console --------------------------------------------------------------------------

class SmtpConsole:
    """An SMTP session from a chosen lab host to a chosen target, one command at a time,
    its transcript kept. The widget calls :meth:`connect`, :meth:`send` and
    :meth:`close`; so can a script or a test."""

    def __init__(self, lab: Lab, vantage: str = "internet", target: str = "relay") -> None:
        self.lab, self.vantage, self.target = lab, vantage, target
        self.session = None

    def connect(self, vantage: str | None = None, target: str | None = None) -> str:
        self.close()
        self.vantage, self.target = vantage or self.vantage, target or self.target
        try:
            self.session = self.lab.smtp(self.vantage, self.target)
        except Exception as exc:  # noqa: BLE001 - shown to the person at the console
            self.session = None
            return f"cannot connect from {self.vantage} to {self.target}: {exc}"
        return self.transcript()

    def send(self, line: str) -> str:
        """Send one command line (e.g. ``VRFY root``); the transcript so far."""
        if self.session is None:
            return "not connected: choose where from and to, then connect"
        from labkit.probes.smtp import SmtpError
        try:
            self.session.command(line)
        except SmtpError as exc:
            self.session.close()
            self.session = None
            return f"{exc.transcript or ''}\n({exc})".strip()
        return self.transcript()

    def transcript(self) -> str:
        return str(self.session.transcript) if self.session else ""

    def close(self) -> None:
        if self.session is not None:
            self.session.quit()
            self.session.close()
            self.session = None


def smtp_console(lab: Lab, vantage: str = "internet", target: str = "relay",
                 text: bool = False):
    """Talk SMTP by hand from any lab host to any other; every line is kept."""
    console = SmtpConsole(lab, vantage, target)
    w = None if text else _ipywidgets()
    if w is None:
        return _Text("SMTP console: in a terminal, use the same from Python:\n"
                     "  c = labkit.widgets.SmtpConsole(lab, 'internet', 'relay')\n"
                     "  print(c.connect()); print(c.send('EHLO me.example.net'))")
    hosts = list(lab.topology.hosts)
    src = w.Dropdown(options=hosts, value=vantage, description="from")
    dst = w.Dropdown(options=hosts, value=target, description="to")
    go = w.Button(description="connect")
    line = w.Text(placeholder="EHLO me.example.net, VRFY root, MAIL FROM:<a@b>, ... (Enter)",
                  continuous_update=False, layout=w.Layout(width="60%"))
    out = w.Textarea(layout=w.Layout(width="100%", height="300px"), disabled=True)

    def connect(_b=None) -> None:
        out.value = console.connect(src.value, dst.value)

    def send(change: dict) -> None:
        if change["new"].strip():
            out.value = console.send(change["new"].strip())
            line.value = ""
    go.on_click(connect)
    line.observe(send, "value")
    return w.VBox([w.HBox([src, dst, go]), line, out])


# --- check panel ---------------------------------------------------------------------------

def check_panel(lab: Lab, section: str, text: bool = False):
    """A section's graded checks: a button runs them against the lab, each result shows
    PASS / FAIL / ERROR with what the probe saw; the evidence opens on click."""
    chosen = checklib.for_section(section)
    w = None if text else _ipywidgets()
    if w is None:
        return _Text(checklib.run_checks(lab, chosen).table(verbose=True))
    run = w.Button(description=f"run the {len(chosen)} checks of section "
                               f"{chosen[0].section}", layout=w.Layout(width="auto"))
    results = w.VBox([w.HTML(f"<i>{len(chosen)} checks: "
                             + ", ".join(_E(c.id) for c in chosen) + "</i>")])

    def show(_b=None) -> None:
        run.disabled = True
        try:
            report = checklib.run_checks(lab, chosen)
        finally:
            run.disabled = False
        rows = []
        for r in report.results:
            evidence = w.Accordion(children=[w.HTML(
                f"<pre style='white-space:pre-wrap'>{_E(r.evidence or '(none)')}</pre>")])
            evidence.set_title(0, "evidence")
            evidence.selected_index = None
            rows.append(w.VBox([w.HTML(r.html(evidence=False)), evidence]))
        results.children = [w.HTML(f"<b>{_E(report.totals())}</b>"), *rows]
    run.on_click(show)
    return w.VBox([run, results])


class _Text:
    """Plain text that notebooks show as such (no HTML), and print() prints."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__
