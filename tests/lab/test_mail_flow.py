"""Mail flows end to end through the real MTAs of the baseline lab."""

import uuid

import pytest

from tests.lab.conftest import wait_for

pytestmark = pytest.mark.lab


def swaks(lab, host, *args):
    return lab.run(host, ["swaks", "--timeout", "20", "--hide-all", *args], timeout=60)


def test_mail_from_internet_reaches_a_users_mailbox_on_server(lab):
    subject = f"inbound-{uuid.uuid4().hex[:8]}"
    res = swaks(lab, "internet", "--to", "jo@example.com", "--from", "friend@example.net",
                "--header", f"Subject: {subject}")  # delivered to example.com's MX
    assert res.ok, res.stdout + res.stderr
    box = wait_for(lambda: subject in lab.mailbox("jo") and lab.mailbox("jo"),
                   what=f"message {subject} in jo's mailbox on server")
    assert "relay.example.com" in box  # it came through the relay


def test_mail_to_postmaster_reaches_the_aliased_user(lab):
    subject = f"postmaster-{uuid.uuid4().hex[:8]}"
    res = swaks(lab, "internet", "--to", "postmaster@example.com", "--from",
                "friend@example.net", "--header", f"Subject: {subject}")
    assert res.ok, res.stdout + res.stderr
    wait_for(lambda: subject in lab.mailbox("jo"), what="postmaster mail in jo's mailbox")


def test_mail_from_client_reaches_the_outside_sink(lab):
    subject = f"outbound-{uuid.uuid4().hex[:8]}"
    res = swaks(lab, "client", "--server", "server.example.com", "--to",
                "someone@example.net", "--from", "jack@example.com",
                "--header", f"Subject: {subject}")
    assert res.ok, res.stdout + res.stderr

    def arrived():
        return [m for m in lab.sink_messages() if subject in m.data]
    (msg,) = wait_for(arrived, what=f"message {subject} at the outside sink")
    assert msg.rcpt_tos == ["someone@example.net"]
    assert msg.mail_from == "jack@example.com"
    assert msg.peer == "192.168.56.20"  # handed over by the relay's outside leg
