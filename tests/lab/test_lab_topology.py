"""The running lab: services up, DNS from every host, the architecture of the topology."""

import pytest

pytestmark = pytest.mark.lab


def test_every_host_runs_with_its_services_active(lab):
    for st in lab.status():
        assert st.running, st.name
        for svc in st.services:
            assert svc.active, f"{st.name}: {svc.name} is {svc.state}"


def test_hosts_know_their_fully_qualified_names(lab):
    for host in lab.topology.hosts.values():
        assert lab.run(host.name, ["hostname", "-f"]).check().stdout.strip() == host.fqdn


@pytest.mark.parametrize("host", ["internet", "relay", "mx2", "server", "client"])
def test_lab_dns_answers_from_every_host(lab, host):
    def dig(*args):
        return lab.run(host, ["dig", "+short", "+time=2", "+tries=2", *args]).check().stdout.split()

    assert dig("server.example.com") == ["192.168.57.30"]
    assert dig("relay.example.com") == ["192.168.56.20"]
    assert dig("client.example.com") == ["192.168.57.40"]
    assert dig("internet.example.net") == ["192.168.56.10"]
    mx = lab.run(host, ["dig", "+short", "+time=2", "+tries=2", "MX", "example.com"]).check()
    assert sorted(mx.stdout.splitlines()) == ["10 relay.example.com.", "20 mx2.example.com."]
    assert dig("MX", "example.net") == ["10", "internet.example.net."]
    assert dig("-x", "192.168.57.30") == ["server.example.com."]
    assert dig("-x", "192.168.56.10") == ["internet.example.net."]
    assert dig("-x", "192.168.57.20") == ["relay-in.example.com."]


@pytest.mark.parametrize("host", ["internet", "server"])
def test_dnsbl_serves_rfc5782_test_entries(lab, host):
    def dig(*args):
        return lab.run(host, ["dig", "+time=2", "+tries=2", *args]).check().stdout

    listed = dig("+short", "2.0.0.127.bl.lab.test")
    assert listed.split() == ["127.0.0.2"]
    assert "Listed in the lab DNSBL" in dig("+short", "TXT", "2.0.0.127.bl.lab.test")
    assert "status: NXDOMAIN" in dig("1.0.0.127.bl.lab.test")
    assert dig("+short", "test.rhsbl.lab.test").split() == ["127.0.0.2"]
    assert "status: NXDOMAIN" in dig("invalid.rhsbl.lab.test")


def test_server_is_not_reachable_from_internet(lab):
    res = lab.run("internet", ["nc", "-z", "-w", "2", "192.168.57.30", "25"])
    assert res.returncode != 0
    route = lab.run("internet", ["ip", "route", "get", "192.168.57.30"])
    assert route.returncode != 0 and "unreachable" in route.stderr


def test_relay_is_reachable_from_both_sides(lab):
    assert lab.run("internet", ["nc", "-z", "-w", "2", "192.168.56.20", "25"]).ok
    assert lab.run("client", ["nc", "-z", "-w", "2", "192.168.57.20", "25"]).ok
    assert lab.run("client", ["nc", "-z", "-w", "2", "192.168.57.30", "25"]).ok


def test_no_lab_host_has_a_route_off_the_lab(lab):
    for host in lab.topology.hosts:
        routes = lab.run(host, ["ip", "route", "show", "default"]).check().stdout
        assert routes.strip() == "", f"{host} has a default route: {routes}"
