#!/usr/bin/python3
"""The lab's mail filter (a milter, Sendmail's Milter interface through pymilter): a small
real filter that section 10 puts in the relay's mail path.

For every message it adds a header, X-Labkit-Filter, naming the host that filtered it. It
refuses (550 5.7.1) a message that carries an attachment whose file name ends in an
executable's extension (.exe .scr .com .pif .bat .vbs .js), the classic job of a filter
at the border. It listens on a local TCP socket (127.0.0.1:8894 by default) and logs what
it does to standard error (the journal, as unit labkit-milter).
"""

from __future__ import annotations

import argparse
import re
import socket
import sys

import Milter

EXECUTABLE = re.compile(rb'(file)?name\*?=\s*"?[^";\r\n]*\.(exe|scr|com|pif|bat|vbs|js)"?\s*(;|$)',
                        re.I | re.M)
HEADER = "X-Labkit-Filter"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class LabFilter(Milter.Base):
    """One instance per SMTP connection Sendmail passes to the filter."""

    def __init__(self) -> None:
        self.id = Milter.uniqueID()
        self.refused = ""
        self.tail = b""

    @Milter.noreply
    def envfrom(self, mailfrom: str, *params: str) -> int:
        self.refused, self.tail = "", b""
        self.sender = mailfrom
        return Milter.CONTINUE

    @Milter.noreply
    def header(self, name: str, value: str) -> int:
        self._look(f"{name}: {value}\n".encode(errors="replace"))
        return Milter.CONTINUE

    @Milter.noreply
    def body(self, chunk: bytes) -> int:
        self._look(chunk)
        return Milter.CONTINUE

    def _look(self, data: bytes) -> None:
        # A name split across two chunks is still seen: the end of the last chunk is kept.
        text = self.tail + data
        m = EXECUTABLE.search(text)
        if m and not self.refused:
            self.refused = m.group(0).decode(errors="replace").strip()
        self.tail = text[-200:]

    def eom(self) -> int:
        queue_id = self.getsymval("i") or "?"
        if self.refused:
            log(f"{queue_id}: refused, from {self.sender}: an executable attachment "
                f"({self.refused})")
            self.setreply("550", "5.7.1", "Executable attachments are refused by the lab's "
                                          "filter")
            return Milter.REJECT
        self.addheader(HEADER, f"checked by the lab's filter on {socket.getfqdn()}")
        log(f"{queue_id}: passed, from {self.sender}: {HEADER} added")
        return Milter.ACCEPT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", default="inet:8894@127.0.0.1",
                        help="where Sendmail reaches the filter (Milter socket syntax)")
    args = parser.parse_args()
    Milter.factory = LabFilter
    Milter.set_flags(Milter.ADDHDRS)
    log(f"the lab's filter listens on {args.socket}")
    Milter.runmilter("labkit-milter", args.socket, 240)


if __name__ == "__main__":
    main()
