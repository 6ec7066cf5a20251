"""The ``local`` engine: each host a systemd-nspawn container booting Debian with systemd.

Per lab ``NAME``, on this machine:

- a network namespace per host, ``lk.NAME.HOST``, and one more, ``lk.NAME.switch``,
  holding one bridge per topology network; each host interface is a veth pair whose
  outer end is a port of its network's bridge (nothing is added to the machine's own
  network namespace, and no lab namespace has a route off the lab);
- a root file system per host: an overlay whose lower layer is the host's cached,
  read-only image and whose upper layer is the lab's own, under
  ``/var/lib/labkit/labs/NAME/HOST`` (``LABKIT_STATE`` overrides the parent);
- a ``systemd-nspawn --boot`` per host, in its namespace, as a child session of labkit;
- cgroups ``labkit/NAME/HOST`` (a host's own) and ``labkit/NAME/.exec`` (commands run on
  a host), under the lab's device policy on ``labkit/NAME`` (labkit.engines.devices).

Teardown removes exactly these. A lab whose processes are gone (the machine or the
session that started it stopped) is *stale*: ``up`` and ``down`` recognise and clear it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from labkit import images as imagelib
from labkit import preflight, sysutil
from labkit.engines import devices
from labkit.engines.base import Engine, HostStatus, Progress, RunResult, ServiceState, signals_interrupt
from labkit.engines.netns import NetnsThread
from labkit.errors import HostBootError, LabNotRunningError
from labkit.topology import Host, Topology

BOOT_TIMEOUT = 90.0
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def state_root() -> Path:
    return Path(os.environ.get("LABKIT_STATE", "/var/lib/labkit/labs"))


def _quiet(msg: str) -> None:
    pass


#: Capability names in the kernel's numbering (capabilities(7)), as setpriv names them.
CAPABILITIES = (
    "chown dac_override dac_read_search fowner fsetid kill setgid setuid setpcap "
    "linux_immutable net_bind_service net_broadcast net_admin net_raw ipc_lock ipc_owner "
    "sys_module sys_rawio sys_chroot sys_ptrace sys_pacct sys_admin sys_boot sys_nice "
    "sys_resource sys_time sys_tty_config mknod lease audit_write audit_control setfcap "
    "mac_override mac_admin syslog wake_alarm block_suspend audit_read perfmon bpf "
    "checkpoint_restore").split()


def capability_bounding_set(pid: int) -> int:
    """The capability bounding set of process ``pid`` (CapBnd of /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    raise LabNotRunningError(f"process {pid} has no CapBnd line")


def bounding_set_argv(pid: int) -> list[str]:
    """setpriv's arguments that give the command it runs the bounding set of process
    ``pid`` (a host's init), and no inheritable capabilities: a root shell on a lab host
    can do what the host's own root can, and no more."""
    mask = capability_bounding_set(pid)
    keep = [name for bit, name in enumerate(CAPABILITIES) if mask >> bit & 1]
    return ["setpriv", "--bounding-set", ",".join(["-all", *(f"+{k}" for k in keep)]),
            "--inh-caps", "-all", "--"]


class LocalEngine(Engine):
    """A lab on this machine, each host a booted nspawn container (see module doc)."""

    kind = "local"

    def __init__(self, topology: Topology, lab: str) -> None:
        super().__init__(topology, lab)
        self._netns_workers: dict[str, NetnsThread] = {}
        self._workers_lock = threading.Lock()

    # --- names and places -------------------------------------------------------

    @property
    def lab_dir(self) -> Path:
        return state_root() / self.lab

    def netns(self, host: str) -> str:
        return f"lk.{self.lab}.{host}"

    @property
    def switch_netns(self) -> str:
        return f"lk.{self.lab}.switch"

    def machine(self, host: str) -> str:
        return f"lk-{self.lab}-{host}"

    def _host_dir(self, host: str) -> Path:
        return self.lab_dir / host

    def _root(self, host: str) -> Path:
        return self._host_dir(host) / "root"

    def _state_file(self) -> Path:
        return self.lab_dir / "state.json"

    def _read_state(self) -> dict:
        try:
            return json.loads(self._state_file().read_text())
        except (OSError, ValueError):
            return {"hosts": {}}

    def _write_state(self, state: dict) -> None:
        # Root's alone: a lab's upper layers hold its hosts' keys and password databases,
        # which other users of a shared server must not read.
        state_root().mkdir(parents=True, exist_ok=True, mode=0o700)
        state_root().chmod(0o700)
        self.lab_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self._state_file().with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.rename(self._state_file())

    # --- processes -------------------------------------------------------------

    def _nspawn_pids(self) -> dict[str, int]:
        """Live nspawn processes of this lab, by host (found by their command line)."""
        found: dict[str, int] = {}
        prefix = f"--machine={self.machine('')}"
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            argv = sysutil.cmdline(int(entry.name))
            if not argv or not argv[0].endswith("systemd-nspawn"):
                continue
            for arg in argv:
                if arg.startswith(prefix):
                    found[arg[len(prefix):]] = int(entry.name)
        return found

    def _leader(self, host: str) -> int:
        """PID (on this machine) of ``host``'s init, or raise LabNotRunningError."""
        self.topology.host(host)
        info = self._read_state()["hosts"].get(host, {})
        pid = info.get("leader")
        if pid and _is_container_init(pid) and _ppid(pid) == info.get("nspawn"):
            return pid
        nspawn = self._nspawn_pids().get(host)
        leader = _container_init(nspawn) if nspawn else None
        if leader:
            return leader
        raise LabNotRunningError(
            f"host {host} of lab {self.lab!r} is not running (start it with: "
            f"{self.command_hint('up')})")

    def _enter(self, leader: int, argv: list[str], keep_capabilities: bool = False) -> list[str]:
        """The command that runs ``argv`` on the host whose init is ``leader``: in all its
        namespaces, with no more capabilities than the host's own processes have (nsenter
        alone would keep the caller's full set, CAP_SYS_MODULE included), unless
        ``keep_capabilities`` (the kit's own probes only)."""
        # It joins the lab's cgroup for commands first, under the lab's device policy.
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self._exec_cgroup() / "cgroup.procs"),
                "nsenter", "-t", str(leader), "-a", "--",
                *([] if keep_capabilities else bounding_set_argv(leader)),
                "env", "-i", f"PATH={HOST_PATH}", "HOME=/root", "LANG=C.UTF-8",
                f"TERM={os.environ.get('TERM', 'xterm')}", *argv]

    # --- Engine verbs ----------------------------------------------------------

    def is_running(self) -> bool:
        return bool(self._nspawn_pids())

    def has_leftovers(self) -> bool:
        """True if anything of this lab exists on the machine (running or stale)."""
        netns = Path("/run/netns")
        return (self.lab_dir.exists() or bool(self._nspawn_pids())
                or (netns.is_dir() and any(netns.glob(f"lk.{self.lab}.*"))))

    def up(self, progress: Progress | None = None) -> None:
        progress = progress or _quiet
        preflight.require_local_engine()
        if self.is_running():
            raise self.already_running_error()
        if self.has_leftovers():
            progress(f"clearing what a stopped run of lab {self.lab!r} left behind")
            self._teardown()
        images = imagelib.ensure_images(self.topology, progress)
        preflight.ensure_inotify_room(progress)
        started = time.monotonic()
        try:
            with signals_interrupt():
                self._write_state({"lab": self.lab, "engine": self.kind, "hosts": {}})
                self._create_networks()
                for host in self.topology.hosts.values():
                    self._start_host(host, images[host.name])
                self._wait_booted(list(self.topology.hosts), progress)
        except BaseException:
            progress(f"lab {self.lab!r} did not start; removing what was made")
            self._teardown()
            raise
        progress(f"lab {self.lab!r} up in {time.monotonic() - started:.1f} s")

    def down(self) -> None:
        self._teardown()

    def reset(self, host: str, progress: Progress | None = None) -> None:
        progress = progress or _quiet
        spec = self.topology.host(host)
        self._leader(host)  # raises if not running
        image = imagelib.image_for(spec)
        if not image.exists:
            image = imagelib.ensure_images(self.topology, progress)[host]
        with signals_interrupt():
            self._close_workers()
            self._stop_host(host)
            sysutil.unmount_under(self._root(host))
            sysutil.remove_tree(self._host_dir(host))
            self._start_host(spec, image)
            self._wait_booted([host], progress)
        progress(f"{host} reset to its baseline")

    def status(self) -> list[HostStatus]:
        live = self._nspawn_pids()
        result = []
        for host in self.topology.hosts.values():
            st = HostStatus(host.name, host.fqdn, host.name in live,
                            [f"{i.address} ({i.network})" for i in host.interfaces])
            if st.running and host.services:
                out = self.run(host.name, ["systemctl", "is-active", *host.services])
                words = out.stdout.split()
                padded = words + ["unknown"] * len(host.services)
                for svc, word in zip(host.services, padded, strict=False):
                    st.services.append(ServiceState(svc, word == "active", word))
            elif not st.running:
                st.services = [ServiceState(s, False, "down") for s in host.services]
            result.append(st)
        return result

    def run(self, host: str, argv: list[str], input: str | None = None,
            timeout: float = 60) -> RunResult:
        return self._run(host, self._enter(self._leader(host), argv), argv, input, timeout)

    def run_privileged(self, host: str, argv: list[str], input: str | None = None,
                       timeout: float = 60) -> RunResult:
        """Like :meth:`run`, with this machine's capabilities kept (CAP_NET_ADMIN for
        nftables, which an nspawn host's own root lacks)."""
        cmd = self._enter(self._leader(host), argv, keep_capabilities=True)
        return self._run(host, cmd, argv, input, timeout)

    def _run(self, host: str, cmd: list[str], argv: list[str], input: str | None,
             timeout: float) -> RunResult:
        try:
            proc = subprocess.run(cmd, input=input, capture_output=True, text=True,
                                  timeout=timeout,
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            return RunResult(host, argv, 124, _text(exc.stdout),
                             _text(exc.stderr) + f"\n(timed out after {timeout:.0f} s)")
        return RunResult(host, argv, proc.returncode, proc.stdout, proc.stderr)

    def host_command(self, host: str, argv: list[str]) -> list[str]:
        return self._enter(self._leader(host), argv)

    def shell_argv(self, host: str) -> list[str]:
        return self._enter(self._leader(host), ["/bin/bash", "--login"])

    def connect(self, host: str, address: str, port: int, timeout: float = 10.0,
                source: str | None = None) -> socket.socket:
        self._leader(host)  # raises if the host is not running
        with self._workers_lock:  # checks connect from several threads at once
            worker = self._netns_workers.get(host)
            if worker is None:
                worker = NetnsThread(f"/run/netns/{self.netns(host)}")
                self._netns_workers[host] = worker
        return worker.connect(address, port, timeout, source)

    def source_address(self, sock: socket.socket) -> tuple[str, int] | None:
        """The socket ``connect`` returns is the host's own, opened in its network
        namespace: its ``getsockname()`` is the address and port the target sees."""
        address, port = sock.getsockname()[:2]
        return str(address), int(port)

    def _close_workers(self) -> None:
        for worker in self._netns_workers.values():
            worker.close()
        self._netns_workers.clear()

    def host_pids(self, host: str) -> list[int]:
        """PIDs (on this machine) of every process of ``host``."""
        leader = self._leader(host)
        pidns = os.readlink(f"/proc/{leader}/ns/pid")
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(f"{entry}/ns/pid") == pidns:
                        pids.append(int(entry.name))
                except OSError:
                    continue
        return pids

    # --- building blocks -------------------------------------------------------

    def _ip(self, *args: str) -> None:
        sysutil.run(["ip", *args])

    def _create_networks(self) -> None:
        sw = self.switch_netns
        self._ip("netns", "add", sw)
        self._ip("-n", sw, "link", "set", "lo", "up")
        for net in self.topology.networks:
            self._ip("-n", sw, "link", "add", f"br-{net}"[:15], "type", "bridge")
            self._ip("-n", sw, "link", "set", f"br-{net}"[:15], "up")
        for host in self.topology.hosts.values():
            ns = self.netns(host.name)
            self._ip("netns", "add", ns)
            self._ip("-n", ns, "link", "set", "lo", "up")
            for i, itf in enumerate(host.interfaces):
                outer = f"{host.name[:12]}-{i}"
                self._ip("-n", sw, "link", "add", outer, "type", "veth",
                         "peer", "name", f"eth{i}", "netns", ns)
                self._ip("-n", sw, "link", "set", outer, "master", f"br-{itf.network}"[:15], "up")
                prefix = self.topology.networks[itf.network].prefixlen
                self._ip("-n", ns, "addr", "add", f"{itf.address}/{prefix}", "dev", f"eth{i}")
                listed = self.topology.listed_clients.get(host.name)
                if listed and listed.network == itf.network:  # its DNSBL-listed address
                    self._ip("-n", ns, "addr", "add", f"{listed.address}/{prefix}", "dev", f"eth{i}")
                self._ip("-n", ns, "link", "set", f"eth{i}", "up")

    def _start_host(self, host: Host, image: imagelib.Image) -> None:
        hdir = self._host_dir(host.name)
        upper, work, root = hdir / "upper", hdir / "work", hdir / "root"
        for d in (upper, work, root):
            d.mkdir(parents=True, exist_ok=True)
        # The container's console is read-only: no getty on it.
        mask = upper / "etc/systemd/system/console-getty.service"
        mask.parent.mkdir(parents=True, exist_ok=True)
        if not mask.is_symlink():
            mask.symlink_to("/dev/null")
        sysutil.run(["mount", "-t", "overlay", "overlay", "-o",
                     f"lowerdir={image.path},upperdir={upper},workdir={work}", str(root)])
        preflight.ensure_nspawn_runtime_dir()
        log = open(hdir / "console.log", "w")  # noqa: SIM115 - owned by the child
        procs = [str(d / "cgroup.procs") for d in self._make_cgroups(host.name)]
        proc = subprocess.Popen(
            # nspawn joins the host's own cgroups first (see _make_cgroups), then execs.
            ["sh", "-c", 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 97; shift; done; '
                         'shift; exec "$@"', "sh", *procs, "--",
             "systemd-nspawn", "--quiet", "--boot", f"--directory={root}",
             f"--machine={self.machine(host.name)}", "--register=no", "--keep-unit",
             f"--network-namespace-path=/run/netns/{self.netns(host.name)}",
             "--resolv-conf=off", "--timezone=off", "--link-journal=no",
             "--console=read-only"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        leader = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not leader:
            if proc.poll() is not None:
                raise HostBootError(f"{host.name}: systemd-nspawn exited {proc.returncode}:\n"
                                    + _tail(hdir / "console.log"))
            leader = _container_init(proc.pid) or 0
            time.sleep(0.02)
        if not leader:
            raise HostBootError(f"{host.name}: the container's init did not start in 10 s\n"
                                + _tail(hdir / "console.log"))
        state = self._read_state()
        state["hosts"][host.name] = {"nspawn": proc.pid, "leader": leader,
                                     "image": str(image.path)}
        self._write_state(state)

    def _wait_booted(self, hosts: list[str], progress: Progress,
                     check_services: bool = True) -> None:
        """Wait until each host's systemd is up and (``check_services``) the topology's
        services of each host are active."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        pending = list(hosts)
        while pending:
            live = self._nspawn_pids()
            for host in list(pending):
                if host not in live:
                    raise HostBootError(f"{host}: the container stopped while booting; "
                                        "its console ends:\n"
                                        + _tail(self._host_dir(host) / "console.log"))
                res = self.run(host, ["systemctl", "is-system-running"], timeout=10)
                word = res.stdout.strip()
                if word in ("running", "degraded"):
                    if check_services:
                        self._check_services(host)
                    pending.remove(host)
                    progress(f"  {host}: up")
            if pending and time.monotonic() > deadline:
                host = pending[0]
                raise HostBootError(
                    f"{host}: not booted after {BOOT_TIMEOUT:.0f} s "
                    f"(systemd says {word or 'nothing'}); its journal ends:\n"
                    + self._journal(host, []))
            if pending:
                time.sleep(0.1)

    def _check_services(self, host: str) -> None:
        services = list(self.topology.host(host).services)
        if not services:
            return
        for _ in range(50):  # a service may still be activating right after boot
            words = self.run(host, ["systemctl", "is-active", *services]).stdout.split()
            padded = words + ["unknown"] * len(services)
            bad = [s for s, w in zip(services, padded, strict=False) if w != "active"]
            if not bad or any(w == "failed" for w in words):
                break
            time.sleep(0.1)
        if bad:
            raise HostBootError(
                f"{host}: service {', '.join(bad)} did not start; its journal ends:\n"
                + self._journal(host, bad))

    def _journal(self, host: str, units: list[str]) -> str:
        args = ["journalctl", "--no-pager", "-b", "-n", "25", "-o", "short"]
        for u in units:
            args += ["-u", u]
        try:
            out = self.run(host, args, timeout=10)
        except LabNotRunningError:
            return _tail(self._host_dir(host) / "console.log")
        return "\n".join("  " + ln for ln in out.stdout.splitlines()[-25:])

    def _cgroups(self, host: str | None = None) -> list[Path]:
        """The cgroups of this lab (of one host), in each hierarchy a host's systemd uses."""
        tail = Path(CGROUP_PARENT, self.lab, *([host] if host else []))
        return [root / tail for root in cgroup_roots()]

    def _lab_cgroup(self) -> Path:
        """The lab's cgroup in the unified hierarchy, where its device policy sits."""
        return unified_root() / CGROUP_PARENT / self.lab

    def _exec_cgroup(self) -> Path:
        """The cgroup of commands run on the lab's hosts (a shell, a probe): beside the
        hosts' own, under the lab's device policy. Made if missing."""
        d = self._lab_cgroup() / EXEC_CGROUP
        if not d.is_dir():
            self._confine_devices()
            d.mkdir(parents=True, exist_ok=True)
        return d

    def _confine_devices(self) -> None:
        """Give the lab's cgroup its device policy (see labkit.engines.devices)."""
        top = self._lab_cgroup()
        top.mkdir(parents=True, exist_ok=True)
        try:
            devices.confine(top)
        except devices.DevicePolicyError as e:
            raise HostBootError(f"lab {self.lab!r}: the kernel refused the hosts' device "
                                f"policy on {top}: {e}") from None

    def _make_cgroups(self, host: str) -> list[Path]:
        """A cgroup of the host's own, in each hierarchy its systemd manages. Without it
        nspawn (--keep-unit, no systemd on the machine) puts every container in the same
        "payload" cgroup of its caller's, where the hosts' systemds of every lab share,
        create and remove the same unit cgroups: a service then fails to start with
        status=219/CGROUP when another host's systemd removed its cgroup meanwhile."""
        self._confine_devices()
        dirs = self._cgroups(host)
        for d in dirs:
            _remove_cgroup_tree(d)  # what a stopped run of this host left
            d.mkdir(parents=True, exist_ok=True)
        return dirs

    def _stop_host(self, host: str) -> None:
        nspawn = self._nspawn_pids().get(host)
        if nspawn is None:
            return
        for kid in sysutil.children(nspawn):
            _kill(kid, signal.SIGKILL)  # the whole PID namespace goes with its init
        if not _wait_gone(nspawn, 10):
            _kill(nspawn, signal.SIGKILL)
            _wait_gone(nspawn, 10)

    def _teardown(self) -> None:
        """Remove every process, mount, namespace and file of this lab; idempotent."""
        self._close_workers()
        for host in self._nspawn_pids():
            self._stop_host(host)
        # A host whose nspawn was killed alone keeps running as an orphan: end it too.
        for host, info in self._read_state().get("hosts", {}).items():
            leader = info.get("leader")
            if leader and _root_of(leader) == self._root(host):
                _kill(leader, signal.SIGKILL)
        sysutil.unmount_under(self.lab_dir)
        netns = Path("/run/netns")
        if netns.is_dir():
            for ns in netns.glob(f"lk.{self.lab}.*"):
                sysutil.run(["ip", "netns", "delete", ns.name], check=False)
        sysutil.remove_tree(self.lab_dir)
        for d in self._cgroups():
            _remove_cgroup_tree(d)


#: Where the hosts' cgroups go, in each hierarchy: labkit/LAB/HOST.
CGROUP_PARENT = "labkit"
#: The cgroup of commands entered on a lab's hosts, in the unified hierarchy: labkit/LAB/.exec
EXEC_CGROUP = ".exec"


def unified_root(base: Path = Path("/sys/fs/cgroup")) -> Path:
    """The unified (cgroup v2) hierarchy: /sys/fs/cgroup/unified on a hybrid machine,
    /sys/fs/cgroup itself on a cgroup-v2 machine."""
    hybrid = base / "unified"
    return hybrid if (hybrid / "cgroup.procs").exists() else base


def cgroup_roots(base: Path = Path("/sys/fs/cgroup")) -> list[Path]:
    """The cgroup hierarchies a host's systemd manages: name=systemd and the unified one
    on a hybrid machine, the unified hierarchy alone on a cgroup-v2 machine."""
    hybrid = [base / "systemd", base / "unified"]
    found = [r for r in hybrid if (r / "cgroup.procs").exists()]
    if not found and (base / "cgroup.procs").exists():
        found = [base]
    return found


def _remove_cgroup_tree(top: Path) -> None:
    """Remove the cgroup ``top`` and every cgroup below it (deepest first); a cgroup that
    still has processes stays (rmdir refuses it)."""
    if not top.is_dir():
        return
    for here, dirs, _files in os.walk(top, topdown=False):
        for d in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(here, d))
    with contextlib.suppress(OSError):
        top.rmdir()


def list_labs() -> list[str]:
    """Names of every lab with anything on this machine (running or stale)."""
    names = set()
    if state_root().is_dir():
        names |= {p.name for p in state_root().iterdir() if p.is_dir()}
    netns = Path("/run/netns")
    if netns.is_dir():
        names |= {p.name.split(".")[1] for p in netns.glob("lk.*.*")}
    return sorted(names)


def _is_container_init(pid: int) -> bool:
    """True if ``pid`` is PID 1 of a PID namespace nested in ours (a booted host's init)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            ids = line.split()[1:]
            return len(ids) >= 2 and ids[-1] == "1"
    return False


def _container_init(nspawn: int) -> int | None:
    """The init of the container that the nspawn process ``nspawn`` runs, once it exists."""
    for kid in sysutil.children(nspawn):
        if _is_container_init(kid):
            return kid
    return None


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _root_of(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/root"))
    except OSError:
        return None


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has exited (reaping it if it is our child); False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass  # not our child: its parent reaps it
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def _tail(path: Path, n: int = 20) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()[-n:]
    except OSError:
        return "  (no console log)"
    return "\n".join("  " + ln for ln in lines)


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")
