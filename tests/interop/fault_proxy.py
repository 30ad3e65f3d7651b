"""A loopback reverse proxy that misbehaves on cue, between ci_shark and the provider.

Standard library only: one listening socket on 127.0.0.1, one thread per
connection, one request per connection (answers carry ``Connection: close``).
Faults are scripted per path: each request to a path takes the next fault from
that path's queue, then the path's standing fault (if any), else it is simply
forwarded. Every exchange is recorded (arrival time, fault, upstream status,
bytes sent) for the tests to assert on.

The ``Host`` header is forwarded unchanged: node oidc-provider computes the
DPoP ``htu`` it expects (and the URLs it hands out) from the request's Host, so
the provider expects exactly the proxy URL the client signed. No
``proxy: true`` / X-Forwarded-* is needed.

Everything is bounded: header and body sizes, socket timeouts, how long a
delay or an oversized body may last, and how long ``stop()`` waits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import struct
import threading
import time
import urllib.parse
from collections import defaultdict, deque
from collections.abc import Iterator

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
MAX_UPSTREAM_BYTES = 4 * 1024 * 1024
IO_TIMEOUT_S = 15.0
MAX_DELAY_S = 30.0
MAX_OVERSIZE_BYTES = 16 * 1024 * 1024
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"}


@dataclasses.dataclass(frozen=True)
class Fault:
    """What to do with one request. Build with the functions below."""

    kind: str  # forward | status | reset | delay | truncate | oversize
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0
    size: int = 0
    chunked: bool = False
    # for delay / truncate: apply only when the provider answered this status
    only_status: int | None = None

    def __str__(self) -> str:
        if self.kind == "status":
            return f"status {self.status}"
        if self.kind == "delay":
            return f"delay {self.delay_s:g}s"
        if self.kind == "oversize":
            return f"oversize {self.status} {self.size}B{' chunked' if self.chunked else ''}"
        return self.kind


def forward() -> Fault:
    return Fault("forward")


def status(code: int, *, body: bytes | None = None, retry_after: str | None = None) -> Fault:
    """Answer ``code`` without asking the provider (a 5xx from a load balancer, a 429)."""
    headers = [("Content-Type", "application/json")]
    if retry_after is not None:
        headers.append(("Retry-After", retry_after))
    if body is None:
        body = b'{"error":"temporarily_unavailable"}' if code == 429 else b"upstream unavailable"
        if code != 429:
            headers = [("Content-Type", "text/plain")]
    return Fault("status", status=code, body=body, headers=tuple(headers))


def reset() -> Fault:
    """Read the request, then reset the connection (RST) without an answer."""
    return Fault("reset")


def delay(seconds: float, *, only_status: int | None = None) -> Fault:
    """Forward, then hold the provider's answer back for ``seconds``."""
    return Fault("delay", delay_s=min(seconds, MAX_DELAY_S), only_status=only_status)


def truncate(*, only_status: int | None = None) -> Fault:
    """Forward, then send the head and only half of the body, and close."""
    return Fault("truncate", only_status=only_status)


def oversize(code: int = 200, size: int = 4 * 1024 * 1024, *, chunked: bool = False) -> Fault:
    """Answer ``code`` with ``size`` bytes of JSON-looking body (no provider involved)."""
    return Fault("oversize", status=code, size=min(size, MAX_OVERSIZE_BYTES), chunked=chunked)


@dataclasses.dataclass
class Exchange:
    method: str
    path: str
    fault: Fault
    arrived_at: float  # time.monotonic()
    upstream_status: int | None = None
    client_gone: bool = False
    error: str | None = None


@dataclasses.dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.target).path


class _ClientGone(Exception):
    pass


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname != "127.0.0.1" or parts.port is None:
            raise ValueError(f"upstream must be http://127.0.0.1:<port>, not {upstream}")
        self.upstream = (parts.hostname, parts.port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stopping = threading.Event()
        self._lock = threading.Condition()
        self._queues: dict[str, deque[Fault]] = defaultdict(deque)
        self._standing: dict[str, Fault] = {}
        self.exchanges: list[Exchange] = []
        self._connections: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)

    # -- scripting -------------------------------------------------------------------

    def script(self, path: str, *faults: Fault) -> None:
        """Queue ``faults`` for the next requests to ``path``, in order."""
        with self._lock:
            self._queues[path].extend(faults)

    def always(self, path: str, fault: Fault | None) -> None:
        """Apply ``fault`` to every request to ``path`` once its queue is empty."""
        with self._lock:
            if fault is None:
                self._standing.pop(path, None)
            else:
                self._standing[path] = fault

    def wait_consumed(self, path: str, timeout_s: float) -> None:
        """Wait until every queued fault for ``path`` has been applied."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._queues[path]:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{len(self._queues[path])} scripted faults for {path} still unused "
                        f"after {timeout_s} s; seen: {self.summary()}"
                    )
                self._lock.wait(timeout=min(remaining, 0.2))

    def seen(self, path: str) -> list[Exchange]:
        with self._lock:
            return [exchange for exchange in self.exchanges if exchange.path == path]

    def summary(self) -> str:
        return ", ".join(
            f"{e.method} {e.path}: {e.fault}"
            + (f" -> {e.upstream_status}" if e.upstream_status else "")
            for e in list(self.exchanges)
        )

    def _next_fault(self, path: str) -> Fault:
        with self._lock:
            queue = self._queues.get(path)
            if queue:
                fault = queue.popleft()
                self._lock.notify_all()
                return fault
            return self._standing.get(path, forward())

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._acceptor.join(timeout=5)
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in list(self._threads):
            thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self._connections.add(conn)
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()

    # -- one connection, one request ------------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        exchange: Exchange | None = None
        try:
            conn.settimeout(IO_TIMEOUT_S)
            request = _read_request(conn)
            if request is None:
                return
            fault = self._next_fault(request.path)
            exchange = Exchange(request.method, request.path, fault, time.monotonic())
            with self._lock:
                self.exchanges.append(exchange)
            self._apply(conn, request, fault, exchange)
        except _ClientGone:
            if exchange is not None:
                exchange.client_gone = True
        except OSError as exc:
            if exchange is not None:
                exchange.error = f"{type(exc).__name__}: {exc}"
        finally:
            with self._lock:
                self._connections.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _apply(
        self, conn: socket.socket, request: _Request, fault: Fault, exchange: Exchange
    ) -> None:
        if fault.kind == "reset":
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        if fault.kind == "status":
            head = _head(fault.status, [*fault.headers, ("Content-Length", str(len(fault.body)))])
            _send(conn, head + fault.body)
            return
        if fault.kind == "oversize":
            self._send_oversize(conn, fault, exchange)
            return
        raw = self._ask_upstream(request)
        exchange.upstream_status = _status_of(raw)
        if fault.only_status is not None and fault.only_status != exchange.upstream_status:
            fault = forward()
            exchange.fault = fault
        if fault.kind == "delay" and self._stopping.wait(fault.delay_s):
            return
        if fault.kind == "truncate":
            head, _, body = raw.partition(b"\r\n\r\n")
            raw = head + b"\r\n\r\n" + body[: len(body) // 2]
        _send(conn, raw)

    def _ask_upstream(self, request: _Request) -> bytes:
        headers = [(k, v) for k, v in request.headers if k.lower() not in HOP_BY_HOP]
        headers.append(("Connection", "close"))
        lines = [f"{request.method} {request.target} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in headers]
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + request.body
        with socket.create_connection(self.upstream, timeout=IO_TIMEOUT_S) as upstream:
            upstream.sendall(payload)
            chunks: list[bytes] = []
            size = 0
            while True:
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > MAX_UPSTREAM_BYTES:
                    raise OSError("upstream answer too large for the proxy")
                chunks.append(chunk)
        return b"".join(chunks)

    def _send_oversize(self, conn: socket.socket, fault: Fault, exchange: Exchange) -> None:
        framing = (
            ("Transfer-Encoding", "chunked")
            if fault.chunked
            else ("Content-Length", str(fault.size))
        )
        _send(conn, _head(fault.status, [("Content-Type", "application/json"), framing]))
        block = b'{"padding":"' + b"x" * (64 * 1024 - 16) + b'"}\n'
        sent = 0
        while sent < fault.size and not self._stopping.is_set():
            piece = block[: fault.size - sent]
            data = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if fault.chunked else piece
            _send(conn, data)
            sent += len(piece)
        if fault.chunked:
            _send(conn, b"0\r\n\r\n")


def _send(conn: socket.socket, data: bytes) -> None:
    try:
        conn.sendall(data)
    except (BrokenPipeError, ConnectionResetError, TimeoutError) as exc:
        raise _ClientGone from exc


def _head(code: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {code} {_REASONS.get(code, 'Status')}", *(f"{k}: {v}" for k, v in headers)]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _status_of(raw: bytes) -> int | None:
    try:
        return int(raw.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def _read_request(conn: socket.socket) -> _Request | None:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buffer += chunk
        if len(buffer) > MAX_HEAD_BYTES:
            return None
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        return None
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    length = 0
    for name, value in headers:
        if name.lower() == "content-length" and value.isdigit():
            length = int(value)
        if name.lower() == "transfer-encoding":
            return None  # our client sends forms with a length; nothing else is expected
    if length > MAX_BODY_BYTES:
        return None
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return _Request(method, target, version, headers, body[:length])


_REASONS = {
    200: "OK",
    400: "Bad Request",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@contextlib.contextmanager
def running(upstream: str) -> Iterator[FaultProxy]:
    with FaultProxy(upstream) as proxy:
        yield proxy
