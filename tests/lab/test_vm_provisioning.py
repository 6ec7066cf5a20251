"""The vagrant engine's provisioning path, rehearsed without a hypervisor.

Each host starts as a plain Debian 12 box, boots, and is provisioned by the
Vagrantfile's own step, ``provision.sh HOST``, in the booted system (the branch of the
script that restarts services, which the local engine's image builds never take). Then
the lab so made must be the lab: its services up, mail flowing both ways, the relay
still the careless baseline. See labkit/engines/vm_rehearsal.py.
"""

from __future__ import annotations

import pytest

from labkit import Lab
from labkit import topology as topolib
from labkit.engines.local import LocalEngine
from labkit.engines.vm_rehearsal import rehearse
from tests.lab.conftest import lab_name


@pytest.fixture(scope="module")
def rehearsed():
    topo = topolib.load()
    name = lab_name("vm")
    try:
        measured = rehearse(topo, name, progress=lambda msg: None)
        yield Lab(name, progress=None), measured
    finally:
        LocalEngine(topo, name).down()


def test_provision_sh_provisions_every_plain_box_as_vagrant_does(rehearsed):
    lab, measured = rehearsed
    assert sorted(measured.provision) == sorted(lab.topology.hosts)
    for status in lab.status():
        assert status.running, status.name
        down = [s.name for s in status.services if not s.active]
        assert not down, f"{status.name}: {down} not active after provisioning"


def test_the_provisioned_box_holds_what_the_role_installs_and_nothing_more(rehearsed):
    lab, _ = rehearsed
    relay = lab.run("relay", ["dpkg-query", "-W", "-f", "${Status}", "sendmail"])
    assert "ok installed" in relay.stdout
    server = lab.run("server", ["dpkg-query", "-W", "-f", "${Status}", "sendmail"])
    assert "ok installed" not in server.stdout, "the server box got sendmail too"


def test_mail_flows_through_the_lab_provisioned_as_vagrant_does(rehearsed):
    lab, _ = rehearsed
    inbound = lab.send("internet", "jack@example.com", subject="provisioned in a box")
    assert inbound.status == "delivered" and inbound.where == "server:/var/mail/jack", str(inbound)
    outbound = lab.send("client", "someone@example.net", subject="out from a box")
    assert outbound.status == "at-sink", str(outbound)


def test_the_box_provisioned_relay_is_the_careless_baseline(rehearsed):
    lab, _ = rehearsed
    assert lab.relay_matrix("internet", "relay", wait=8).open_relay


def test_the_box_provisioned_backup_mx_is_postfix_in_the_dmz_and_careless(rehearsed):
    lab, _ = rehearsed
    postfix = lab.run("mx2", ["dpkg-query", "-W", "-f", "${Status}", "postfix"])
    assert "ok installed" in postfix.stdout
    through = lab.send("internet", "william@example.com", target="mx2",
                       subject="through the backup MX, provisioned in a box")
    assert through.status == "delivered" and through.where == "server:/var/mail/william", \
        str(through)
    assert lab.relay_matrix("internet", "mx2", wait=8).open_relay
