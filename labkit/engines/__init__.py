"""Engines: where a lab's hosts run: ``local`` (nspawn containers here) or ``vagrant`` (VMs)."""

from __future__ import annotations

from labkit.engines.base import Engine
from labkit.errors import LabkitError
from labkit.topology import Topology

ENGINES = ("local", "vagrant")


def get_engine(kind: str, topology: Topology, lab: str) -> Engine:
    """An engine of ``kind`` for the lab called ``lab``."""
    if kind == "local":
        from labkit.engines.local import LocalEngine
        return LocalEngine(topology, lab)
    if kind == "vagrant":
        from labkit.engines.vagrant import VagrantEngine
        return VagrantEngine(topology, lab)
    raise LabkitError(f"unknown engine {kind!r}; engines: {', '.join(ENGINES)}")
