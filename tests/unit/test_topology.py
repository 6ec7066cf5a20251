"""The topology file is the one source of truth; the generated provisioning files follow it."""

from pathlib import Path

import pytest
import yaml

from labkit import topology as topolib
from labkit.errors import TopologyError


@pytest.fixture(scope="module")
def topo():
    return topolib.load()


def test_topology_has_the_five_hosts_of_the_course(topo):
    assert list(topo.hosts) == ["internet", "relay", "mx2", "server", "client"]
    assert topo.host("relay").fqdn == "relay.example.com"
    assert topo.host("internet").fqdn == "internet.example.net"


def test_relay_is_dual_homed_and_server_is_inside_only(topo):
    relay, server = topo.host("relay"), topo.host("server")
    assert relay.address_on("outside") and relay.address_on("inside")
    mx2 = topo.host("mx2")  # the backup MX stands where the relay stands
    assert mx2.address_on("outside") and mx2.address_on("inside")
    assert server.address_on("outside") is None
    assert topo.host("internet").address_on("inside") is None


def test_addresses_fit_virtualbox_host_only_range(topo):
    import ipaddress
    vbox = ipaddress.IPv4Network("192.168.56.0/21")
    for net in topo.networks.values():
        assert net.subnet.subnet_of(vbox), net


def test_unknown_host_names_the_known_ones(topo):
    with pytest.raises(TopologyError, match="internet, relay, mx2, server, client"):
        topo.host("mailhub")


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(topolib.DEFAULT_TOPOLOGY.read_text())
    mutate(raw)
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_address_outside_its_network_is_refused(tmp_path):
    def bad(raw):
        raw["hosts"]["server"]["interfaces"][0]["address"] = "192.168.56.30"
    with pytest.raises(TopologyError, match="host server: 192.168.56.30 is not in network inside"):
        topolib.load(_write(tmp_path, bad))


def test_address_used_twice_is_refused(tmp_path):
    def bad(raw):
        raw["hosts"]["client"]["interfaces"][0]["address"] = "192.168.57.30"
    with pytest.raises(TopologyError, match="already used by server"):
        topolib.load(_write(tmp_path, bad))


def test_missing_field_is_named(tmp_path):
    def bad(raw):
        del raw["hosts"]["relay"]["fqdn"]
    with pytest.raises(TopologyError, match="host relay: missing 'fqdn'"):
        topolib.load(_write(tmp_path, bad))


def test_generated_provisioning_files_are_fresh(topo):
    """vagrant/provision/generated is what `labkit render` writes from the topology."""
    expected = topolib.provisioning_files(topo)
    on_disk = {str(p.relative_to(topolib.GENERATED_DIR)): p.read_text()
               for p in topolib.GENERATED_DIR.rglob("*") if p.is_file()}
    assert on_disk == expected, "run 'labkit render' and commit vagrant/provision/generated"


def test_every_address_has_a_ptr_record(topo):
    files = topolib.provisioning_files(topo)
    reverse = "".join(v for k, v in files.items() if "in-addr.arpa" in k)
    for host in topo.hosts.values():
        for itf in host.interfaces:
            assert f"{itf.address.reverse_pointer}. IN PTR {itf.name}." in reverse


def test_mx_records_point_at_relay_and_internet(topo):
    files = topolib.provisioning_files(topo)
    assert "@ IN MX 10 relay.example.com." in files["zones/db.example.com"]
    assert "@ IN MX 10 internet.example.net." in files["zones/db.example.net"]


def test_dnsbl_lists_rfc5782_test_entry_and_never_127_0_0_1(topo):
    data = topolib.provisioning_files(topo)["zones/bl.lab.test.ip4set"].splitlines()
    entries = [ln for ln in data if ln and not ln.startswith(("#", ":"))]
    assert "127.0.0.2" in entries
    assert "127.0.0.1" not in entries
