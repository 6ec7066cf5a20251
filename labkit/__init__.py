"""labkit: start, probe, configure and grade the MTA Hardening Lab.

The notebooks use :class:`labkit.Lab`; the ``labkit`` command wraps the same verbs.
"""

from labkit.errors import LabkitError
from labkit.lab import Lab

__all__ = ["Lab", "LabkitError"]
__version__ = "0.1.0"
