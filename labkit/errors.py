"""Named errors of labkit. Each message says what went wrong and what to do about it."""

from __future__ import annotations


class LabkitError(Exception):
    """Base class: every error labkit raises for a learner to read."""


class TopologyError(LabkitError):
    """The topology file is unreadable or inconsistent, or names an unknown host."""


class PreflightError(LabkitError):
    """This machine lacks something the lab needs (root, a tool, a kernel feature)."""


class ImageBuildError(LabkitError):
    """Building a host's root file system failed; the message has the builder's last lines."""


class LabExistsError(LabkitError):
    """A lab of that name is already running."""


class LabNotRunningError(LabkitError):
    """The named lab (or host) is not running."""


class HostBootError(LabkitError):
    """A host did not boot, or a service on it did not start; carries its journal tail."""


class HostProbeError(LabkitError):
    """A host inspection could not be made (file missing, command failed)."""


class SessionNotFoundError(HostProbeError):
    """No open TCP session on a host is the one a probe holds open to it."""


class AmbiguousSessionError(HostProbeError):
    """Several open TCP sessions on a host could be the one a probe holds open to it, and
    the engine cannot tell the probe's source port to pick one."""


class CommandError(LabkitError):
    """A command run on a lab host exited non-zero (when the caller asked for a check)."""

    def __init__(self, host: str, argv: list[str], returncode: int, stdout: str, stderr: str):
        self.host, self.argv, self.returncode = host, argv, returncode
        self.stdout, self.stderr = stdout, stderr
        tail = (stderr or stdout).strip().splitlines()[-5:]
        super().__init__(
            f"on {host}: {' '.join(argv)} exited {returncode}"
            + ("\n  " + "\n  ".join(tail) if tail else "")
        )
