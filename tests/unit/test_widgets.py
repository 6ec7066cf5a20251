"""The notebook widgets, without a lab: they draw what the Lab reports and call the
checks; each has a plain-text fallback."""

import ipywidgets

from labkit import checks, topology, widgets
from labkit.engines.base import HostStatus, ServiceState


class FakeEngine:
    def command_hint(self, verb):
        return f"labkit {verb}"


class FakeLab:
    name = "fake"
    engine = FakeEngine()
    topology = topology.load()

    def status(self):
        return [HostStatus("internet", "internet.example.net", True, ["192.168.56.10"],
                           [ServiceState("unbound", True, "active")]),
                HostStatus("relay", "relay.example.com", True, ["192.168.56.20"],
                           [ServiceState("sendmail", False, "failed")]),
                HostStatus("server", "server.example.com", False, [], []),
                HostStatus("client", "client.example.com", True, ["192.168.57.40"], [])]

    def is_running(self):
        return False

    def smtp(self, vantage, target):
        raise ConnectionRefusedError(111, "Connection refused")


def test_topology_is_drawn_with_every_host_network_and_service_state():
    svg = widgets.topology_svg(FakeLab())
    for text in ("internet", "relay.example.com", "192.168.57.30", "outside 192.168.56.0/24",
                 "sendmail: failed", "server (DOWN)"):
        assert text in svg, text
    view = widgets.topology_view(FakeLab())
    assert isinstance(view, ipywidgets.VBox)
    text = str(widgets.topology_view(FakeLab(), text=True))
    assert "!! sendmail: failed" in text and "server" in text and "DOWN" in text


def test_smtp_console_says_why_it_cannot_connect():
    console = widgets.SmtpConsole(FakeLab())
    assert "cannot connect from internet to relay" in console.connect()
    assert console.send("VRFY root").startswith("not connected")
    assert isinstance(widgets.smtp_console(FakeLab()), ipywidgets.VBox)


def test_check_panel_runs_the_sections_checks_on_click():
    panel = widgets.check_panel(FakeLab(), "08")
    button = panel.children[0]
    assert f"the {len(checks.for_section('08'))} checks of section 08" in button.description
    button.click()  # the fake lab is not running: every check is an error
    results = panel.children[1].children
    assert "error" in results[0].value and len(results) == 1 + len(checks.for_section("08"))
    assert "ERROR" in results[1].children[0].value
    text = str(widgets.check_panel(FakeLab(), "08", text=True))
    assert "privacy.vrfy_disabled" in text and "ERROR" in text
