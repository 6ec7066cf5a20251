#!/usr/bin/python3
"""The outside MX of the lab: an SMTP server that accepts every message and records it.

Each message becomes one JSON file in the spool directory, written whole (a temporary
file renamed into place), named ``<unix time in ns>-<pid>.json``, with the keys:
received_at (ISO 8601, UTC), peer (client address), helo, mail_from, rcpt_tos (list),
size (bytes) and data (the message, decoded as UTF-8 with replacement). labkit reads
these files to tell whether mail reached the outside world.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import signal
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


class RecordingHandler:
    """Accepts every recipient and writes each message to the spool."""

    def __init__(self, spool: Path) -> None:
        self.spool = spool

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else \
            (envelope.content or "").encode()
        record = {
            "received_at": datetime.datetime.now(datetime.UTC).isoformat(),
            "peer": session.peer[0] if session.peer else None,
            "helo": session.host_name,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "size": len(content),
            "data": content.decode("utf-8", errors="replace"),
        }
        name = f"{time.time_ns()}-{os.getpid()}.json"
        tmp = self.spool / f".{name}.tmp"
        tmp.write_text(json.dumps(record, indent=1))
        tmp.rename(self.spool / name)
        return "250 2.0.0 Ok: recorded by the lab sink"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=25)
    parser.add_argument("--spool", type=Path, required=True)
    parser.add_argument("--hostname", default=None, help="name in the 220 greeting")
    args = parser.parse_args()
    args.spool.mkdir(parents=True, exist_ok=True)
    controller = Controller(RecordingHandler(args.spool), hostname=args.host,
                            port=args.port, server_hostname=args.hostname,
                            ready_timeout=10)
    controller.start()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        loop.run_until_complete(stop.wait())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
