"""Checks of vagrant/Vagrantfile that need Vagrant but no VM and no provider.

Every test here really runs the `vagrant` command (Debian package `vagrant`)
in vagrant/; none starts a machine. `vagrant validate` loads the Vagrantfile
and checks each machine's configuration without running provisioners.

To see what the Vagrantfile told Vagrant, the tests set
LABKIT_VAGRANT_PRINT_PLAN=1: the Vagrantfile then prints one JSON line per
machine, read back from Vagrant's own config objects, starting "LABKIT-PLAN ".

Vagrant runs with a throw-away VAGRANT_HOME and VAGRANT_DOTFILE_PATH (so
nothing is written to ~/.vagrant.d or vagrant/.vagrant) and with
VAGRANT_CHECKPOINT_DISABLE=1 (no version check over the network). Each call is
timed; run `pytest -s` to see the timings.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
VAGRANT_DIR = REPO / "vagrant"
TOPOLOGY = REPO / "labkit" / "topology.yaml"

PLAN_PREFIX = "LABKIT-PLAN "
BOX = "debian/bookworm64"
PROVISION_DIR = VAGRANT_DIR / "provision"
VM_ISOLATE = PROVISION_DIR / "vm-isolate.sh"
# The provisioners of every machine, in the order Vagrant runs them: lift the isolation,
# provision, isolate again.
PROVISIONERS = ["labkit-lift", "labkit", "labkit-isolate"]
# One vagrant call takes about 2 s here; this only stops a hung call.
CALL_TIMEOUT_S = 90

# Variables from the caller's shell that would change what Vagrant loads.
_SCRUBBED_ENV = (
    "LABKIT_TOPOLOGY",
    "LABKIT_VAGRANT_PRINT_PLAN",
    "VAGRANT_CWD",
    "VAGRANT_DEFAULT_PROVIDER",
    "VAGRANT_DOTFILE_PATH",
    "VAGRANT_HOME",
    "VAGRANT_VAGRANTFILE",
)


@dataclass
class VagrantRun:
    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def report(self) -> str:
        """Everything Vagrant said, for an assertion message."""
        return (
            f"command: {' '.join(self.command)} (in {VAGRANT_DIR}, {self.seconds:.1f} s)\n"
            f"exit status: {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )

    def plan(self) -> list[dict]:
        """The LABKIT-PLAN lines, decoded, in the order Vagrant printed them."""
        return [
            json.loads(line[len(PLAN_PREFIX) :])
            for line in self.stdout.splitlines()
            if line.startswith(PLAN_PREFIX)
        ]


def _vagrant_executable() -> str:
    exe = shutil.which("vagrant")
    if exe is None:
        pytest.fail(
            "`vagrant` is not installed, so the Vagrantfile cannot be checked. "
            "Install Debian's package: `apt-get install vagrant` "
            "(it brings vagrant-libvirt along as a recommended package).",
            pytrace=False,
        )
    return exe


def run_vagrant(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> VagrantRun:
    """Run `vagrant ARGS` in vagrant/ with a private, offline Vagrant state."""
    command = [_vagrant_executable(), *args]
    full_env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    full_env.update(
        VAGRANT_HOME=str(tmp_path / "vagrant-home"),
        VAGRANT_DOTFILE_PATH=str(tmp_path / "vagrant-dotfile"),
        VAGRANT_CHECKPOINT_DISABLE="1",
        VAGRANT_NO_COLOR="1",
    )
    full_env.update(env or {})
    start = time.monotonic()
    try:
        proc = subprocess.run(
            command,
            cwd=VAGRANT_DIR,
            env=full_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CALL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{' '.join(command)} did not finish in {CALL_TIMEOUT_S} s\n"
            f"stdout so far: {exc.stdout!r}\nstderr so far: {exc.stderr!r}",
            pytrace=False,
        )
    run = VagrantRun(command, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)
    print(f"[{run.seconds:.1f} s] {' '.join(args)}")
    return run


@pytest.fixture(scope="module")
def validate_args() -> list[str]:
    """`vagrant validate --ignore-provider`.

    No provider (VirtualBox, libvirt) is needed or running on the machine that
    runs these tests; --ignore-provider (in Vagrant since 2.2, e.g. Debian 12's
    2.3.4) checks everything except the provider blocks. A Vagrant too old for
    it fails here with its usage text, which says so.
    """
    return ["validate", "--ignore-provider"]


def load_topology(path: Path = TOPOLOGY) -> dict:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def write_topology(tmp_path: Path, topology: dict, name: str = "topology.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(topology, sort_keys=False), encoding="utf-8")
    return path


def expected_plan(topology: dict) -> list[dict]:
    """What the Vagrantfile must define for this topology, host by host."""
    subnets = {
        name: ipaddress.ip_network(net["subnet"]) for name, net in topology["networks"].items()
    }
    return [
        {
            "name": name,
            "hostname": host["fqdn"],
            "memory_mb": host["memory_mb"],
            "interfaces": [
                (nic["address"], str(subnets[nic["network"]].netmask), f"labkit-{nic['network']}")
                for nic in host["interfaces"]
            ],
            "provision": [
                "bash /labkit/vagrant/provision/vm-isolate.sh --lift",
                f"bash /labkit/vagrant/provision/provision.sh {name}",
                "bash /labkit/vagrant/provision/vm-isolate.sh",
            ],
        }
        for name, host in topology["hosts"].items()
    ]


def actual_plan(plan: list[dict]) -> list[dict]:
    """The same shape as expected_plan(), from the LABKIT-PLAN lines."""
    return [
        {
            "name": m["name"],
            "hostname": m["hostname"],
            "memory_mb": m["memory_mb"],
            "interfaces": [
                (n["ip"], n["netmask"], n["libvirt__network_name"]) for n in m["private_networks"]
            ],
            "provision": m["provision"],
        }
        for m in plan
    ]


def test_vagrantfile_validates(tmp_path, validate_args):
    run = run_vagrant(tmp_path, *validate_args)
    assert run.returncode == 0, run.report()
    assert "validated successfully" in run.stdout, run.report()


def test_vagrantfile_validates_with_libvirt_provider_config(tmp_path):
    """Also check the provider blocks, against the real vagrant-libvirt plugin.

    vagrant-libvirt validates its options without a libvirt daemon. Where the
    plugin is missing the test fails: setup.sh installs it.
    """
    run = run_vagrant(tmp_path, "validate", env={"VAGRANT_DEFAULT_PROVIDER": "libvirt"})
    if run.returncode != 0 and "provider 'libvirt' could not be found" in run.stdout + run.stderr:
        pytest.fail("the vagrant-libvirt plugin is not installed: apt-get install vagrant-libvirt "
                    "(./setup.sh --install-only does it)")
    assert run.returncode == 0, run.report()
    assert "validated successfully" in run.stdout, run.report()


def test_vagrantfile_reads_every_host_from_topology(tmp_path, validate_args):
    topology = load_topology()
    run = run_vagrant(tmp_path, *validate_args, env={"LABKIT_VAGRANT_PRINT_PLAN": "1"})
    assert run.returncode == 0, run.report()
    plan = run.plan()

    # Every host, each once, in the YAML's order (internet boots first: DNS).
    assert [m["name"] for m in plan] == list(topology["hosts"]), run.report()
    assert actual_plan(plan) == expected_plan(topology), run.report()

    for machine in plan:
        assert machine["topology"] == str(TOPOLOGY), machine
        assert machine["box"] == BOX, machine
        assert machine["cpus"] == 1, machine
        for nic in machine["private_networks"]:
            # The lab networks: no DHCP, no route off the lab under libvirt.
            assert nic["libvirt__dhcp_enabled"] is False, machine
            assert nic["libvirt__forward_mode"] == "none", machine
        folders = {f["guestpath"]: f for f in machine["synced_folders"]}
        assert folders["/vagrant"]["disabled"] is True, machine
        assert folders["/labkit"]["hostpath"] == "..", machine
        assert folders["/labkit"]["disabled"] is False, machine
        assert folders["/labkit"]["type"] == "rsync", machine


def test_every_machine_lifts_provisions_then_isolates(tmp_path, validate_args):
    """The isolation is lifted first and put back last, on every machine, so that
    `vagrant provision` on an isolated VM can still install packages."""
    run = run_vagrant(tmp_path, *validate_args, env={"LABKIT_VAGRANT_PRINT_PLAN": "1"})
    assert run.returncode == 0, run.report()
    plan = run.plan()
    assert plan, run.report()
    for machine in plan:
        assert machine["provisioners"] == PROVISIONERS, machine
        lift, provision, isolate = machine["provision"]
        assert lift.split()[1:] == [f"/labkit/{VM_ISOLATE.relative_to(REPO)}", "--lift"], machine
        assert provision.split()[1:] == ["/labkit/vagrant/provision/provision.sh", machine["name"]]
        assert isolate.split()[1:] == [f"/labkit/{VM_ISOLATE.relative_to(REPO)}"], machine


def test_vm_isolate_is_valid_shell_and_only_the_vagrantfile_runs_it():
    """vm-isolate.sh passes `bash -n` (shellcheck: tests/unit/test_shell_scripts.py), and
    no provisioning script calls it: the local engine's images never run it."""
    subprocess.run(["bash", "-n", str(VM_ISOLATE)], check=True)
    callers = [p for p in PROVISION_DIR.rglob("*")
               if p.is_file() and p != VM_ISOLATE and "vm-isolate" in p.read_text(errors="replace")]
    assert callers == []
    assert "vm-isolate.sh" in (VAGRANT_DIR / "Vagrantfile").read_text()


def test_vagrantfile_follows_an_edited_topology(tmp_path, validate_args):
    """LABKIT_TOPOLOGY is honoured and nothing is hard-coded: a topology with
    one more host, a moved address and other memory sizes comes out as such."""
    topology = load_topology()
    edited = copy.deepcopy(topology)
    outside = ipaddress.ip_network(edited["networks"]["outside"]["subnet"])
    inside = ipaddress.ip_network(edited["networks"]["inside"]["subnet"])
    edited["hosts"]["watcher"] = {
        "description": "an extra host that exists only in this test",
        "fqdn": "watcher.example.org",
        "interfaces": [
            {"network": "outside", "address": str(outside.network_address + 99)},
            {"network": "inside", "address": str(inside.network_address + 99)},
        ],
        "memory_mb": 200,
    }
    client = edited["hosts"]["client"]
    client["interfaces"][0]["address"] = str(inside.network_address + 141)
    client["memory_mb"] = 320
    path = write_topology(tmp_path, edited)

    run = run_vagrant(
        tmp_path,
        *validate_args,
        env={"LABKIT_TOPOLOGY": str(path), "LABKIT_VAGRANT_PRINT_PLAN": "1"},
    )
    assert run.returncode == 0, run.report()
    plan = run.plan()
    assert [m["name"] for m in plan] == list(edited["hosts"]), run.report()
    assert actual_plan(plan) == expected_plan(edited), run.report()
    assert {m["topology"] for m in plan} == {str(path)}, run.report()


def _drop_interfaces(t):
    del t["hosts"]["server"]["interfaces"]


def _drop_address(t):
    del t["hosts"]["relay"]["interfaces"][1]["address"]


def _address_off_subnet(t):
    t["hosts"]["client"]["interfaces"][0]["address"] = "10.9.8.7"


@pytest.mark.parametrize(
    "break_topology, expected_words",
    [
        (_drop_interfaces, ["host `server`", "no `interfaces`"]),
        (_drop_address, ["host `relay`", "interface 2", "no `address`"]),
        (_address_off_subnet, ["host `client`", "10.9.8.7", "not inside network `inside`"]),
    ],
    ids=["host-without-interfaces", "interface-without-address", "address-off-subnet"],
)
def test_topology_mistake_gives_a_clear_error(
    tmp_path, validate_args, break_topology, expected_words
):
    broken = load_topology()
    break_topology(broken)
    path = write_topology(tmp_path, broken, "broken-topology.yaml")

    run = run_vagrant(tmp_path, *validate_args, env={"LABKIT_TOPOLOGY": str(path)})
    said = run.stdout + run.stderr
    assert run.returncode != 0, run.report()
    assert "validated successfully" not in said, run.report()
    # One plain sentence that names the file, the host and what is wrong...
    assert f"labkit topology {path}:" in said, run.report()
    for words in expected_words:
        assert words in said, f"expected {words!r} in Vagrant's error\n{run.report()}"
    # ...and no Ruby backtrace.
    assert ".rb:" not in said and "Vagrantfile:" not in said, run.report()


def test_missing_topology_file_gives_a_clear_error(tmp_path, validate_args):
    missing = tmp_path / "no-such-topology.yaml"
    run = run_vagrant(tmp_path, *validate_args, env={"LABKIT_TOPOLOGY": str(missing)})
    said = run.stdout + run.stderr
    assert run.returncode != 0, run.report()
    assert f"labkit topology {missing}: file not found" in said, run.report()


def test_libvirt_takes_the_kits_box_that_labkit_box_names(tmp_path, validate_args):
    """LABKIT_BOX, a file or a URL: the libvirt provider's box is labkit/bookworm from
    there (VirtualBox keeps debian/bookworm64); a path that is no file is not used."""
    box = tmp_path / "labkit.box"
    box.write_bytes(b"")
    for value, url in ((str(box), f"file://{box}"),
                       ("http://192.0.2.10:8080/labkit.box", "http://192.0.2.10:8080/labkit.box")):
        run = run_vagrant(tmp_path, *validate_args,
                          env={"LABKIT_VAGRANT_PRINT_PLAN": "1", "LABKIT_BOX": value})
        assert run.returncode == 0, run.report()
        for machine in run.plan():
            assert machine["libvirt_box_url"] == url, machine
            assert machine["box"] == BOX, machine
    text = (VAGRANT_DIR / "Vagrantfile").read_text()
    assert 'override.vm.box = "labkit/bookworm"' in text
    assert 'lv.management_network_mode = "none" if labkit_box_url' in text
