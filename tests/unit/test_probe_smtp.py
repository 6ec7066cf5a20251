"""The SMTP probe against scripted servers: a real aiosmtpd peer, and raw sockets that misbehave."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from aiosmtpd.controller import Controller

from labkit.probes.relay import RelayVariant, relay_matrix
from labkit.probes.smtp import Reply, SmtpClosed, SmtpProtocolError, SmtpSession, SmtpTimeout


class Recorder:
    """aiosmtpd handler: accepts everything, keeps the messages; optional RCPT refusal."""

    def __init__(self, refuse_rcpt: str | None = None) -> None:
        self.messages: list[str] = []
        self.refuse_rcpt = refuse_rcpt

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse_rcpt:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content.decode())
        return "250 2.0.0 queued"


@pytest.fixture
def smtpd():
    started = []

    def start(handler: Recorder) -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        ctl = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="mx.test")
        ctl.start()
        started.append(ctl)
        return port

    yield start
    for ctl in started:
        ctl.stop()


def raw_server(script) -> int:
    """A one-connection TCP server on loopback that runs ``script(conn)``."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def serve():
        conn, _ = srv.accept()
        try:
            script(conn)
        finally:
            conn.close()
            srv.close()
    threading.Thread(target=serve, daemon=True).start()
    return srv.getsockname()[1]


def session(port: int, timeout: float = 5.0) -> SmtpSession:
    return SmtpSession(socket.create_connection(("127.0.0.1", port), timeout), timeout=timeout)


def test_reply_parses_code_enhanced_code_and_text():
    r = Reply.parse(["550 5.7.1 <a@b.net>... Relaying denied"])
    assert (r.code, r.enhanced, r.text) == (550, "5.7.1", "<a@b.net>... Relaying denied")
    assert not r.positive and r.kind == "permanent failure"
    assert Reply.parse(["250 ok"]).enhanced is None


def test_session_reads_greeting_and_ehlo_capabilities(smtpd):
    port = smtpd(Recorder())
    with session(port) as s:
        assert s.greeting.code == 220 and "mx.test" in s.greeting.text
        reply = s.ehlo("client.example.com")
        assert reply.code == 250
        assert "SIZE" in s.capabilities and "8BITMIME" in s.capabilities
    text = str(s.transcript)
    assert "C: EHLO client.example.com" in text and "S: 250-SIZE" in text


def test_data_is_dot_stuffed_and_accepted(smtpd):
    handler = Recorder()
    port = smtpd(handler)
    with session(port) as s:
        s.ehlo()
        assert s.mail("a@example.net").code == 250
        assert s.rcpt("b@example.com").code == 250
        reply = s.data("Subject: x\n\n.hidden line\nend\n")
        assert reply.code == 250 and reply.enhanced == "2.0.0"
    assert ".hidden line" in handler.messages[0]


def test_server_that_never_greets_times_out_with_a_clear_error():
    port = raw_server(lambda conn: time.sleep(3))
    started = time.monotonic()
    with pytest.raises(SmtpTimeout, match="did not reply within 1 s") as err:
        session(port, timeout=1)
    assert time.monotonic() - started < 2.5
    assert "no reply within 1 s" in str(err.value.transcript)


def test_garbage_reply_is_a_protocol_error():
    port = raw_server(lambda conn: conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n"))
    with pytest.raises(SmtpProtocolError, match="not an SMTP reply"):
        session(port)


def test_server_that_hangs_up_is_reported_as_closed():
    def script(conn):
        conn.sendall(b"220 hi\r\n")
        conn.recv(100)  # EHLO, then hang up
    port = raw_server(script)
    s = session(port)
    with pytest.raises(SmtpClosed):
        s.ehlo()


def test_multiline_reply_with_mixed_codes_is_refused():
    port = raw_server(lambda conn: conn.sendall(b"220-one\r\n250 two\r\n"))
    with pytest.raises(SmtpProtocolError):
        session(port)


def test_closed_port_raises_connection_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), 2)


VARIANTS = [RelayVariant("plain", "x@example.net", "victim@example.org"),
            RelayVariant("percent", "x@example.net", "victim%example.org@example.com")]


def test_relay_matrix_marks_an_accepting_server_open_and_finds_the_leak(smtpd):
    handler = Recorder()
    port = smtpd(handler)
    m = relay_matrix(lambda: session(port), VARIANTS, "test", "mx",
                     sink=lambda: handler.messages, wait=2)
    assert [a.accepted for a in m.attempts] == [True, True]
    assert [a.delivered for a in m.attempts] == [True, True]
    assert m.open_relay and "LEAKED" in m.summary()


def test_relay_matrix_marks_a_refusing_server_closed(smtpd):
    handler = Recorder(refuse_rcpt="550 5.7.1 Relaying denied")
    port = smtpd(handler)
    m = relay_matrix(lambda: session(port), VARIANTS, "test", "mx",
                     sink=lambda: handler.messages, wait=1)
    assert not m.open_relay
    assert all(a.rcpt_reply.enhanced == "5.7.1" for a in m.attempts)
    assert all(a.delivered is None for a in m.attempts)


def test_relay_matrix_reconnects_when_the_server_hangs_up_after_a_refusal():
    served = []

    def script(conn):
        served.append(1)
        conn.sendall(b"220 grumpy\r\n")
        f = conn.makefile("rb")
        for line in f:
            if line.upper().startswith((b"EHLO", b"RSET", b"MAIL")):
                conn.sendall(b"250 ok\r\n")
            elif line.upper().startswith(b"RCPT"):
                conn.sendall(b"421 4.7.0 go away\r\n")
                return

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)

    def serve():
        for _ in range(4):
            conn, _ = srv.accept()
            script(conn)
            conn.close()
    threading.Thread(target=serve, daemon=True).start()
    port = srv.getsockname()[1]
    m = relay_matrix(lambda: session(port, 3), VARIANTS, "test", "grumpy", wait=0)
    assert not m.open_relay
    assert [a.rcpt_reply.code for a in m.attempts] == [421, 421]
    srv.close()


def test_recipient_limit_probe_counts_accepted_recipients():
    def script(conn):
        conn.sendall(b"220 limited\r\n")
        rcpts = 0
        for line in conn.makefile("rb"):
            if line.upper().startswith(b"RCPT"):
                rcpts += 1
                conn.sendall(b"452 4.5.3 too many\r\n" if rcpts > 3 else b"250 ok\r\n")
            elif line.upper().startswith(b"QUIT"):
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")
    from labkit.probes.smtp import probe_recipient_limit
    with session(raw_server(script)) as s:
        result = probe_recipient_limit(s, "a@example.net", "b@example.com", most=10)
    assert result.count == 3 and result.reply.enhanced == "4.5.3"
