"""The proxy's listening side: who may use it, and one log line per request.

Its rules:

- It listens on a loopback address only, and its base URL carries a capability:
  ``http://127.0.0.1:PORT/<32 random url-safe characters>/``. On a shared machine anyone
  can reach loopback; only the run knows the capability. A request whose first path
  segment is not the capability (compared in constant time) gets ``404`` and nothing is
  forwarded.
- It is never an open proxy: ``CONNECT`` and ``TRACE`` get ``405``; a request target in
  absolute form (``GET http://elsewhere/``) or ``*`` gets ``400``, and so does one that is
  not visible ASCII without a fragment; a ``Host`` that is not
  this proxy's address (a DNS-rebinding page, a client aimed elsewhere) gets ``421``. A
  path that names no upstream gets ``404``.
- At most ``MAX_CONNECTIONS`` clients at once; a client that sends nothing for
  ``CLIENT_TIMEOUT_S`` is let go. When every place is taken, a new connection makes room by
  closing the oldest one that has not yet shown the capability: anyone on the machine can
  open connections that send nothing, and must not be able to hold every place. A request's
  head is read before the capability can be checked, so it is bounded by our own limits, not
  Python's (100 lines of 64 KiB: 6 MiB a connection): ``MAX_REQUEST_LINE_BYTES`` and
  ``MAX_HEADER_BYTES`` in size, and ``HEAD_TIMEOUT_S`` in time from its first byte (``408``,
  closed) — a per-read timeout alone would let anyone on the machine hold a slot for ever by
  sending a byte every 29 s, and take the run's proxy with 64 of them.
- One log line per request: method, the path on the upstream without its query (the
  upstream's name first, when named), status, milliseconds. Never the query, a header, a
  body, the token, a proof or the capability: a refused request's path is not shown at
  all (a near miss of the capability would show most of it).
- :meth:`ProxyServer.stop` is bounded: no new connection, idle ones closed at once, busy
  ones given ``STOP_GRACE_S`` to finish, then cut.
"""

from __future__ import annotations

import hmac
import io
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from ci_shark.oauth.http import SendFailed
from ci_shark.proxy.forward import (
    BUFFERED_BODY_BYTES,
    Answer,
    Forwarder,
    Incoming,
    buffered_or_streamed,
)
from ci_shark.proxy.upstreams import Routes, Upstream
from ci_shark.proxy.wire import BadBody, chunked, dechunked, fixed_length, is_token, valid_headers
from ci_shark.safe_text import untrusted

MAX_CONNECTIONS = 64
CLIENT_TIMEOUT_S = 30.0
HEAD_TIMEOUT_S = 10.0  # the whole request line and headers, from their first byte
STOP_GRACE_S = 5.0
MAX_REQUEST_LINE_BYTES = 8192
MAX_HEADER_BYTES = 64 * 1024  # every header line, the blank one included
REFUSED_METHODS = frozenset({"CONNECT", "TRACE"})
# RFC 9112 §3.2.1 (origin-form): visible ASCII, and no fragment.
ORIGIN_FORM = re.compile(r"/[!-\"$-~]*")
ALLOW = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"


class ProxyServer(ThreadingHTTPServer):
    """Bound at construction (the port is known); :meth:`serve` starts it on a thread."""

    daemon_threads = True
    request_queue_size = MAX_CONNECTIONS

    def __init__(
        self,
        host: str,
        port: int,
        capability: str,
        *,
        log: Callable[[str], None],
        family: socket.AddressFamily = socket.AF_INET,
        head_timeout_s: float = HEAD_TIMEOUT_S,
    ) -> None:
        self.address_family = family
        super().__init__((host, port), _Handler)
        self.capability = capability
        self.log = log
        self.head_timeout_s = head_timeout_s
        self.authority = f"[{host}]" if ":" in host else host
        self.port = int(self.server_address[1])
        self.base_url = f"http://{self.authority}:{self.port}/{capability}/"
        self.hosts = {f"{self.authority}:{self.port}", f"localhost:{self.port}"}
        self.forwarder: Forwarder | None = None
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._stopping = threading.Event()
        self._lock = threading.Condition()
        self._open: dict[socket.socket, bool] = {}  # connection -> busy, oldest first
        self._proven: set[socket.socket] = set()  # the open ones that showed the capability
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def serve(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="ci_shark-proxy"
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop accepting, close idle connections, give busy ones ``grace_s``, cut them."""
        self._stopping.set()
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=grace_s)
        self.server_close()
        self._cut(only_idle=True)
        deadline = time.monotonic() + grace_s
        with self._lock:
            while self._open and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)
        self._cut(only_idle=False)

    def _cut(self, *, only_idle: bool) -> None:
        with self._lock:
            chosen = [conn for conn, busy in self._open.items() if not (only_idle and busy)]
        for connection in chosen:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    # -- connections -------------------------------------------------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        # A free slot first (the backlog waits meanwhile), or the connection is let go.
        while not self._slots.acquire(blocking=False):
            self._make_room()
            if self._slots.acquire(timeout=0.2):
                break
            if self._stopping.is_set():
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _make_room(self) -> None:
        """Every place is taken: close the oldest connection that has not shown the
        capability (its thread then ends and frees the place). The run's own connections
        are never closed for a newcomer."""
        with self._lock:
            unproven = next((conn for conn in self._open if conn not in self._proven), None)
        if unproven is not None:
            with suppress(OSError):
                unproven.shutdown(socket.SHUT_RDWR)

    def proven(self, connection: socket.socket) -> None:
        """``connection`` showed the capability: it keeps its place."""
        with self._lock:
            if connection in self._open:
                self._proven.add(connection)

    def track(self, connection: socket.socket, *, busy: bool | None) -> None:
        """A connection opens (idle), turns busy or idle, or closes (``busy=None``)."""
        with self._lock:
            if busy is None:
                self._open.pop(connection, None)
                self._proven.discard(connection)
                self._lock.notify_all()
            else:
                self._open[connection] = busy
        if busy is False and self._stopping.is_set():
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up is normal; anything else is said in one line, without
        the exception's text (it may quote what a client sent)."""
        failure = sys.exc_info()[1]
        if not isinstance(failure, OSError):
            self.log(f"ci_shark: proxy: unexpected failure ({type(failure).__name__})")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "ci_shark-proxy"
    sys_version = ""
    timeout = CLIENT_TIMEOUT_S
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms stall
    server: ProxyServer

    def setup(self) -> None:
        super().setup()
        self._wire = cast(io.BufferedReader, self.rfile)  # makefile("rb", -1): buffered
        self._unread: ClientBody | None = None  # the body of the request being served
        self.server.track(self.connection, busy=False)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, busy=None)

    def log_message(self, format: str, *args: Any) -> None:
        """The server's own lines are ours (see the module's rules)."""

    def handle_expect_100(self) -> bool:
        return True  # sent once the request is allowed, not before (see _continue)

    def handle_one_request(self) -> None:
        try:
            if not self._wire.peek(1):  # idle (keep-alive) until the first byte, or its end
                self.close_connection = True
                return
            started = time.monotonic()
            try:
                if not self._read_head(deadline=started + self.server.head_timeout_s):
                    return  # answered (400, 414, 431, 505)
            except _HeadTooSlow:
                self._head_too_slow()
                return
            self.server.track(self.connection, busy=True)
            try:
                status, shown = self._serve()
            finally:
                self.server.track(self.connection, busy=False)
            took_ms = (time.monotonic() - started) * 1000
            method = untrusted(self.command, 20)
            self.server.log(f"ci_shark: proxy: {method} {shown} {status} {took_ms:.0f} ms")
        except TimeoutError:
            self.close_connection = True

    def _read_head(self, *, deadline: float) -> bool:
        """The request line and headers, read by ``deadline`` within our size bounds, then
        ``parse_request`` on them; False when it answered instead."""
        try:
            self.raw_requestline = self._line(MAX_REQUEST_LINE_BYTES, deadline)
            if len(self.raw_requestline) > MAX_REQUEST_LINE_BYTES:
                self._refuse_head(414)
                return False
            block = self._header_block(deadline)
        finally:
            self.connection.settimeout(self.timeout)  # the body's and the next request's
        if block is None:
            self._refuse_head(431)
            return False
        wire, self.rfile = self.rfile, io.BytesIO(block)
        try:
            return self.parse_request()
        finally:
            self.rfile = wire

    def _header_block(self, deadline: float) -> bytes | None:
        """The header lines up to the blank one, or None past ``MAX_HEADER_BYTES``."""
        lines: list[bytes] = []
        left = MAX_HEADER_BYTES
        while True:
            line = self._line(left, deadline)
            if len(line) > left:
                return None
            lines.append(line)
            left -= len(line)
            if line in (b"\r\n", b"\n", b""):
                return b"".join(lines)

    def _line(self, limit: int, deadline: float) -> bytes:
        """A line of at most ``limit`` + 1 bytes (more is the caller's "too long"), or what
        came before the client closed. Every read waits only for the time left until
        ``deadline``: a client's pace cannot stretch it. :class:`_HeadTooSlow` past it."""
        line = bytearray()
        while len(line) <= limit:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _HeadTooSlow
            self.connection.settimeout(left)
            try:
                buffered = self._wire.peek(1)[: limit + 1 - len(line)]  # one read at most
            except TimeoutError:
                raise _HeadTooSlow from None
            if not buffered:
                break
            end = buffered.find(b"\n")
            line += self._wire.read(len(buffered) if end < 0 else end + 1)
            if end >= 0:
                break
        return bytes(line)

    def _head_too_slow(self) -> None:
        """408 and close: the slot goes back to the run's own clients. Said in one line
        (there is no request to show)."""
        self.connection.settimeout(self.timeout)
        self._refuse_head(408)
        self.close_connection = True
        self.server.log(
            f"ci_shark: proxy: a request head took over {self.server.head_timeout_s:g} s "
            "to arrive: 408, connection closed"
        )

    def _refuse_head(self, status: int) -> None:
        """An error before the request line is parsed (as http.server's own 414 does)."""
        self.requestline, self.request_version, self.command = "", "", ""
        self.send_error(status)

    # -- one request -------------------------------------------------------------------------

    def _serve(self) -> tuple[int | str, str]:
        """Check, forward, answer; (the status sent, the path as the log shows it)."""
        refused = self._refusal()
        if refused is not None:
            self._write(refused)
            return refused.status, "(refused)"
        self.server.proven(self.connection)
        rest = self.path[len(self.server.capability) + 1 :]
        assert self.server.forwarder is not None
        routed = self._routes().route(rest)
        if routed is None:
            self._write(Answer.ours(404, "no upstream here", close_connection=True))
            return 404, untrusted(rest.partition("?")[0], 200) or "/"
        upstream, target = routed
        shown = untrusted(upstream.prefix + target.partition("?")[0], 200)
        try:
            incoming = self._incoming(upstream, target)
        except BadBody as bad:
            self._write(Answer.ours(400, str(bad), close_connection=True))
            return 400, shown
        answer = self.server.forwarder.forward(incoming)
        if self._unread is not None and not self._unread.done:
            answer.close_connection = True  # the rest of a body that was never read
        return self._write(answer), shown

    def _routes(self) -> Routes:
        assert self.server.forwarder is not None
        return self.server.forwarder.routes

    def _refusal(self) -> Answer | None:
        """The proxy's answer to a request it will not forward, or None."""
        if self.command in REFUSED_METHODS or not is_token(self.command):
            refusal = Answer.ours(405, "this is not a forward proxy", close_connection=True)
            refusal.headers.append((b"Allow", ALLOW.encode()))
            return refusal
        if not self.path.startswith("/"):  # absolute form, or `*`
            return Answer.ours(
                400, "only paths are forwarded: this is not a forward proxy", close_connection=True
            )
        if not ORIGIN_FORM.fullmatch(self.path):
            return Answer.ours(
                400, "the request target is not a path and query (RFC 9112)", close_connection=True
            )
        hosts = self.headers.get_all("Host") or []
        host = hosts[0].strip().lower() if len(hosts) == 1 else ""
        if host not in self.server.hosts and (hosts or self.request_version != "HTTP/1.0"):
            return Answer.ours(421, "this Host is not the proxy's", close_connection=True)
        segment = self.path[1:].partition("/")[0].partition("?")[0]
        if not hmac.compare_digest(segment.encode(), self.server.capability.encode()):
            return Answer.ours(404, "not found", close_connection=True)
        if not valid_headers(self.headers.items()):
            return Answer.ours(400, "a header is not valid HTTP", close_connection=True)
        return None

    def _incoming(self, upstream: Upstream, target: str) -> Incoming:
        """The request with its body: held when small, streamed when not."""
        self._unread = None
        encodings = self.headers.get_all("Transfer-Encoding") or []
        lengths = set(self.headers.get_all("Content-Length") or [])
        headers = list(self.headers.items())
        if encodings and lengths:
            raise BadBody("both Transfer-Encoding and Content-Length: refused")
        if encodings:
            if [coding.strip().lower() for coding in encodings] != ["chunked"]:
                raise BadBody("a Transfer-Encoding other than chunked")
            self._continue()
            self._unread = ClientBody(dechunked(self.rfile))
            body = buffered_or_streamed(iter(self._unread))
            return Incoming(self.command, upstream, target, headers, body)
        if not lengths:
            return Incoming(self.command, upstream, target, headers, None)
        length = lengths.pop()
        if lengths or not length.isascii() or not length.isdigit():
            raise BadBody("the Content-Length is not one whole number")
        size = int(length)
        self._continue()
        self._unread = ClientBody(fixed_length(self.rfile, size))
        if size <= BUFFERED_BODY_BYTES:
            return Incoming(self.command, upstream, target, headers, b"".join(self._unread))
        return Incoming(self.command, upstream, target, headers, iter(self._unread), size)

    def _continue(self) -> None:
        if (self.headers.get("Expect") or "").lower() == "100-continue":
            self.send_response_only(100)
            self.end_headers()

    def _write(self, answer: Answer) -> int | str:
        """The answer to the client; the status, or "status (cut)" when it broke off."""
        try:
            self.send_response_only(answer.status, answer.phrase)
            for name, value in answer.headers:
                self.send_header(name.decode("latin-1"), value.decode("latin-1"))
            if answer.close_connection or self.close_connection:
                self.send_header("Connection", "close")
            body = self._framed(answer)
            self.end_headers()
            for piece in body:
                self.wfile.write(piece)
        except (OSError, SendFailed):  # the client left, or the upstream broke off
            self.close_connection = True
            return f"{answer.status} (cut)"
        finally:
            answer.release()
        return answer.status

    def _framed(self, answer: Answer) -> Iterator[bytes]:
        if not answer.has_body:
            if answer.length is not None:
                self.send_header("Content-Length", str(answer.length))
            return iter(())
        if answer.length is not None:
            self.send_header("Content-Length", str(answer.length))
            return answer.body
        if self.request_version == "HTTP/1.1":
            self.send_header("Transfer-Encoding", "chunked")
            return chunked(answer.body)
        self.send_header("Connection", "close")  # HTTP/1.0: the end of the body is the close
        return answer.body


class _HeadTooSlow(Exception):
    """The request head did not arrive within ``HEAD_TIMEOUT_S`` of its first byte."""


class ClientBody:
    """The client's body as it is read: ``done`` once read to its end. Its socket failing
    or timing out is a :class:`BadBody`."""

    def __init__(self, pieces: Iterator[bytes]) -> None:
        self._pieces = pieces
        self.done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._pieces
        except OSError:
            raise BadBody("the client stopped sending its body") from None
        self.done = True
