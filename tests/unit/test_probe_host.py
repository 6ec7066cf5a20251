"""Which process serves an SMTP session, without a lab: ``ss`` output parsed and matched,
and ``session_process_users`` driven through a fake engine whose ``connect`` reaches a
real SMTP server on loopback and whose hosts answer ``ss`` and ``ps`` with canned text.

Both ways an engine can stand are covered: one that knows the session's source port
(local: the socket is the host's own) and one that does not (vagrant: ``ssh -W``), where
the session is found by the vantage host's address alone and two sessions from it are
refused rather than guessed between.
"""

from __future__ import annotations

import socket

import pytest
from aiosmtpd.controller import Controller

from labkit import topology as topolib
from labkit.engines.base import Engine, RunResult
from labkit.errors import AmbiguousSessionError, HostProbeError, SessionNotFoundError
from labkit.probes import host as hostprobe
from labkit.probes.host import find_session, parse_ss_sessions, session_process_users

# `ss -Htnp state established sport = :25` on relay (no State column with one state).
ONE = """\
0      0      192.168.57.20:25 192.168.57.40:51234 users:(("sendmail-mta",pid=812,fd=6))
0      0      192.168.56.20:25 192.168.56.10:40002 users:(("sendmail-mta",pid=790,fd=6))
"""
TWO = ONE + """\
0      0      192.168.57.20:25 192.168.57.40:51240 users:(("sendmail-mta",pid=815,fd=6),("sendmail-mta",pid=816,fd=6))
"""  # noqa: E501 - ss's line as it is
NONE = """\
0      0      192.168.56.20:25 192.168.56.10:40002 users:(("sendmail-mta",pid=790,fd=6))
0      0      192.168.57.20:2525 192.168.57.40:51250 users:(("python3",pid=900,fd=3))
"""
PS = """\
    1     0 root                             /sbin/init
  780     1 root                             sendmail: MTA: accepting connections
  812   780 root                             sendmail: MTA: ./4AMKx1 client.example.com [192.168.57.40]: EHLO
  815   780 root                             sendmail: MTA: ./4AMKx2 client.example.com [192.168.57.40]: EHLO
  816   815 smmsp                            sendmail: child of 815
"""
LISTEN = 'LISTEN 0 100 0.0.0.0:25 0.0.0.0:* users:(("sendmail-mta",pid=780,fd=4))\n'


def test_ss_lines_are_parsed_with_or_without_the_state_column():
    sessions = parse_ss_sessions(TWO + "ESTAB 0 0 [::ffff:192.168.57.30]:25 [::ffff:192.168.57.40]:"
                                 "60000 users:((\"smtpd\",pid=1200,fd=6))\n\nnot a line\n")
    assert [(s.local, s.peer, s.pids) for s in sessions] == [
        (("192.168.57.20", 25), ("192.168.57.40", 51234), (812,)),
        (("192.168.56.20", 25), ("192.168.56.10", 40002), (790,)),
        (("192.168.57.20", 25), ("192.168.57.40", 51240), (815, 816)),
        (("192.168.57.30", 25), ("192.168.57.40", 60000), (1200,)),  # v4-mapped, as IPv4
    ]


def test_one_session_from_the_peer_address_is_found_without_its_port():
    found = find_session(ONE, "relay", 25, "192.168.57.40")
    assert found.peer == ("192.168.57.40", 51234) and found.pids == (812,)


def test_two_sessions_from_the_peer_address_are_ambiguous_not_guessed():
    with pytest.raises(AmbiguousSessionError) as err:
        find_session(TWO, "relay", 25, "192.168.57.40")
    msg = str(err.value)
    assert msg.startswith("on relay: 2 established connections to port 25 come from 192.168.57.40")
    assert "192.168.57.40:51234" in msg and "192.168.57.40:51240" in msg
    assert "close the other sessions from 192.168.57.40 to relay:25" in msg
    assert isinstance(err.value, HostProbeError)


def test_a_known_source_port_picks_the_one_session_among_several():
    assert find_session(TWO, "relay", 25, "192.168.57.40", 51240).pids == (815, 816)
    assert find_session(TWO, "relay", 25, "::ffff:192.168.57.40", 51234).pids == (812,)


def test_no_session_from_the_peer_to_the_port_is_named():
    with pytest.raises(SessionNotFoundError, match="on relay: no established connection to "
                       "port 25 from 192.168.57.40 "):
        find_session(NONE, "relay", 25, "192.168.57.40")
    with pytest.raises(SessionNotFoundError, match="from 192.168.57.40:51299"):
        find_session(TWO, "relay", 25, "192.168.57.40", 51299)
    with pytest.raises(SessionNotFoundError):
        find_session("", "relay", 25, "192.168.57.40")


# --- session_process_users through a fake engine -------------------------------------------

class Quiet:
    """aiosmtpd handler that takes nothing: only greeting and EHLO are needed."""


@pytest.fixture
def smtp_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ctl = Controller(Quiet(), hostname="127.0.0.1", port=port, server_hostname="relay.test")
    ctl.start()
    yield port
    ctl.stop()


class FakeEngine(Engine):
    """``connect`` reaches the loopback SMTP server whatever the address; ``run`` answers
    ``ss`` and ``ps`` from canned text and records each command."""

    kind = "fake"

    def __init__(self, smtp_port: int, established: str,
                 source: tuple[str, int] | None = None) -> None:
        super().__init__(topolib.load(), "unit")
        self.smtp_port, self.established, self.source = smtp_port, established, source
        self.commands: list[tuple[str, list[str]]] = []
        self.connected: list[tuple[str, str, int]] = []

    def connect(self, host, address, port, timeout=10.0, source=None):
        self.connected.append((host, address, port))
        return socket.create_connection(("127.0.0.1", self.smtp_port), timeout)

    def source_address(self, sock):
        return self.source

    def run(self, host, argv, input=None, timeout=60):
        self.commands.append((host, argv))
        if argv[:2] == ["ss", "-Htnp"] and "-l" in argv:
            out = LISTEN
        elif argv[:2] == ["ss", "-Htnp"]:
            out = self.established
        elif argv[0] == "ps":
            out = PS
        else:
            return RunResult(host, argv, 127, "", f"{argv[0]}: not faked")
        return RunResult(host, argv, 0, out, "")

    def up(self, progress=None): raise NotImplementedError
    def down(self): raise NotImplementedError
    def is_running(self): return True
    def status(self): return []
    def shell_argv(self, host): return []
    def reset(self, host, progress=None): raise NotImplementedError
    def host_command(self, host, argv): return argv


def test_without_a_source_port_the_session_is_found_by_the_vantage_address(smtp_port):
    engine = FakeEngine(smtp_port, ONE)
    users = session_process_users(engine, "client", "relay")
    assert engine.connected == [("client", "192.168.57.20", 25)]
    assert ("relay", ["ss", "-Htnp", "state", "established", "sport", "=", ":25"]) in engine.commands
    assert users.listener == ("root",) and users.session == ("root",)
    assert users.commands == ("sendmail: MTA: ./4AMKx1 client.example.com [192.168.57.40]: EHLO",)


def test_without_a_source_port_two_sessions_from_the_vantage_are_refused(smtp_port, monkeypatch):
    monkeypatch.setattr(hostprobe, "SESSION_SETTLE", 0.3)
    engine = FakeEngine(smtp_port, TWO)
    with pytest.raises(AmbiguousSessionError, match="on relay: 2 established connections"):
        session_process_users(engine, "client", "relay")


def test_with_a_source_port_the_exact_session_is_taken_among_several(smtp_port):
    engine = FakeEngine(smtp_port, TWO, source=("192.168.57.40", 51240))
    users = session_process_users(engine, "client", "relay")
    assert users.session == ("root", "smmsp")
    assert [c.split(":")[0] for c in users.commands] == ["sendmail", "sendmail"]


def test_the_vantage_address_is_the_one_on_the_network_it_shares_with_the_target(smtp_port):
    # relay has a leg on both networks: towards server it speaks from its inside address.
    established = ('0 0 192.168.57.30:25 192.168.57.20:40100 users:(("smtpd",pid=1200,fd=6))\n'
                   '0 0 192.168.57.30:25 192.168.56.20:40101 users:(("smtpd",pid=1201,fd=6))\n')
    engine = FakeEngine(smtp_port, established)
    ps = "1200 1190 postfix smtpd -n smtp -t inet -u -c -o stress= -s 2\n"
    engine.run = lambda host, argv, input=None, timeout=60: RunResult(  # type: ignore[method-assign]
        host, argv, 0, ps if argv[0] == "ps" else (established if "-l" not in argv else ""), "")
    users = session_process_users(engine, "relay", "server")
    assert users.session == ("postfix",) and "smtpd" in users.commands[0]


def test_no_session_at_all_is_session_not_found(smtp_port, monkeypatch):
    monkeypatch.setattr(hostprobe, "SESSION_SETTLE", 0.3)
    with pytest.raises(SessionNotFoundError, match="on relay: no established connection"):
        session_process_users(FakeEngine(smtp_port, NONE), "client", "relay")


def test_the_local_engine_tells_the_source_of_its_own_socket():
    from labkit.engines.local import LocalEngine
    srv = socket.create_server(("127.0.0.1", 0))
    try:
        with socket.create_connection(srv.getsockname()) as sock:
            engine = LocalEngine(topolib.load(), "unit")
            assert engine.source_address(sock) == sock.getsockname()
    finally:
        srv.close()
