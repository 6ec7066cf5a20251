"""A class of three on one server, end to end through JupyterHub's real HTTP API: the
labs started, the hub served, three learners logged in with the roster's passwords, each
learner's own JupyterLab (as their own system user) running a graded check against their
own lab in a kernel, and refused another learner's lab; the hub stopped and the class
gone, leaving nothing."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import pytest
import requests
from tornado.websocket import websocket_connect

from labkit import Lab
from tests.lab.conftest import lab_name

pytestmark = pytest.mark.lab


#: The fixture's environment (class, hub and service places), for the last test.
hub_env: dict[str, str] = {}


def free_port_block(n: int = 3) -> int:
    """A port P with P .. P+n-1 free on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65535:
            continue
        ok = True
        for p in range(base, base + n):
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            return base
    raise RuntimeError("no free ports")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    names = [lab_name(f"h{i}") for i in range(1, 4)]
    tmp = tmp_path_factory.mktemp("hub")
    sock_dir = tempfile.mkdtemp(prefix="labkit-service-")
    os.chmod(sock_dir, 0o755)
    env = {**os.environ, "LABKIT_CLASS": str(tmp / "class"), "LABKIT_HUB": str(tmp / "hub"),
           "LABKIT_SERVICE": os.path.join(sock_dir, "service.sock")}
    hub_env.update(env)
    roster = tmp / "roster.csv"
    roster.write_text("".join(f"{n},pw-{n}\n" for n in names))
    up = subprocess.run([sys.executable, "-m", "labkit.cli", "class", "up", "--roster",
                         str(roster), "--at-once", "3"], env=env, capture_output=True,
                        text=True, timeout=600)
    port = free_port_block()
    proc = None
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        proc = subprocess.Popen([sys.executable, "-m", "labkit.cli", "class", "serve", "--ip",
                                 "127.0.0.1", "--port", str(port), "--section", "08",
                                 "--board-interval", "5", "--board-stuck-after", "0"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/hub/api", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the hub did not start"
            time.sleep(0.5)
        instructor = json.loads((tmp / "class" / "roster.json").read_text())["instructor_password"]
        key_line = next(ln for ln in lines if "class-board/?key=" in ln)
        key = key_line.strip().rsplit("?key=", 1)[1]
        yield url, names, instructor, key
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run([sys.executable, "-m", "labkit.cli", "class", "down"], env=env,
                       capture_output=True, timeout=300)
        for n in names:
            Lab(n, progress=None).down()
            subprocess.run(["userdel", "--remove", n], capture_output=True)
        shutil.rmtree(sock_dir, ignore_errors=True)


def login(url: str, name: str, password: str) -> str:
    """A token for ``name``, obtained with their password (the hub's authenticator)."""
    r = requests.post(f"{url}/hub/api/users/{name}/tokens",
                      json={"auth": {"username": name, "password": password}}, timeout=30)
    r.raise_for_status()
    return r.json()["token"]


def start_server(url: str, name: str, token: str) -> None:
    h = {"Authorization": f"token {token}"}
    r = requests.post(f"{url}/hub/api/users/{name}/server", headers=h, timeout=30)
    assert r.status_code in (201, 202), r.text
    deadline = time.monotonic() + 120
    while True:
        user = requests.get(f"{url}/hub/api/users/{name}", headers=h, timeout=10).json()
        server = (user.get("servers") or {}).get("")
        if server and server.get("ready"):
            return
        assert time.monotonic() < deadline, f"{name}'s server did not start: {user}"
        time.sleep(1)


async def _execute(url: str, name: str, token: str, code: str, delete: bool = True) -> str:
    h = {"Authorization": f"token {token}"}
    base = f"{url}/user/{name}"
    r = requests.post(f"{base}/api/kernels", headers=h, json={"name": "python3"}, timeout=30)
    r.raise_for_status()
    kernel = r.json()["id"]
    ws_url = base.replace("http", "ws", 1) + f"/api/kernels/{kernel}/channels"
    from tornado.httpclient import HTTPRequest
    conn = await websocket_connect(HTTPRequest(ws_url, headers=h))
    msg_id = uuid.uuid4().hex
    conn.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": name, "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
    out = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(conn.read_message(), timeout=180)
        if raw is None:
            break
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        if kind == "stream":
            out.append(msg["content"]["text"])
        elif kind == "error":
            out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            break
    conn.close()
    if delete:
        requests.delete(f"{base}/api/kernels/{kernel}", headers=h, timeout=30)
    return "".join(out)


def execute(url: str, name: str, token: str, code: str, delete: bool = True) -> str:
    """Run ``code`` in a new kernel of ``name``'s server; its output (and error)."""
    return asyncio.run(_execute(url, name, token, code, delete))


def test_three_learners_log_in_and_check_their_own_labs_only(hub):
    url, names, _, _ = hub
    tokens = {n: login(url, n, f"pw-{n}") for n in names}
    for n in names:
        start_server(url, n, tokens[n])
    for i, n in enumerate(names):
        other = names[(i + 1) % len(names)]
        out = execute(url, n, tokens[n], f"""
import os, subprocess, sys
from labkit import Lab, checks
lab = Lab(progress=None)
print("lab", lab.name, "uid0", os.getuid() == 0)
r = checks.run_checks(lab, [checks.get("privacy.vrfy_disabled")])
print("check", r.results[0].status.value)
try:
    Lab({other!r}, progress=None).run("relay", ["true"])
    print("other: allowed")
except Exception as exc:
    print("other:", exc)
try:
    os.listdir("/var/lib/labkit/labs/{other}")
    print("files: read")
except PermissionError:
    print("files: refused")
shell = subprocess.run(lab.engine.shell_argv("relay"), capture_output=True, text=True,
                       input="grep CapEff /proc/self/status; ip link add lk0 type dummy\\n")
eff = int(shell.stdout.split("CapEff:")[1].split()[0], 16)
print("module capability", bool(eff >> 16 & 1), "net admin", "Operation not permitted" in shell.stderr)
""")
        assert f"lab {n} uid0 False" in out, out
        assert "check failed" in out, out  # the baseline answers VRFY
        assert f"may not act on lab {other!r}" in out, out
        assert "files: refused" in out, out
        assert "module capability False net admin True" in out, out


def test_a_wrong_password_gets_no_token(hub):
    url, names, _, _ = hub
    r = requests.post(f"{url}/hub/api/users/{names[0]}/tokens",
                      json={"auth": {"username": names[0], "password": "wrong"}}, timeout=30)
    assert r.status_code == 403


def test_the_instructor_logs_in_as_an_admin_and_sees_the_class(hub):
    url, names, instructor, _ = hub
    token = login(url, "instructor", instructor)
    r = requests.get(f"{url}/hub/api/users", headers={"Authorization": f"token {token}"},
                     timeout=30)
    assert r.ok, r.text
    assert set(names) <= {u["name"] for u in r.json()}
    assert any(u["name"] == "instructor" and u["admin"] for u in r.json())


BOARD = "/services/class-board/"


def board_data(url: str, headers: dict, deadline: float = 90) -> dict:
    """The board's data once it has graded every lab."""
    end = time.monotonic() + deadline
    while True:
        r = requests.get(f"{url}{BOARD}data.json", headers=headers, timeout=30,
                         allow_redirects=False)
        assert r.status_code == 200, (r.status_code, r.text[:300])
        data = r.json()
        if all(row["results"] for row in data.values()):
            return data
        assert time.monotonic() < end, data
        time.sleep(2)


def test_the_board_shows_each_learner_and_only_the_instructor_may_open_it(hub):
    url, names, instructor, _ = hub
    admin = {"Authorization": f"token {login(url, 'instructor', instructor)}"}
    data = board_data(url, admin)
    assert set(data) == set(names)
    for row in data.values():  # the baseline: section 08's checks fail, the lab answers
        assert row["lab"] == "running" and len(row["results"]) == 12
        assert row["results"]["privacy.vrfy_disabled"] == "failed" and row["stuck"]
    learner = {"Authorization": f"token {login(url, names[0], 'pw-' + names[0])}"}
    r = requests.get(f"{url}{BOARD}data.json", headers=learner, timeout=30,
                     allow_redirects=False)
    assert r.status_code == 403


def test_the_board_exports_csv_and_shows_evidence(hub):
    url, names, _, key = hub
    r = requests.get(f"{url}{BOARD}board.csv?key={key}", timeout=30)
    assert r.ok, r.text
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0][:5] == ["learner", "lab", "passed", "of", "stuck"]
    assert {row[0] for row in rows[1:]} == set(names)
    r = requests.get(f"{url}{BOARD}evidence", params={"key": key, "learner": names[0],
                                                     "check": "privacy.vrfy_disabled"},
                     timeout=30)
    assert r.ok and "VRFY" in r.json()["evidence"], r.text
    assert requests.get(f"{url}{BOARD}data.json?key=wrong", timeout=30,
                        allow_redirects=False).status_code in (302, 403)


def test_the_board_page_in_a_browser(hub, tmp_path):
    """One learner has done section 08: their row is all PASS and does not stand out."""
    url, names, instructor, key = hub
    from labkit.course.hardening import harden_privacy
    harden_privacy(Lab(names[1], progress=None).engine)
    admin = {"Authorization": f"token {login(url, 'instructor', instructor)}"}
    deadline = time.monotonic() + 90
    while board_data(url, admin)[names[1]]["passed"] < 12:
        assert time.monotonic() < deadline, board_data(url, admin)[names[1]]
        time.sleep(2)
    assert not board_data(url, admin)[names[1]]["stuck"]
    shot = tmp_path / "class-board.png"
    res = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                          "--hide-scrollbars", f"--screenshot={shot}", "--window-size=1500,650",
                          f"{url}{BOARD}?key={key}"], capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20000, res.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("LABKIT_SCREENSHOTS")
    if keep:
        shutil.copy(shot, keep)
    page = requests.get(f"{url}{BOARD}?key={key}", timeout=30).text
    assert all(n in page for n in names) and "class='row stuck'" in page


def test_class_down_leaves_nothing(hub):
    url, names, _, _ = hub
    env = {**os.environ, "LABKIT_CLASS": hub_env["LABKIT_CLASS"]}
    res = subprocess.run([sys.executable, "-m", "labkit.cli", "class", "down"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "3 labs down" in res.stdout, res.stdout + res.stderr
    assert not any(Lab(n, progress=None).engine.has_leftovers() for n in names)
    assert requests.get(f"{url}/hub/api", timeout=10).ok  # the hub itself still serves
