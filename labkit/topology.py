"""The lab's topology: hosts, networks, addresses, names and DNS records.

Loaded from ``labkit/topology.yaml``, the one source of truth. Everything that needs an
address or a name asks a :class:`Topology`; the files the provisioning scripts read
(per-host environment files, DNS zones, the DNSBL zone) are rendered from it by
:func:`render_provisioning_files` and committed under ``vagrant/provision/generated``,
so the local engine's images and Vagrant's VMs are provisioned from the same data.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from labkit.errors import TopologyError

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
DEFAULT_TOPOLOGY = PACKAGE_DIR / "topology.yaml"
PROVISION_DIR = REPO_DIR / "vagrant" / "provision"
GENERATED_DIR = PROVISION_DIR / "generated"


@dataclass(frozen=True)
class Network:
    name: str
    subnet: ipaddress.IPv4Network
    description: str = ""

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen


@dataclass(frozen=True)
class Interface:
    network: str
    address: ipaddress.IPv4Address
    name: str  # the DNS name that answers for this address (PTR)


@dataclass(frozen=True)
class Host:
    name: str
    fqdn: str
    description: str
    interfaces: tuple[Interface, ...]
    resolver: ipaddress.IPv4Address
    packages: tuple[str, ...]
    services: tuple[str, ...]
    memory_mb: int
    extra_names: tuple[str, ...] = ()

    @property
    def address(self) -> ipaddress.IPv4Address:
        """The host's first address (its main one, the one its FQDN resolves to)."""
        return self.interfaces[0].address

    def address_on(self, network: str) -> ipaddress.IPv4Address | None:
        """The host's address on ``network``, or None if it has no leg there."""
        for itf in self.interfaces:
            if itf.network == network:
                return itf.address
        return None


@dataclass(frozen=True)
class Topology:
    domains: dict[str, str]
    networks: dict[str, Network]
    hosts: dict[str, Host]
    mail: dict[str, Any]
    dnsbl: dict[str, Any]
    source: Path = field(default=DEFAULT_TOPOLOGY)
    #: host name -> its second, DNSBL-listed address
    listed_clients: dict[str, Interface] = field(default_factory=dict)

    def host(self, name: str) -> Host:
        """The host called ``name``; :class:`TopologyError` names the known hosts if not."""
        try:
            return self.hosts[name]
        except KeyError:
            known = ", ".join(self.hosts)
            raise TopologyError(f"unknown host {name!r}; the lab's hosts are: {known}") from None

    def address_for(self, target: str, vantage: str) -> ipaddress.IPv4Address:
        """The address of host ``target`` as host ``vantage`` would reach it.

        An address on a network the two share if there is one, else the target's main
        address (which the vantage may well be unable to reach: some probes show that).
        """
        tgt, van = self.host(target), self.host(vantage)
        shared = {i.network for i in van.interfaces}
        for itf in tgt.interfaces:
            if itf.network in shared:
                return itf.address
        return tgt.address

    def address_records(self) -> list[tuple[str, ipaddress.IPv4Address]]:
        """Every (name, address) pair the lab DNS serves, forward and reverse."""
        records: list[tuple[str, ipaddress.IPv4Address]] = []
        for host in self.hosts.values():
            for itf in host.interfaces:
                records.append((itf.name, itf.address))
            for extra in host.extra_names:
                records.append((extra, host.address))
        records += [(itf.name, itf.address) for itf in self.listed_clients.values()]
        return records

    def listed_client(self, host: str) -> Interface:
        """The second address of ``host`` that the lab DNSBL lists (see ``listed_clients``
        in the topology file); TopologyError if the host has none."""
        try:
            return self.listed_clients[self.host(host).name]
        except KeyError:
            raise TopologyError(f"host {host!r} has no DNSBL-listed address; hosts with one: "
                                + ", ".join(self.listed_clients)) from None

    def dns_server(self) -> ipaddress.IPv4Address:
        """The address of the lab's authoritative DNS server (on the sink/DNS host)."""
        return self.host(self.mail["sink"]["host"]).address


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise TopologyError(f"{where}: missing '{key}'")
    return mapping[key]


def load(path: Path | str | None = None) -> Topology:
    """Load and validate a topology file (the packaged one by default).

    Raises :class:`TopologyError` with the offending host or network named when an
    address lies outside its network, a name is used twice, or a field is missing.
    """
    src = Path(path) if path else DEFAULT_TOPOLOGY
    try:
        raw = yaml.safe_load(src.read_text())
    except OSError as exc:
        raise TopologyError(f"cannot read topology file {src}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise TopologyError(f"{src} is not valid YAML: {exc}") from exc

    domains = dict(_require(raw, "domains", str(src)))
    networks: dict[str, Network] = {}
    for name, spec in _require(raw, "networks", str(src)).items():
        try:
            subnet = ipaddress.IPv4Network(_require(spec, "subnet", f"network {name}"))
        except ValueError as exc:
            raise TopologyError(f"network {name}: {exc}") from exc
        networks[name] = Network(name, subnet, spec.get("description", ""))

    hosts: dict[str, Host] = {}
    seen_addresses: dict[ipaddress.IPv4Address, str] = {}
    for name, spec in _require(raw, "hosts", str(src)).items():
        where = f"host {name}"
        fqdn = _require(spec, "fqdn", where)
        itfs: list[Interface] = []
        for i, ispec in enumerate(_require(spec, "interfaces", where) or []):
            net = _require(ispec, "network", f"{where} interface {i}")
            if net not in networks:
                raise TopologyError(f"{where}: interface on unknown network {net!r}")
            addr = ipaddress.IPv4Address(_require(ispec, "address", f"{where} interface {i}"))
            if addr not in networks[net].subnet:
                raise TopologyError(f"{where}: {addr} is not in network {net} ({networks[net].subnet})")
            if addr in seen_addresses:
                raise TopologyError(f"{where}: address {addr} already used by {seen_addresses[addr]}")
            seen_addresses[addr] = name
            itfs.append(Interface(net, addr, ispec.get("name", fqdn)))
        if not itfs:
            raise TopologyError(f"{where}: no interfaces")
        hosts[name] = Host(
            name=name,
            fqdn=fqdn,
            description=spec.get("description", ""),
            interfaces=tuple(itfs),
            resolver=ipaddress.IPv4Address(_require(spec, "resolver", where)),
            packages=tuple(spec.get("packages", [])),
            services=tuple(spec.get("services", [])),
            memory_mb=int(spec.get("memory_mb", 256)),
            extra_names=tuple(spec.get("extra_names", [])),
        )
    dnsbl = dict(_require(raw, "dnsbl", str(src)))
    listed: dict[str, Interface] = {}
    for name, ispec in (dnsbl.get("listed_clients") or {}).items():
        where = f"dnsbl listed_clients {name}"
        if name not in hosts:
            raise TopologyError(f"{where}: unknown host")
        net = _require(ispec, "network", where)
        if hosts[name].address_on(net) is None:
            raise TopologyError(f"{where}: host {name} has no leg on network {net!r}")
        addr = ipaddress.IPv4Address(_require(ispec, "address", where))
        if addr not in networks[net].subnet:
            raise TopologyError(f"{where}: {addr} is not in network {net} ({networks[net].subnet})")
        if addr in seen_addresses:
            raise TopologyError(f"{where}: address {addr} already used by {seen_addresses[addr]}")
        seen_addresses[addr] = name
        listed[name] = Interface(net, addr, _require(ispec, "name", where))
    topo = Topology(domains, networks, hosts, dict(_require(raw, "mail", str(src))),
                    dnsbl, src, listed)
    topo.host(topo.mail["sink"]["host"])  # validates the sink host exists
    return topo


# ---------------------------------------------------------------------------------
# Files rendered for the provisioning scripts (committed, checked fresh by a test)
# ---------------------------------------------------------------------------------

def _reverse_zone(net: Network) -> str:
    octets = str(net.subnet.network_address).split(".")[: net.prefixlen // 8]
    return ".".join(reversed(octets)) + ".in-addr.arpa"


def _zone_header(origin: str, ns: str) -> list[str]:
    return [
        f"; zone {origin}: rendered from labkit/topology.yaml, do not edit",
        "$TTL 300",
        f"@ IN SOA {ns}. hostmaster.{origin}. ( 1 3600 600 86400 300 )",
        f"@ IN NS {ns}.",
    ]


def _forward_zones(topo: Topology) -> dict[str, list[str]]:
    ns = f"ns.{topo.domains['outside']}"
    zones: dict[str, list[str]] = {}
    for domain in (topo.domains["organisation"], topo.domains["outside"]):
        lines = _zone_header(domain, ns)
        for name, addr in topo.address_records():
            if name.endswith("." + domain):
                lines.append(f"{name}. IN A {addr}")
        mx = topo.mail["mx"].get(domain)
        if mx:
            lines.append(f"@ IN MX 10 {mx}.")
        backup = topo.mail.get("backup_mx", {}).get(domain)
        if backup:
            lines.append(f"@ IN MX 20 {backup}.")
        zones[domain] = lines
    return zones


def _reverse_zones(topo: Topology) -> dict[str, list[str]]:
    ns = f"ns.{topo.domains['outside']}"
    zones: dict[str, list[str]] = {}
    for net in topo.networks.values():
        origin = _reverse_zone(net)
        lines = _zone_header(origin, ns)
        itfs = [i for h in topo.hosts.values() for i in h.interfaces]
        for itf in itfs + list(topo.listed_clients.values()):
            if itf.network == net.name:
                lines.append(f"{itf.address.reverse_pointer}. IN PTR {itf.name}.")
        zones[origin] = lines
    return zones


def _dnsbl_zone(topo: Topology) -> list[str]:
    """rbldnsd 'ip4set' and 'dnset' data with the RFC 5782 test entries."""
    bl = topo.dnsbl
    lines = [
        "# rendered from labkit/topology.yaml, do not edit",
        f"# ip4set for {bl['ip_zone']}: RFC 5782 lists 127.0.0.2 and never 127.0.0.1",
        ":127.0.0.2:Listed in the lab DNSBL, see http://bl.lab.test/?$",
    ]
    lines += [str(a) for a in bl["listed_addresses"]]
    for itf in topo.listed_clients.values():
        lines += [f"# {itf.name}: a lab host's second, listed address", str(itf.address)]
    return lines


def _rhsbl_zone(topo: Topology) -> list[str]:
    bl = topo.dnsbl
    lines = [
        "# rendered from labkit/topology.yaml, do not edit",
        f"# dnset for {bl['domain_zone']}: RFC 5782 lists TEST and never INVALID",
        ":127.0.0.2:Domain listed in the lab RHSBL",
    ]
    lines += [d for d in bl["listed_domains"]]
    return lines


def _env_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _lab_env(topo: Topology) -> list[str]:
    org, out = topo.domains["organisation"], topo.domains["outside"]
    sink = topo.host(topo.mail["sink"]["host"])
    relay_in = next(
        (i for h in topo.hosts.values() for i in h.interfaces
         if i.network == "inside" and h.address_on("outside") is not None), None)
    env = {
        "LAB_ORG_DOMAIN": org,
        "LAB_OUTSIDE_DOMAIN": out,
        "LAB_TEST_DOMAIN": topo.domains["lab"],
        "LAB_HOSTS": " ".join(topo.hosts),
        "LAB_DNS_SERVER": str(topo.dns_server()),
        "LAB_OUTSIDE_SUBNET": str(topo.networks["outside"].subnet),
        "LAB_INSIDE_SUBNET": str(topo.networks["inside"].subnet),
        "LAB_INSIDE_GATEWAY_NAME": relay_in.name if relay_in else "",
        "LAB_INSIDE_GATEWAY_ADDR": str(relay_in.address) if relay_in else "",
        "LAB_MAIL_USERS": " ".join(topo.mail["users"]),
        "LAB_MAIL_PASSWORD": str(topo.mail["password"]),
        "LAB_ALIASES": " ".join(f"{k}:{v}" for k, v in topo.mail["aliases"].items()),
        "LAB_SINK_SPOOL": topo.mail["sink"]["spool"],
        "LAB_SINK_PORT": str(topo.mail["sink"]["port"]),
        "LAB_SINK_ADDR": str(sink.address),
        "LAB_DNSBL_ZONE": topo.dnsbl["ip_zone"],
        "LAB_RHSBL_ZONE": topo.dnsbl["domain_zone"],
        "LAB_SERVER_FQDN": topo.host("server").fqdn,
        "LAB_RELAY_FQDN": topo.host("relay").fqdn,
        "LAB_REVERSE_ZONES": " ".join(_reverse_zone(n) for n in topo.networks.values()),
    }
    return ["# rendered from labkit/topology.yaml, do not edit"] + [
        f"{k}={_env_quote(v)}" for k, v in env.items()
    ]


def _host_env(host: Host, topo: Topology) -> list[str]:
    listed = topo.listed_clients.get(host.name)
    env = {
        "HOST_NAME": host.name,
        "HOST_FQDN": host.fqdn,
        "HOST_SHORT": host.fqdn.split(".")[0],
        "HOST_ADDRESSES": " ".join(str(i.address) for i in host.interfaces),
        "HOST_RESOLVER": str(host.resolver),
        "HOST_PACKAGES": " ".join(host.packages),
        "HOST_SERVICES": " ".join(host.services),
        # address/prefix of its DNSBL-listed address, and its own address on that network
        "HOST_LISTED_ADDRESS": (f"{listed.address}/{topo.networks[listed.network].prefixlen}"
                                if listed else ""),
        "HOST_LISTED_BESIDE": str(host.address_on(listed.network)) if listed else "",
    }
    return ["# rendered from labkit/topology.yaml, do not edit"] + [
        f"{k}={_env_quote(v)}" for k, v in env.items()
    ]


def provisioning_files(topo: Topology) -> dict[str, str]:
    """Every generated provisioning file, by path relative to the generated dir."""
    files: dict[str, list[str]] = {"lab.env": _lab_env(topo)}
    for host in topo.hosts.values():
        files[f"host-{host.name}.env"] = _host_env(host, topo)
    for origin, lines in {**_forward_zones(topo), **_reverse_zones(topo)}.items():
        files[f"zones/db.{origin}"] = lines
    files[f"zones/{topo.dnsbl['ip_zone']}.ip4set"] = _dnsbl_zone(topo)
    files[f"zones/{topo.dnsbl['domain_zone']}.dnset"] = _rhsbl_zone(topo)
    return {path: "\n".join(lines) + "\n" for path, lines in files.items()}


def render_provisioning_files(topo: Topology, dest: Path = GENERATED_DIR) -> list[Path]:
    """Write the generated files under ``dest`` (replacing stale ones); return their paths."""
    files = provisioning_files(topo)
    written = []
    if dest.exists():
        for old in dest.rglob("*"):
            if old.is_file() and str(old.relative_to(dest)) not in files:
                old.unlink()
    for rel, text in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
