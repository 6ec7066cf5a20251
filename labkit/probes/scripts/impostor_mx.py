#!/usr/bin/python3
"""A stand-in for a lab mail server, run for a few seconds by a probe: an SMTP server
that offers STARTTLS with a certificate the lab CA did not sign, and records what a
client did. Written to the lab host and run there by labkit.probes.impostor.

Each event is a JSON line appended to the events file: {"event": "ehlo"|"starttls"|
"message", "peer": ..., "tls": bool, ...}; a message event has mail_from, rcpt_tos and
data. It prints "ready" once listening, and stops on SIGTERM or after --lifetime seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class Recorder:
    def __init__(self, events: Path) -> None:
        self.events = events

    def _record(self, event: str, session: Session, **fields: object) -> None:
        record = {"event": event, "peer": session.peer[0] if session.peer else None,
                  "tls": session.ssl is not None, **fields}
        with self.events.open("a") as f:
            f.write(json.dumps(record) + "\n")

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        self._record("ehlo", session, helo=hostname)
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        self._record("mail", session, mail_from=address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else \
            (envelope.content or "").encode()
        self._record("message", session, mail_from=envelope.mail_from,
                     rcpt_tos=list(envelope.rcpt_tos),
                     data=content.decode("utf-8", errors="replace"))
        return "250 2.0.0 Ok: taken by the stand-in server"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--events", type=Path, required=True)
    parser.add_argument("--hostname", required=True, help="name in the greeting")
    parser.add_argument("--lifetime", type=float, default=60.0)
    args = parser.parse_args()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    controller = Controller(Recorder(args.events), hostname="0.0.0.0", port=args.port,
                            server_hostname=args.hostname, tls_context=context,
                            require_starttls=False, ready_timeout=10,
                            # "ESMTP" in the greeting: Sendmail's smtp mailer says EHLO only then.
                            ident="ESMTP")
    controller.start()
    print("ready", flush=True)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.call_later(args.lifetime, stop.set)
    try:
        loop.run_until_complete(stop.wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
