"""The request watchdog on real sockets (socketpairs): it shuts at the deadline, never after
being disarmed, and only sockets it was told about."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.waits import until

from ci_shark.oauth.watchdog import Sockets, Watchdog


class Stream:
    """What httpcore's trace hands over: a stream that knows its socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def get_extra_info(self, name: str) -> Any:
        return self.sock if name == "socket" else None


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.settimeout(5)
    yield ours, theirs
    ours.close()
    theirs.close()


def registered(sock: socket.socket, event: str = "connection.connect_tcp.complete") -> Sockets:
    sockets = Sockets()
    sockets.trace(event, {"return_value": Stream(sock)})
    return sockets


@pytest.mark.parametrize(
    "event",
    [
        "connection.connect_tcp.complete",
        "connection.start_tls.complete",
        "proxy.start_tls.complete",  # the TLS inside an HTTP proxy's CONNECT tunnel
        "socks.connect_tcp.complete",
    ],
)
def test_at_the_deadline_a_blocked_read_returns(
    pair: tuple[socket.socket, socket.socket], event: str
) -> None:
    ours, _ = pair
    watchdog = Watchdog(registered(ours, event), after_s=0.2)
    started = time.monotonic()
    assert ours.recv(1) == b""  # blocked until the watchdog shut the socket
    assert watchdog.fired
    assert time.monotonic() - started < 4  # not the socket's own 5 s timeout


def test_a_disarmed_watchdog_leaves_the_connection_alone(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    # 1 s: far from the disarm on the next line, even on a busy machine.
    watchdog = Watchdog(registered(ours), after_s=1.0)
    watchdog.disarm()  # the request ended in time; its connection is kept for the next one
    time.sleep(1.3)
    assert not watchdog.fired
    theirs.sendall(b"k")
    assert ours.recv(1) == b"k"


def test_other_events_register_nothing(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    watchdog = Watchdog(registered(ours, "http11.send_request_headers.complete"), after_s=0.05)
    until(lambda: watchdog.fired, "the watchdog fired", within_s=5)  # on its timer's thread
    theirs.sendall(b"k")
    assert ours.recv(1) == b"k"
