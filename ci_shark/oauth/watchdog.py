"""A deadline for the parts of a request httpx cannot bound: shut the socket at the deadline.

httpx's timeouts are per read, so a server dripping one header byte every few seconds
could hold a request for days. The body is checked between chunks by the caller, but the
status line and headers are read inside httpcore; shutting the socket down makes that
blocked read return at once. The sockets are learnt from httpcore's ``trace`` extension:
direct connections, TLS, and the tunnels of an HTTP or SOCKS proxy.
"""

from __future__ import annotations

import socket
import threading
import weakref
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

# "connection.connect_tcp.complete", "proxy.start_tls.complete", "socks.connect_tcp..."
_OPENED_SUFFIXES = ("connect_tcp.complete", "start_tls.complete")


class Sockets:
    """The live sockets of one client; a trace callback registers each as it opens."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[socket.socket] = weakref.WeakSet()

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if not event.endswith(_OPENED_SUFFIXES):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with self._lock:
                self._open.add(sock)

    def shut_all(self) -> None:
        with self._lock:
            live = [sock for sock in self._open if sock.fileno() != -1]
        for sock in live:
            # socket.socket's own shutdown, not SSLSocket's, which would drop the TLS
            # object under the reading thread's feet. A socket TLS took over is closed
            # (fileno -1) and skipped: its TLS successor is registered too.
            with suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Watchdog:
    """One request's: at ``after_s`` seconds, unless disarmed first, shut the sockets.

    Disarming and firing take the same lock, so a request that ended just before its
    deadline never has a connection (kept alive for the next request) shut under it.
    """

    def __init__(self, sockets: Sockets, after_s: float) -> None:
        self._sockets = sockets
        self._lock = threading.Lock()
        self._disarmed = False
        self.fired = False
        self._timer = threading.Timer(max(0.0, after_s), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._disarmed:
                return
            self.fired = True
            self._sockets.shut_all()

    def disarm(self) -> None:
        with self._lock:
            self._disarmed = True
        self._timer.cancel()
