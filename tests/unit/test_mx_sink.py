"""The outside MX sink (runs on `internet` in the lab) records every message it receives."""

import json
import smtplib
import socket
import subprocess
import sys
import time

import pytest

from labkit import topology as topolib

SINK = topolib.PROVISION_DIR / "files" / "internet" / "labkit-mx-sink.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sink(tmp_path):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(SINK), "--host", "127.0.0.1", "--port",
                             str(port), "--spool", str(tmp_path), "--hostname", "mx.test"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    yield port, tmp_path
    proc.terminate()
    proc.wait(10)


def test_sink_records_a_message_with_its_envelope(sink):
    port, spool = sink
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        banner = smtp.ehlo("relay.example.com")
        assert banner[0] == 250
        smtp.sendmail("jo@example.com", ["a@example.net", "b@example.net"],
                      "Subject: leak\r\n\r\nhello\r\n")
    files = list(spool.glob("*.json"))
    assert len(files) == 1
    rec = json.loads(files[0].read_text())
    assert rec["mail_from"] == "jo@example.com"
    assert rec["rcpt_tos"] == ["a@example.net", "b@example.net"]
    assert rec["helo"] == "relay.example.com"
    assert "Subject: leak" in rec["data"]
    assert rec["peer"] == "127.0.0.1"


def test_sink_greets_with_its_hostname(sink):
    port, _ = sink
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        assert s.recv(200).startswith(b"220 mx.test")
