"""A deadline for a whole request, which httpx's timeouts cannot give: they are per read.

A server dripping one header byte every few seconds could hold a request for days. The
status line and headers are read inside httpcore: the :class:`Watchdog` shuts the socket
at the deadline, which makes that blocked read return at once. The sockets are learnt
from httpcore's ``trace`` extension: direct connections, TLS, and the tunnels of an HTTP
or SOCKS proxy. The body is read by an :class:`Exchange`, which checks the deadline
between chunks, whether the caller reads it whole or streams it on.
"""

from __future__ import annotations

import socket
import threading
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import suppress
from typing import Any

import httpx

from ci_shark.oauth.transport import NoAnswer, describe

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

    def explain(self, failure: httpx.RequestError) -> NoAnswer:
        """``failure`` in our words: the deadline, when this watchdog cut the connection."""
        if self.fired:
            return NoAnswer("no complete answer by the deadline", timed_out=True)
        return NoAnswer(describe(failure))


class Exchange:
    """One answer: its status and headers read, its body still on the wire. Read the body
    with :meth:`body` or :meth:`chunks`, both against the deadline; :meth:`close` (or the
    end of a ``with`` block) releases the connection and disarms the watchdog."""

    def __init__(
        self,
        response: httpx.Response,
        watchdog: Watchdog,
        deadline: float,
        clock: Callable[[], float],
    ) -> None:
        self.response = response
        self._watchdog = watchdog
        self._deadline = deadline
        self._clock = clock

    def __enter__(self) -> Exchange:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.response.close()
        finally:
            self._watchdog.disarm()

    def body(self) -> bytes:
        """The whole body, decoded under the cap."""
        return b"".join(self._by_the_deadline(self.response.iter_bytes()))

    def chunks(self) -> Iterator[bytes]:
        """The body as it comes off the wire, for a caller that streams it on (already
        read when DPoP's flow read a small, uncompressed challenge: as it came)."""
        if self.response.is_stream_consumed:
            return self._by_the_deadline(iter([self.response.content]))
        return self._by_the_deadline(self.response.iter_raw())

    def _by_the_deadline(self, chunks: Iterator[bytes]) -> Generator[bytes, None, None]:
        try:
            for chunk in chunks:
                if self._clock() > self._deadline:
                    raise NoAnswer("the answer was still arriving at the deadline", timed_out=True)
                yield chunk
        except httpx.RequestError as failure:
            raise self._watchdog.explain(failure) from None
