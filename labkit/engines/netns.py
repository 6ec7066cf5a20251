"""Open sockets inside another network namespace, from this process.

A :class:`NetnsThread` is a worker thread that has joined a network namespace with
``setns(2)`` (which changes the network namespace of the calling thread only). Sockets it
creates belong to that namespace for their whole life, so they can be handed back and
used from any thread: a probe in a notebook talks SMTP *from* a lab host, with that
host's addresses and routes, using this machine's Python and libraries.

Name resolution is NOT done in the namespace (the C library would read this machine's
/etc/resolv.conf): callers pass addresses, resolved through the lab DNS beforehand.
"""

from __future__ import annotations

import ctypes
import os
import queue
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(OSError):
    """The namespace could not be joined (gone, or not permitted)."""


class NetnsThread:
    """A worker thread inside the network namespace at ``path`` (e.g. /run/netns/NAME)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._jobs: queue.Queue[tuple[Callable[..., Any], tuple, dict, Future] | None] = queue.Queue()
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._main, args=(ready,), daemon=True,
                                        name=f"netns:{os.path.basename(path)}")
        self._thread.start()
        ready.result()

    def _main(self, ready: Future) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            ready.set_exception(NetnsError(exc.errno, f"cannot open {self.path}: {exc.strerror}"))
            return
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                ready.set_exception(NetnsError(err, f"setns {self.path}: {os.strerror(err)}"))
                return
        finally:
            os.close(fd)
        ready.set_result(None)
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args, kwargs, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                fut.set_exception(exc)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` inside the namespace and return its result."""
        if not self._thread.is_alive():
            raise NetnsError(0, f"the worker for {self.path} has stopped")
        fut: Future[T] = Future()
        self._jobs.put((fn, args, kwargs, fut))
        return fut.result()

    def connect(self, address: str, port: int, timeout: float = 10.0,
                source: str | None = None) -> socket.socket:
        """A TCP connection to ``address``:``port`` made from inside the namespace, from
        the namespace's address ``source`` if given."""
        return self.call(socket.create_connection, (address, port), timeout,
                         (source, 0) if source else None)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(5)
