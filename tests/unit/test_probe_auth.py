"""SMTP AUTH client mechanisms, checked against their RFCs' worked examples."""

import base64

from labkit.probes.auth import _digest_md5_response, authenticate
from labkit.probes.smtp import Reply


def test_digest_md5_response_matches_rfc2831_example():
    challenge = ('realm="elwood.innosoft.com",nonce="OA6MG9tEQGm2hh",qop="auth",'
                 'algorithm=md5-sess,charset=utf-8')
    response = _digest_md5_response(challenge, "chris", "secret", "elwood.innosoft.com",
                                    cnonce="OA6MHXh6VqTrRk", service="imap")
    assert "response=d388dad90d4bbd760a152321f2143af7" in response
    assert 'digest-uri="imap/elwood.innosoft.com"' in response


class ScriptedSession:
    """Stands in for an SmtpSession: answers each command from a script, records them."""

    def __init__(self, replies):
        self.replies, self.sent = list(replies), []

    def command(self, line):
        self.sent.append(line)
        return Reply.parse([self.replies.pop(0)])


def test_cram_md5_answers_the_rfc2195_example_challenge():
    s = ScriptedSession(["334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+",
                         "235 2.7.0 ok"])
    assert authenticate(s, "CRAM-MD5", "tim", "tanstaaftanstaaf").code == 235
    assert base64.b64decode(s.sent[1]).decode() == "tim b913a602c7eda7a495b4e6e7334d3890"


def test_plain_sends_authzid_authcid_password():
    s = ScriptedSession(["235 ok"])
    authenticate(s, "PLAIN", "jo", "labpass")
    assert s.sent[0].startswith("AUTH PLAIN ")
    assert base64.b64decode(s.sent[0].split()[2]) == b"\0jo\0labpass"


def test_login_stops_at_the_first_refusal():
    s = ScriptedSession(["504 5.3.3 AUTH mechanism LOGIN not available"])
    assert authenticate(s, "LOGIN", "jo", "x").code == 504
    assert s.sent == ["AUTH LOGIN"]
