"""Engines: where a lab's hosts run: ``local`` (nspawn containers here) or ``vagrant`` (VMs)."""

from __future__ import annotations

from typing import NamedTuple

from labkit.engines.base import Engine
from labkit.errors import LabkitError
from labkit.topology import Topology

ENGINES = ("local", "vagrant")


class LabEntry(NamedTuple):
    """A lab that has something on this machine, and the engine it belongs to."""
    engine: str  # one of ENGINES
    name: str


def get_engine(kind: str, topology: Topology, lab: str) -> Engine:
    """An engine of ``kind`` for the lab called ``lab``."""
    if kind == "local":
        from labkit.engines import service
        if service.available():  # not root, on a class server: through the lab service
            return service.ServiceEngine(topology, lab)
        from labkit.engines.local import LocalEngine
        return LocalEngine(topology, lab)
    if kind == "vagrant":
        from labkit.engines.vagrant import VagrantEngine
        return VagrantEngine(topology, lab)
    raise LabkitError(f"unknown engine {kind!r}; engines: {', '.join(ENGINES)}")


def list_labs() -> list[LabEntry]:
    """Every lab with anything on this machine, on every engine, sorted by name then
    engine: the local engine's (running or stale) and the vagrant engine's (one Vagrant
    state directory each, with or without VMs). A name may appear once per engine."""
    from labkit.engines import local, vagrant
    found = [LabEntry("local", n) for n in local.list_labs()]
    found += [LabEntry("vagrant", n) for n in vagrant.list_labs()]
    return sorted(found, key=lambda e: (e.name, e.engine))
