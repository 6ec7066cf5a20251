"""Engines: where a lab's hosts run. ``local`` (nspawn containers on this machine)."""

from __future__ import annotations

from labkit.engines.base import Engine
from labkit.errors import LabkitError
from labkit.topology import Topology

ENGINES = ("local",)


def get_engine(kind: str, topology: Topology, lab: str) -> Engine:
    """An engine of ``kind`` for the lab called ``lab``."""
    if kind == "local":
        from labkit.engines.local import LocalEngine
        return LocalEngine(topology, lab)
    raise LabkitError(f"unknown engine {kind!r}; engines: {', '.join(ENGINES)}")
