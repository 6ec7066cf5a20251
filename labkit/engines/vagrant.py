"""The ``vagrant`` engine: each host a virtual machine started by ``vagrant/Vagrantfile``.

Per lab ``NAME``, on this machine:

- a Vagrant state of its own: every ``vagrant`` command runs in the repository's
  ``vagrant/`` directory (``VAGRANT_CWD``) with ``VAGRANT_DOTFILE_PATH`` set to
  ``vagrant/.vagrant-labs/NAME`` (``LABKIT_VAGRANT_LABS`` overrides the parent), and
  ``LABKIT_TOPOLOGY`` set to the engine's topology file, so the Vagrantfile builds the
  same hosts labkit knows; the machine names are the topology's host names;
- in that directory, ``ssh-config`` (what ``vagrant ssh-config`` printed, one ``Host``
  block per machine, rewritten after every ``up``) and ``ssh/``: one OpenSSH master
  connection per host (``ControlMaster``/``ControlPersist``, its socket ``ssh/HOST``, its
  log ``ssh/HOST.log``). Every command, file copy and probe of a host goes through that
  one connection: ``run`` is ``ssh HOST 'sudo -n -- ARGV'`` and ``connect`` is
  ``ssh -W ADDRESS:PORT HOST`` bound to one end of a socket pair (the VM opens the TCP
  connection, so its source port is not known here: ``source_address`` is None).

``down`` is ``vagrant destroy -f`` and then removes that directory. ``reset`` does not
rebuild a VM: it restores the host's baseline mail configuration (the tarball the
provisioning left in ``/var/lib/labkit/baseline``) and restarts the host's services.

The VMs of two labs would share the topology's addresses on the same host-only (or
libvirt) networks, so ``up`` refuses to start a second lab while another has VMs.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import hashlib
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from labkit.engines.base import (
    Engine,
    HostStatus,
    Progress,
    RunResult,
    ServiceState,
    labkit_command,
    signals_interrupt,
)
from labkit.errors import (
    HostBootError,
    LabExistsError,
    LabkitError,
    LabNotRunningError,
    PreflightError,
)
from labkit.topology import REPO_DIR, Topology

VAGRANT_DIR = REPO_DIR / "vagrant"
BASELINE = "/var/lib/labkit/baseline/mail-config.tar.gz"
RESET_ROOT = "/"          # where reset restores the baseline (the VM's root; tests change it)
SERVICE_TIMEOUT = 120.0   # a VM's services, once Vagrant has booted and provisioned it
CONTROL_PERSIST = "10m"   # an idle master connection goes away after this
SESSION_OPENED = "master session id"  # ssh -v: the master confirmed a -W forward
OUTPUT_TAIL = 25

# `vagrant up` output names the machine it is working on: "==> relay: ..." or "    relay: ...".
_MACHINE_LINE = re.compile(r"^(?:==> |\s+)([a-z][a-z0-9-]*): ")
# ssh's own complaints when it cannot reach the VM at all (not the remote command's).
_SSH_UNREACHABLE = re.compile(
    r"^ssh: |^kex_exchange_identification|Connection (?:closed|reset) by .* port|"
    r"^Control socket connect", re.M)
# The master's log when the VM could not open a forwarded connection.
_OPEN_FAILED = re.compile(r"open failed: connect failed: (.+?)\s*$", re.M)


def labs_root() -> Path:
    """Where each lab's Vagrant state lives (one directory per lab name)."""
    return Path(os.environ.get("LABKIT_VAGRANT_LABS", VAGRANT_DIR / ".vagrant-labs"))


def list_labs() -> list[str]:
    """Names of every lab with a Vagrant state on this machine."""
    root = labs_root()
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _quiet(msg: str) -> None:
    pass


# --- what Vagrant prints -----------------------------------------------------------

@dataclass
class MachineState:
    """One machine as ``vagrant status --machine-readable`` describes it."""
    name: str
    state: str = "unknown"     # Vagrant's word: running, poweroff, not_created, shutoff, ...
    provider: str = ""
    human: str = ""            # state-human-short, e.g. "not created"

    @property
    def running(self) -> bool:
        return self.state == "running"


def parse_machine_readable(text: str) -> dict[str, MachineState]:
    """The machines of ``vagrant status --machine-readable``, by name, in Vagrant's order.

    Each line is ``TIMESTAMP,TARGET,TYPE,DATA...``; commas inside data are written
    ``%!(VAGRANT_COMMA)`` and newlines ``\\n``.
    """
    machines: dict[str, MachineState] = {}
    for line in text.splitlines():
        parts = line.rstrip("\r").split(",", 3)
        if len(parts) < 4 or not parts[1]:
            continue
        _, target, kind, data = parts
        data = data.replace("%!(VAGRANT_COMMA)", ",").replace("\\n", "\n")
        if kind not in ("state", "provider-name", "state-human-short", "metadata"):
            continue
        m = machines.setdefault(target, MachineState(target))
        if kind == "state":
            m.state = data
        elif kind == "provider-name":
            m.provider = data
        elif kind == "state-human-short":
            m.human = data
        elif kind == "metadata" and data.startswith("provider,"):
            m.provider = m.provider or data.split(",", 1)[1]
    return machines


# Options whose value is a command line for a shell: kept exactly as written.
_COMMAND_OPTIONS = {"proxycommand", "localcommand", "remotecommand", "knownhostscommand"}


def parse_ssh_config(text: str) -> dict[str, list[tuple[str, str]]]:
    """``vagrant ssh-config`` output: each ``Host`` with its options, in order.

    Values lose the double quotes Vagrant puts around paths with spaces (a command,
    such as ``ProxyCommand``'s, is kept as written).
    """
    hosts: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        value = value.strip()
        if "=" in key and not value:          # "Key=value" is valid ssh_config too
            key, _, value = key.partition("=")
        if len(value) >= 2 and value[0] == value[-1] == '"' and key.lower() not in _COMMAND_OPTIONS:
            value = value[1:-1]
        if key.lower() == "host":
            current = hosts.setdefault(value, [])
        elif current is not None:
            current.append((key, value))
    return hosts


def format_ssh_config(hosts: dict[str, list[tuple[str, str]]]) -> str:
    """The text of an ssh_config file with one ``Host`` block per machine."""
    out = ["# Written by labkit from `vagrant ssh-config`; rewritten at every `labkit up`."]
    for name, options in hosts.items():
        out.append(f"Host {name}")
        for key, value in options:
            quote = " " in value and key.lower() not in _COMMAND_OPTIONS
            out.append(f'  {key} "{value}"' if quote else f"  {key} {value}")
        out.append("")
    return "\n".join(out)


# --- the engine ----------------------------------------------------------------------

class VagrantEngine(Engine):
    """A lab of virtual machines driven by Vagrant (see module doc)."""

    kind = "vagrant"
    labs_side_by_side = False  # two labs' VMs would share the topology's addresses

    def __init__(self, topology: Topology, lab: str) -> None:
        super().__init__(topology, lab)
        self.vagrant_dir = VAGRANT_DIR
        self._forwards: list[subprocess.Popen] = []

    # --- names and places -------------------------------------------------------

    @property
    def dotfile_dir(self) -> Path:
        """``VAGRANT_DOTFILE_PATH`` of this lab: its Vagrant state and labkit's files."""
        return labs_root() / self.lab

    @property
    def ssh_config_path(self) -> Path:
        return self.dotfile_dir / "ssh-config"

    @property
    def control_dir(self) -> Path:
        """Where the master connections' sockets live: ``ssh/`` in the lab's directory,
        unless that path is too long for a socket (then a private directory in /tmp)."""
        preferred = self.dotfile_dir / "ssh"
        longest = max((len(h) for h in self.topology.hosts), default=8)
        # sun_path holds 108 bytes and ssh adds a 17-character suffix while binding.
        if len(str(preferred.resolve())) + 1 + longest + 17 < 100:
            return preferred.resolve()
        digest = hashlib.sha1(str(preferred.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"labkit-ssh-{digest}"

    def control_path(self, host: str) -> Path:
        return self.control_dir / host

    def _machine_ids(self) -> list[Path]:
        """Vagrant's record of each machine it created for this lab (``machines/*/*/id``)."""
        return sorted(self.dotfile_dir.glob("machines/*/*/id"))

    def has_stopped_hosts(self) -> bool:
        """True if Vagrant has created VMs for this lab (asked when it is not running:
        halted VMs), from its state on disk, without running ``vagrant``."""
        return bool(self._machine_ids())

    # --- Vagrant --------------------------------------------------------------------

    def preflight(self) -> None:
        """Raise :class:`PreflightError` if ``vagrant`` or ``ssh`` is missing."""
        if shutil.which("vagrant") is None:
            raise PreflightError(
                "the vagrant engine needs the 'vagrant' command, which is not on PATH: "
                "install Vagrant and VirtualBox or libvirt, see docs/vagrant.md")
        self._require_ssh()
        if not (self.vagrant_dir / "Vagrantfile").is_file():
            raise PreflightError(
                f"no Vagrantfile in {self.vagrant_dir}: the vagrant engine runs from a checkout "
                "of the course repository (its vagrant/ directory)")

    @staticmethod
    def _require_ssh() -> None:
        if shutil.which("ssh") is None:
            raise PreflightError(
                "the vagrant engine reaches its VMs with OpenSSH's 'ssh', which is not on "
                "PATH: install it (Debian/Ubuntu: 'apt-get install openssh-client')")

    def vagrant_env(self) -> dict[str, str]:
        """The environment of every ``vagrant`` command of this lab."""
        env = dict(os.environ)
        env["VAGRANT_CWD"] = str(self.vagrant_dir)
        env["VAGRANT_DOTFILE_PATH"] = str(self.dotfile_dir)
        env["LABKIT_TOPOLOGY"] = str(Path(self.topology.source).resolve())
        env.setdefault("VAGRANT_CHECKPOINT_DISABLE", "1")
        return env

    def _vagrant(self, args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
        if shutil.which("vagrant") is None:
            self.preflight()
        try:
            return subprocess.run(["vagrant", *args], cwd=self.vagrant_dir, env=self.vagrant_env(),
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  errors="replace", timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise LabkitError(f"vagrant {' '.join(args)} did not finish in {timeout:.0f} s "
                              f"(lab {self.lab!r})") from exc

    def machines(self) -> dict[str, MachineState]:
        """Each machine of this lab as Vagrant sees it (``vagrant status``)."""
        if not self._machine_ids():
            return {h: MachineState(h, "not_created", human="not created") for h in self.topology.hosts}
        res = self._vagrant(["status", "--machine-readable"], timeout=120)
        found = parse_machine_readable(res.stdout)
        if res.returncode != 0 and not found:
            raise LabkitError(f"vagrant status failed for lab {self.lab!r} (exit {res.returncode}):\n"
                              + _indent_tail(res.stdout + res.stderr))
        return found

    def _other_labs_with_vms(self) -> list[str]:
        root = labs_root()
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir()
                      if p.is_dir() and p.name != self.lab and any(p.glob("machines/*/*/id")))

    # --- Engine verbs -----------------------------------------------------------------

    def is_running(self) -> bool:
        return any(m.running for m in self.machines().values())

    def up(self, progress: Progress | None = None) -> None:
        progress = progress or _quiet
        self.preflight()
        if os.environ.get("VAGRANT_DEFAULT_PROVIDER") == "libvirt":
            from labkit.engines import libvirtd
            if not libvirtd.is_running() and not libvirtd.systemd_runs():
                libvirtd.ensure_running(progress)  # a machine without systemd: by hand
        if self.is_running():
            raise self.already_running_error()
        others = self._other_labs_with_vms()
        if others:
            raise LabExistsError(
                f"lab {others[0]!r} has VMs under Vagrant: two labs' VMs would share the same "
                f"addresses and networks. Remove it first with "
                f"'{labkit_command('down', self.kind, others[0])}'")
        if self._machine_ids():
            progress(f"lab {self.lab!r} has stopped VMs: booting them again as they were")
        self._close_connections()
        self.ssh_config_path.unlink(missing_ok=True)
        started = time.monotonic()
        try:
            with signals_interrupt():
                self.dotfile_dir.mkdir(parents=True, exist_ok=True)
                self._vagrant_up(progress)
                self.write_ssh_config()
                for host in self.topology.hosts:
                    self._wait_services(host)
                    progress(f"  {host}: up")
        except BaseException:
            progress(f"lab {self.lab!r} did not start; removing what was made (vagrant destroy -f)")
            self._teardown()
            raise
        progress(f"lab {self.lab!r} up in {time.monotonic() - started:.1f} s")

    def _vagrant_up(self, progress: Progress) -> None:
        """``vagrant up``, its output streamed line by line through ``progress``."""
        tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL)
        host = ""
        proc = subprocess.Popen(["vagrant", "up"], cwd=self.vagrant_dir, env=self.vagrant_env(),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)  # Ctrl-C reaches labkit, which stops it
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip()
                if not line:
                    continue
                tail.append(line)
                m = _MACHINE_LINE.match(line)
                if m and m.group(1) in self.topology.hosts:
                    host = m.group(1)
                progress(f"  {line}")
            rc = proc.wait()
        except BaseException:
            _stop(proc)
            raise
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
        if rc != 0:
            where = host or "vagrant"
            raise HostBootError(f"{where}: vagrant up failed (exit {rc}); its output ends:\n"
                                + "\n".join("  " + ln for ln in tail))

    def write_ssh_config(self) -> Path:
        """Ask Vagrant how to reach each machine and keep it as this lab's ``ssh-config``."""
        res = self._vagrant(["ssh-config"], timeout=120)
        hosts = parse_ssh_config(res.stdout)
        missing = [h for h in self.topology.hosts if h not in hosts]
        if res.returncode != 0 or missing:
            where = missing[0] if missing else "vagrant"
            raise HostBootError(f"{where}: vagrant ssh-config gave no SSH settings for it "
                                f"(exit {res.returncode}):\n" + _indent_tail(res.stdout + res.stderr))
        self.dotfile_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.ssh_config_path.with_suffix(".tmp")
        tmp.write_text(format_ssh_config(hosts))
        tmp.chmod(0o600)
        tmp.rename(self.ssh_config_path)
        return self.ssh_config_path

    def down(self) -> None:
        self._teardown()

    def _teardown(self) -> None:
        """Destroy every VM of this lab and remove its directory; idempotent."""
        self._close_connections()
        if not self.dotfile_dir.exists():
            return
        if self._machine_ids() or (self.dotfile_dir / "machines").exists():
            res = self._vagrant(["destroy", "-f"], timeout=900)
            if res.returncode != 0:
                # Keep the directory: it is Vagrant's only record of these VMs.
                raise LabkitError(
                    f"vagrant destroy -f failed for lab {self.lab!r} (exit {res.returncode}); "
                    f"its VMs may still exist (see 'vagrant global-status'):\n"
                    + _indent_tail(res.stdout + res.stderr))
        shutil.rmtree(self.dotfile_dir, ignore_errors=True)
        shutil.rmtree(self.control_dir, ignore_errors=True)

    def status(self) -> list[HostStatus]:
        machines = self.machines()
        result = []
        for host in self.topology.hosts.values():
            m = machines.get(host.name, MachineState(host.name, "unknown", human="not in Vagrant's state"))
            detail = f"{m.provider}: {m.human or m.state}" if m.provider else (m.human or m.state)
            st = HostStatus(host.name, host.fqdn, m.running,
                            [f"{i.address} ({i.network})" for i in host.interfaces], detail=detail)
            if st.running and host.services:
                words = self.run(host.name, ["systemctl", "is-active", *host.services]).stdout.split()
                padded = words + ["unknown"] * len(host.services)
                for svc, word in zip(host.services, padded, strict=False):
                    st.services.append(ServiceState(svc, word == "active", word))
            elif not st.running:
                st.services = [ServiceState(s, False, "down") for s in host.services]
            result.append(st)
        return result

    # --- SSH ------------------------------------------------------------------------------

    def ssh_options(self, host: str, log_level: str = "ERROR") -> list[str]:
        """``ssh`` and the options every command to ``host`` uses (before the host name).

        Options given here win over the ``Host`` block of ``ssh-config`` (ssh keeps the
        first value it reads), e.g. Vagrant's ``LogLevel FATAL``.
        """
        return ["ssh", "-F", str(self.ssh_config_path),
                "-o", "ControlMaster=auto",
                "-o", f"ControlPath={self.control_path(host)}",
                "-o", f"ControlPersist={CONTROL_PERSIST}",
                "-o", "BatchMode=yes",
                "-o", f"LogLevel={log_level}"]

    @staticmethod
    def remote_command(argv: list[str]) -> str:
        """The command line the VM's shell runs: ``argv`` as root, each word quoted."""
        return shlex.join(["sudo", "-n", "--", *argv])

    def _require_host(self, host: str) -> None:
        self.topology.host(host)
        self._require_ssh()
        if self.ssh_config_path.exists():
            return
        if self._machine_ids():  # VMs made, but no ssh-config (e.g. started by hand): ask Vagrant
            with contextlib.suppress(HostBootError):
                self.write_ssh_config()
                return
        raise LabNotRunningError(
            f"host {host} of lab {self.lab!r} is not running under Vagrant (start it with: "
            f"{self.command_hint('up')})")

    def ensure_master(self, host: str) -> None:
        """Open the one persistent SSH connection to ``host`` if it is not open.

        The master logs (at INFO, to ``ssh/HOST.log``) why the VM could not open a
        forwarded connection, which is how :meth:`connect` tells refused from unreachable.
        """
        self._require_host(host)
        sock = self.control_path(host)
        if sock.exists():
            return
        sock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if sock.parent.stat().st_uid != os.geteuid() or sock.parent.stat().st_mode & 0o077:
            raise PreflightError(f"{sock.parent} (for the lab's SSH connections) must be a directory "
                                 "of yours that nobody else can enter: remove it and try again")
        with open(sock.parent / f"{host}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if sock.exists():
                return
            cmd = [*self.ssh_options(host, log_level="INFO"), "-o", "ServerAliveInterval=15",
                   "-E", str(self.master_log(host)), "-f", "-N", host]
            try:
                res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                     errors="replace", timeout=60)
                rc, said = res.returncode, res.stderr
            except subprocess.TimeoutExpired as exc:
                rc, said = 124, _text(exc.stderr)
            if rc != 0:
                raise LabNotRunningError(
                    f"host {host} of lab {self.lab!r} cannot be reached over SSH (exit {rc}); "
                    "is its VM running ('labkit status --engine vagrant')? ssh says:\n"
                    + self._log_tail(host) + ("\n" + _indent_tail(said) if said.strip() else ""))

    def master_log(self, host: str) -> Path:
        return self.control_dir / f"{host}.log"

    def _log_tail(self, host: str, since: int = 0) -> str:
        try:
            with open(self.master_log(host), "rb") as f:
                f.seek(since)
                text = f.read().decode(errors="replace")
        except OSError:
            return "  (no ssh log)"
        return "\n".join("  " + ln.strip() for ln in text.splitlines()[-10:] if ln.strip())

    def _close_connections(self) -> None:
        """End this lab's forwards and master connections."""
        for proc in self._forwards:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self._forwards.clear()
        if not self.control_dir.is_dir() or shutil.which("ssh") is None:
            return
        for host in self.topology.hosts:
            sock = self.control_path(host)
            if sock.exists():
                subprocess.run([*self.ssh_options(host), "-O", "exit", host],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
                sock.unlink(missing_ok=True)  # a master that died (machine restarted) left it

    def run(self, host: str, argv: list[str], input: str | None = None,
            timeout: float = 60) -> RunResult:
        self.ensure_master(host)
        cmd = [*self.ssh_options(host), host, self.remote_command(argv)]
        try:
            proc = subprocess.run(cmd, input=input, capture_output=True, text=True, errors="replace",
                                  timeout=timeout,
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            return RunResult(host, argv, 124, _text(exc.stdout),
                             _text(exc.stderr) + f"\n(timed out after {timeout:.0f} s)")
        if proc.returncode == 255 and _SSH_UNREACHABLE.search(proc.stderr):
            raise LabNotRunningError(
                f"host {host} of lab {self.lab!r} cannot be reached over SSH; is its VM running "
                f"('labkit status --engine vagrant')? ssh says:\n" + _indent_tail(proc.stderr))
        return RunResult(host, argv, proc.returncode, proc.stdout, proc.stderr)

    def host_command(self, host: str, argv: list[str]) -> list[str]:
        self.ensure_master(host)
        return [*self.ssh_options(host), host, self.remote_command(argv)]

    def shell_argv(self, host: str) -> list[str]:
        self.ensure_master(host)
        return [*self.ssh_options(host), "-t", host, self.remote_command(["/bin/bash", "--login"])]

    def forward_argv(self, host: str, address: str, port: int) -> list[str]:
        """The ``ssh -W`` command that carries one TCP connection from ``host``.

        ``-v`` makes the client say when the master has the VM's connection open
        ("master session id"): the only sign of success of a forward whose server is silent.
        """
        return [*self.ssh_options(host), "-v", "-W", f"{address}:{port}", host]

    def connect(self, host: str, address: str, port: int, timeout: float = 10.0,
                source: str | None = None) -> socket.socket:
        if source:
            raise LabkitError(f"the vagrant engine cannot connect from a chosen address ({source}) "
                              "yet: ssh -W forwards from the VM's default address; probes that "
                              "need it (the DNSBL-listed client) run on the local engine")
        self.ensure_master(host)
        self._forwards = [p for p in self._forwards if p.poll() is None]
        log = self.master_log(host)
        log_offset = log.stat().st_size if log.exists() else 0
        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen(self.forward_argv(host, address, port), stdin=theirs,
                                    stdout=theirs, stderr=subprocess.PIPE)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        try:
            opened, stderr = _wait_forward(proc, time.monotonic() + timeout)
        except BaseException:
            ours.close()
            _stop(proc, grace=2)
            if proc.stderr is not None:
                proc.stderr.close()
            raise
        target = f"{address}:{port} from {host}"
        if opened:
            threading.Thread(target=_drain, args=(proc,), daemon=True).start()
            self._forwards.append(proc)
            sock = ForwardedSocket(ours, (address, port))
            sock.settimeout(timeout)
            return sock
        ours.close()
        still_running = proc.poll() is None
        if still_running:
            _stop(proc, grace=2)
        if proc.stderr is not None:
            proc.stderr.close()
        if still_running:
            raise TimeoutError(errno.ETIMEDOUT, f"connection to {target} timed out after {timeout:g} s")
        reason = _failure_reason(stderr, self._log_tail(host, log_offset))
        raise _os_error(reason, target)

    # --- reset ----------------------------------------------------------------------------

    def reset(self, host: str, progress: Progress | None = None) -> None:
        progress = progress or _quiet
        spec = self.topology.host(host)
        self.ensure_master(host)
        with signals_interrupt():
            res = self.run(host, ["sh", "-c", RESET_SCRIPT, "reset", BASELINE, RESET_ROOT], timeout=300)
            if not res.ok:
                raise HostBootError(f"{host}: restoring the baseline mail configuration failed "
                                    f"(exit {res.returncode}):\n" + _indent_tail(res.stderr or res.stdout))
            if spec.services:
                self.run(host, ["systemctl", "restart", *spec.services], timeout=180)
            self._wait_services(host)
        progress(f"{host} reset to its baseline mail configuration")

    def _wait_services(self, host: str, timeout: float = SERVICE_TIMEOUT) -> None:
        """Wait until ``host``'s services are active; HostBootError with the journal if not."""
        services = list(self.topology.host(host).services)
        if not services:
            return
        deadline = time.monotonic() + timeout
        while True:
            words = self.run(host, ["systemctl", "is-active", *services], timeout=30).stdout.split()
            padded = words + ["unknown"] * len(services)
            bad = [s for s, w in zip(services, padded, strict=False) if w != "active"]
            if not bad:
                return
            if any(w == "failed" for w in words) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        args = ["journalctl", "--no-pager", "-b", "-n", "25", "-o", "short"]
        for u in bad:
            args += ["-u", u]
        journal = self.run(host, args, timeout=30).stdout
        raise HostBootError(f"{host}: service {', '.join(bad)} did not start; its journal ends:\n"
                            + "\n".join("  " + ln for ln in journal.splitlines()[-25:]))


#: Run as ``sh -c RESET_SCRIPT reset TARBALL ROOT`` on the host (ROOT is / on a VM): put
#: back what the baseline tarball holds (etc/mail or etc/postfix replaced whole) and
#: rebuild what derives from it (sendmail.cf and the maps; the aliases database).
RESET_SCRIPT = r"""
set -eu
tarball=$1 root=${2:-/}
[ -f "$tarball" ] || exit 0   # this host keeps no mail configuration
members=$(tar -tzf "$tarball")
has() { printf '%s\n' "$members" | grep -Eq "^(\./)?$1(/|\$)"; }
if has etc/mail; then rm -rf "$root/etc/mail"; fi
if has etc/postfix; then rm -rf "$root/etc/postfix"; fi
tar -C "$root" -xzpf "$tarball"
if has etc/mail; then
    make -s -C "$root/etc/mail" >/dev/null
    newaliases >/dev/null
fi
if has etc/postfix; then
    newaliases
    if postfix status >/dev/null 2>&1; then postfix reload >/dev/null 2>&1; fi
fi
# Drop-ins the course writes for the lab's own services (section 10 gives its filter a
# user of its own): gone, as in the image the local engine resets from.
if [ -d "$root/etc/systemd/system" ]; then
    rm -rf "$root"/etc/systemd/system/labkit-*.service.d
    if [ "$root" = / ]; then systemctl daemon-reload 2>/dev/null || true; fi
fi
"""


class ForwardedSocket(socket.socket):
    """Our end of the socket pair an ``ssh -W`` forward carries; ``getpeername()``
    answers with the forwarded address and port, as a TCP socket would."""

    def __init__(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        super().__init__(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self._peer = peer

    def getpeername(self):
        return self._peer


def _wait_forward(proc: subprocess.Popen, deadline: float) -> tuple[bool, str]:
    """Read ``ssh -v -W``'s stderr until the forward is open, ssh exits, or ``deadline``.

    Returns (opened, what ssh said); opened is False on exit with failure or timeout.
    """
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    buf = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False, buf.decode(errors="replace")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if chunk:
            buf += chunk
            if SESSION_OPENED.encode() in buf:
                return True, buf.decode(errors="replace")
            continue
        rc = proc.wait()  # EOF: ssh is exiting
        return rc == 0, buf.decode(errors="replace")


def _drain(proc: subprocess.Popen) -> None:
    """Keep reading an open forward's stderr until ssh exits, then reap it."""
    assert proc.stderr is not None
    with contextlib.suppress(OSError, ValueError):
        while proc.stderr.read(4096):
            pass
    with contextlib.suppress(OSError, ValueError):
        proc.stderr.close()
    proc.wait()


def _failure_reason(stderr: str, master_log: str) -> str:
    m = _OPEN_FAILED.search(master_log) or _OPEN_FAILED.search(stderr)
    if m:
        return m.group(1)
    said = [ln.strip() for ln in stderr.splitlines()
            if ln.strip() and not ln.startswith(("debug", "OpenSSH"))]
    return said[-1] if said else "ssh -W failed"


def _os_error(reason: str, target: str) -> OSError:
    """The OSError a socket would raise for the reason the VM gave."""
    low = reason.lower()
    msg = f"connection to {target}: {reason}"
    if "refused" in low and "refused by peer" not in low:
        return ConnectionRefusedError(errno.ECONNREFUSED, msg)
    if "timed out" in low:
        return TimeoutError(errno.ETIMEDOUT, msg)
    if "no route to host" in low:
        return OSError(errno.EHOSTUNREACH, msg)
    if "network is unreachable" in low:
        return OSError(errno.ENETUNREACH, msg)
    if "not known" in low or "name resolution" in low:
        return socket.gaierror(socket.EAI_NONAME, msg)
    if low == "open failed":  # sshd's word when connect() itself failed: no route there
        return OSError(errno.ENETUNREACH, f"{msg} (the host has no route to it)")
    return ConnectionError(errno.ECONNABORTED, msg)


def _stop(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """Stop a child (and its process group if it leads one): SIGINT, then SIGKILL."""
    if proc.poll() is not None:
        return
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    own = pgid == proc.pid

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig) if own else os.kill(proc.pid, sig)
    send(signal.SIGINT)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()


def _indent_tail(text: str, n: int = 15) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()][-n:]
    return "\n".join("  " + ln for ln in lines) if lines else "  (no output)"


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode(errors="replace")
