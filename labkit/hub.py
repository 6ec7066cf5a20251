"""``labkit class serve``: JupyterHub for the class on this machine.

Each learner of the class (``labkit class up``) logs in with the name and password of the
roster, and gets a JupyterLab of their own, running as a system user of their own (made
here if missing), on a copy of the course in their home, with ``LABKIT_LAB`` set to their
lab. Their labkit reaches that lab through the lab service, which this command runs too.
The instructor logs in as ``instructor`` (the roster's instructor password), an admin of
the hub. With ``--auth pam`` everybody logs in as the server's own users with their own
passwords instead (PAM: local accounts, or LDAP through SSSD): the roster's learners, and
the members of the group ``labkit-instructors`` as admins.

The hub is the Jupyter project's own (jupyterhub from PyPI, its proxy
configurable-http-proxy from npm); its database, cookie secret and configuration are in
``/var/lib/labkit/hub`` (``LABKIT_HUB``), root's alone.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from labkit import classroom
from labkit.errors import LabkitError
from labkit.service import server as lab_service
from labkit.topology import REPO_DIR

LEARNER_VENV = Path("/opt/labkit/venv")
#: How people log in to the hub (see HubConfig.auth).
AUTH_MODES = ("roster", "pam")
INSTRUCTOR = "instructor"
#: What each learner gets a copy of, in ~/course.
COURSE = ("notebooks", "exercises")

Progress = Callable[[str], None]


class HubError(LabkitError):
    """The hub cannot start: something it needs is missing."""


def hub_dir() -> Path:
    return Path(os.environ.get("LABKIT_HUB", "/var/lib/labkit/hub"))


def ensure_user(name: str) -> bool:
    """A system user ``name`` with a home and a shell; True if it was made now."""
    try:
        pwd.getpwnam(name)
        return False
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True)
        return True


def install_course(name: str) -> Path:
    """A copy of the course (lessons, exercises) in ``name``'s home, theirs; kept if it
    is already there (their work is in it)."""
    user = pwd.getpwnam(name)
    dest = Path(user.pw_dir) / "course"
    if not dest.exists():
        dest.mkdir(mode=0o755)
        for part in COURSE:
            shutil.copytree(REPO_DIR / part, dest / part)
        for root, dirs, files in os.walk(dest):
            for n in [root, *(os.path.join(root, f) for f in [*dirs, *files])]:
                os.chown(n, user.pw_uid, user.pw_gid)
    return dest


@dataclass
class HubConfig:
    """Where the hub listens (the proxy on ``port``; the hub itself and the proxy's API on
    the two ports after it, on 127.0.0.1) and where the lab service does."""
    ip: str = "0.0.0.0"
    port: int = 8000
    service_socket: str = field(default_factory=lambda: os.environ.get(
        "LABKIT_SERVICE", "/run/labkit/service.sock"))
    #: The class board: its sections ("" for every check), how often it grades (s), and
    #: after how long without progress a learner stands out (s).
    board_sections: str = ""
    board_interval: float = 60
    board_stuck_after: float = 600
    board_key: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    #: How people log in: "roster" (the roster's names and passwords for the day) or "pam"
    #: (the server's own users and passwords: the roster's learners, and the members of
    #: the group labkit-instructors as the hub's admins).
    auth: str = "roster"

    @property
    def board_port(self) -> int:
        return self.port + 3

    @property
    def hub_port(self) -> int:
        return self.port + 1

    @property
    def proxy_api_port(self) -> int:
        return self.port + 2


_ROSTER_AUTH = '''\
import hmac
import json

from jupyterhub.auth import Authenticator

ROSTER = {roster!r}
INSTRUCTOR = {instructor!r}


def _roster():
    with open(ROSTER) as f:
        return json.load(f)


class RosterAuthenticator(Authenticator):
    """The class's roster: each learner's name and password for the day; the instructor
    with the roster's instructor password (an admin of the hub)."""

    async def authenticate(self, handler, data):
        roster = _roster()
        name = (data.get("username") or "").strip().lower()
        password = data.get("password") or ""
        if name == INSTRUCTOR:
            wanted = roster.get("instructor_password") or ""
        else:
            wanted = next((x["password"] for x in roster["learners"] if x["name"] == name), "")
        if wanted and hmac.compare_digest(password.encode(), wanted.encode()):
            return {{"name": name, "admin": name == INSTRUCTOR}}
        return None


c = get_config()  # noqa: F821
c.JupyterHub.authenticator_class = RosterAuthenticator
c.Authenticator.admin_users = {{INSTRUCTOR}}
'''

#: Learners and instructors log in as the server's own users, with their own passwords:
#: the roster's learners, and the members of the instructors' group (admins of the hub).
_PAM_AUTH = '''\
c = get_config()  # noqa: F821
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.allowed_groups = {{{group!r}}}
c.PAMAuthenticator.admin_groups = {{{group!r}}}
c.PAMAuthenticator.open_sessions = False
'''


_CONFIG = '''\
# Written by labkit class serve: the hub of the class on this machine.
{auth}
c.Authenticator.allowed_users = set({learners!r})
c.JupyterHub.bind_url = "http://{ip}:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.pid_file = "{dir}/proxy.pid"
c.JupyterHub.db_url = "sqlite:///{dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/jupyterhub_cookie_secret"
c.JupyterHub.cleanup_servers = True
c.Spawner.cmd = ["{venv}/bin/jupyterhub-singleuser"]
c.Spawner.default_url = "/lab/tree/notebooks/README.ipynb"
c.Spawner.notebook_dir = "~/course"
c.Spawner.start_timeout = 120
c.JupyterHub.services = [{{
    "name": "class-board",
    "url": "http://127.0.0.1:{board_port}",
    "command": {board_command!r},
    "environment": {board_env!r},
    "oauth_no_confirm": True,
}}]
c.Spawner.environment = {{
    "LABKIT_LAB": lambda spawner: spawner.user.name,
    "LABKIT_SERVICE": {socket!r},
    "PATH": "{venv}/bin:/usr/local/bin:/usr/bin:/bin",
}}
'''


def write_config(roster_file: Path, learners: list[str], cfg: HubConfig) -> Path:
    chp = shutil.which("configurable-http-proxy")
    if not chp:
        raise HubError("configurable-http-proxy is not installed (setup.sh installs it: "
                       "npm install -g configurable-http-proxy@5.1)")
    if not (LEARNER_VENV / "bin" / "jupyterhub-singleuser").exists():
        raise HubError(f"the learners' environment {LEARNER_VENV} has no jupyterhub-singleuser "
                       "(run setup.sh --install-only)")
    d = hub_dir()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    d.chmod(0o700)
    path = d / "jupyterhub_config.py"
    if cfg.auth not in AUTH_MODES:
        raise HubError(f"unknown way to log in {cfg.auth!r}: {' or '.join(AUTH_MODES)}")
    auth = (_PAM_AUTH.format(group=lab_service.INSTRUCTORS) if cfg.auth == "pam"
            else _ROSTER_AUTH.format(roster=str(roster_file), instructor=INSTRUCTOR))
    path.write_text(_CONFIG.format(
        auth=auth, learners=sorted(learners), ip=cfg.ip,
        port=cfg.port, hub_port=cfg.hub_port, proxy_api_port=cfg.proxy_api_port, chp=chp,
        dir=d, venv=LEARNER_VENV, socket=cfg.service_socket, board_port=cfg.board_port,
        board_command=[sys.executable, "-m", "labkit.board_service", "--sections",
                       cfg.board_sections, "--interval", str(cfg.board_interval),
                       "--stuck-after", str(cfg.board_stuck_after)],
        board_env={"LABKIT_CLASS": str(classroom.roster_path().parent),
                   "LABKIT_BOARD_KEY": cfg.board_key, "PYTHONPATH": str(REPO_DIR),
                   "PATH": os.environ.get("PATH", "/usr/bin:/bin")}))
    path.chmod(0o600)
    return path


def prepare(cfg: HubConfig, progress: Progress | None = None) -> tuple[Path, classroom.Roster]:
    """The class's users and course copies, and the hub's configuration."""
    say = progress or (lambda _m: None)
    roster = classroom.load()
    if cfg.auth == "pam":
        return _prepare_pam(cfg, roster, say), roster
    if not roster.instructor_password:
        roster.instructor_password = classroom.new_password()
        classroom.save(roster)
    made = [n for n in roster.names if ensure_user(n)]
    if made:
        say(f"system users made for {len(made)} learners: {', '.join(made)}")
    for name in roster.names:
        install_course(name)
    return write_config(classroom.roster_path(), roster.names, cfg), roster


def _prepare_pam(cfg: HubConfig, roster: classroom.Roster, say: Progress) -> Path:
    """Logins are the server's own: every learner must be a user already (PAM cannot log
    in a user made here without a password), and instructors are the members of the group
    labkit-instructors."""
    missing = [n for n in roster.names if not _user_exists(n)]
    if missing:
        raise HubError(f"--auth pam logs learners in as this server's users, and "
                       f"{len(missing)} of the roster are none: {', '.join(missing)} (make "
                       f"them with useradd and a password, or use --auth roster)")
    try:
        members = grp.getgrnam(lab_service.INSTRUCTORS).gr_mem
    except KeyError:
        members = []
    if members:
        say(f"instructors (admins of the hub): {', '.join(sorted(members))}")
    else:
        say(f"no instructor can log in: nobody is in the group {lab_service.INSTRUCTORS} "
            f"(groupadd {lab_service.INSTRUCTORS}; usermod -aG {lab_service.INSTRUCTORS} NAME)")
    for name in roster.names:
        install_course(name)
    return write_config(classroom.roster_path(), roster.names, cfg)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def serve(cfg: HubConfig, progress: Progress | None = None,
          ready: Callable[[subprocess.Popen], None] | None = None) -> int:
    """Run the lab service and the hub until Ctrl-C or SIGTERM; the hub's exit status."""
    say = progress or (lambda _m: None)
    config, roster = prepare(cfg, say)
    started = threading.Event()
    threading.Thread(target=lab_service.serve, args=(cfg.service_socket, None, started),
                     daemon=True).start()
    if not started.wait(10):
        raise HubError(f"the lab service did not start on {cfg.service_socket}")
    say(f"the lab service listens on {cfg.service_socket}")
    hub = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(config)],
                           cwd=hub_dir(), start_new_session=True)
    who = (f"the server's own users and passwords, instructors: group "
           f"{lab_service.INSTRUCTORS}" if cfg.auth == "pam"
           else f"instructor: {INSTRUCTOR}, password in labkit class roster")
    say(f"JupyterHub for {len(roster.names)} learners on http://{cfg.ip}:{cfg.port} "
        f"({who}); Ctrl-C stops it")
    say(f"the class board: http://{cfg.ip}:{cfg.port}/services/class-board/ (the "
        f"instructor's login), or on a classroom screen: "
        f"http://{cfg.ip}:{cfg.port}/services/class-board/?key={cfg.board_key}")
    if ready:
        ready(hub)

    def stop(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt
    old = signal.signal(signal.SIGTERM, stop)
    try:
        return hub.wait()
    except KeyboardInterrupt:
        hub.terminate()  # the hub stops its proxy and the learners' servers
        try:
            return hub.wait(30)
        except subprocess.TimeoutExpired:
            hub.kill()
            return hub.wait()
    finally:
        signal.signal(signal.SIGTERM, old)
