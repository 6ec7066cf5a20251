"""How a bounce is summarised for the learner."""

from labkit.probes.mailflow import _bounce_excerpt

SMRSH_BOUNCE = """\
Subject: Returned mail: see transcript for details

   ----- The following addresses had permanent fatal errors -----
"|/bin/cat"
    (reason: Service unavailable)
    (expanded from: <labpipe@relay.example.com>)

   ----- Transcript of session follows -----
smrsh: "cat" not available for sendmail programs (stat failed)
554 5.0.0 Service unavailable

--6ANBVcNN001355.1795433498/relay.example.com
Reporting-MTA: dns; relay.example.com
Received: from internet.example.net by relay.example.com with ESMTP id 6ANBVcNN001354
Status: 5.5.0
"""


def test_bounce_excerpt_keeps_the_reason_and_the_quoted_transcript():
    excerpt = _bounce_excerpt(SMRSH_BOUNCE).splitlines()
    assert "(reason: Service unavailable)" in excerpt
    assert 'smrsh: "cat" not available for sendmail programs (stat failed)' in excerpt
    assert excerpt.count("554 5.0.0 Service unavailable") == 1
    assert "Status: 5.5.0" in excerpt
    assert not any(line.startswith("Received:") for line in excerpt)
