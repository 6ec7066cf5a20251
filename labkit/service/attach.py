"""``python3 -m labkit.service.attach LAB HOST [-- CMD ...]``: a shell, or one command, on
a host of LAB through the lab service, on this terminal (its stdin, stdout and stderr are
handed to the service); exits with the command's status."""

from __future__ import annotations

import sys

from labkit.engines.service import request
from labkit.errors import LabkitError


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print("usage: python3 -m labkit.service.attach LAB HOST [-- CMD ...]", file=sys.stderr)
        return 2
    lab, host, rest = args[0], args[1], args[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    try:
        code, _ = request("attach", lab, fds=[0, 1, 2], host=host, argv=rest)
    except LabkitError as exc:
        print(f"labkit: error: {exc}", file=sys.stderr)
        return 1
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
