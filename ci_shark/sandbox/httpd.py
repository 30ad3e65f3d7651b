"""The HTTP adapter: parse a request off the socket, ask the core, write the reply back.

Also what only a socket can do: keep-alive, limits on what a client may send, a real TCP
reset for the "reset" fault, a body cut short for "truncated".

The request log (``request_log``, the standalone server's stderr) gets one line per request:
method, path, status, and the outcome's name. Never the query (a user code, whatever a
client put there), a header or a body; what the client sent is percent-encoded, so no
control character reaches a terminal.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import struct
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from ci_shark.sandbox.core import SandboxCore
from ci_shark.sandbox.wire import Reply, Request, json_reply, text_reply

MAX_BODY_BYTES: Final = 64 * 1024
MAX_HEADER_BYTES: Final = 16 * 1024
# Idle keep-alive connections and stalled senders give up after this long.
SOCKET_TIMEOUT_S: Final = 15.0


class LoopbackHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], core: SandboxCore, stopping: threading.Event
    ) -> None:
        self.core = core
        self.stopping = stopping
        self._lock = threading.Lock()
        self._connection_ids = itertools.count(1)
        self._open_connections: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (timeouts, resets, our own stop()) are normal here, not bugs.
        error = sys.exc_info()[1]
        if isinstance(error, OSError) or self.stopping.is_set():
            return
        super().handle_error(request, client_address)

    def register_connection(self, connection: socket.socket) -> int:
        with self._lock:
            self._open_connections.add(connection)
            return next(self._connection_ids)

    def unregister_connection(self, connection: socket.socket) -> None:
        with self._lock:
            self._open_connections.discard(connection)

    def server_close(self) -> None:
        """Close the listening socket and every connection: handler threads waiting on an
        idle keep-alive connection end, so the join of closing does not wait them out."""
        with self._lock:
            connections = list(self._open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        super().server_close()


def log_line(req: Request, reply: Reply) -> str:
    """``12:00:01 POST /oauth/token 400 authorization_pending``: see the module's rule."""
    status = "reset" if reply.action == "reset" else str(reply.status)
    method, path = (urllib.parse.quote(text, safe=_SAFE_IN_LOG) for text in (req.method, req.path))
    return f"{time.strftime('%H:%M:%S')} {method} {path} {status} {reply.outcome or '-'}"


# RFC 3986's unreserved and sub-delims, ':', '@', '/' and '%': a path prints as it was sent.
_SAFE_IN_LOG: Final = "/:@!$&'()*+,;=-._~%"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients can reuse one connection
    server_version = "ci_shark-sandbox"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_S
    # Headers and body go out in two writes; with Nagle on, the body would wait ~40 ms for
    # the client's delayed ACK, skewing every timing a benchmark or interval test sees.
    disable_nagle_algorithm = True
    server: LoopbackHTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection_id = self.server.register_connection(self.connection)
        self.arrived_at = 0.0

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.unregister_connection(self.connection)

    def parse_request(self) -> bool:
        self.arrived_at = self.server.core.options.clock()
        if not super().parse_request():
            return False
        header_bytes = sum(len(name) + len(value) for name, value in self.headers.items())
        if header_bytes > MAX_HEADER_BYTES:
            self.send_error(431, "Request Header Fields Too Large")
            return False
        return True

    def do_GET(self) -> None:
        self._serve()

    # Which method a path takes is the core's business (405 with Allow, or any for /api/*).
    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr line."""

    def end_headers(self) -> None:
        # Every answer, errors included, tells the client the newest nonce.
        nonce = self.server.core.proofs.response_nonce()
        if nonce is not None:
            self.send_header("DPoP-Nonce", nonce)
        super().end_headers()

    def _serve(self) -> None:
        core = self.server.core
        split = urllib.parse.urlsplit(self.path)
        body, problem = self._read_body()
        try:
            query = urllib.parse.parse_qs(split.query, max_num_fields=20)
        except ValueError:
            query = {}
            problem = problem or text_reply(400, "400 too many query parameters\n", "bad_request")
        req = Request(
            method=self.command,
            path=split.path,
            query=query,
            headers=tuple(self.headers.items()),
            body=body,
            arrived_at=self.arrived_at,
            connection_id=self.connection_id,
            raw_query=split.query,
        )
        if problem is not None:
            reply = problem
        else:
            try:
                reply = core.handle(req)
            except Exception:  # a sandbox bug: answer like a real server, keep a trace
                traceback.print_exc()
                payload = {"error": "server_error", "error_description": "sandbox bug"}
                reply = json_reply(500, payload, "server_error")
        # Record before answering, so a client that sees the answer also sees it in stats.
        core.record(req, reply)
        if core.options.request_log is not None:
            core.options.request_log(log_line(req, reply))
        self._write(reply)

    def _read_body(self) -> tuple[bytes, Reply | None]:
        if self.headers.get("Transfer-Encoding"):
            reply = text_reply(411, "411 a Content-Length is required\n", "length_required")
            reply.close = True
            return b"", reply
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b"", None
        try:
            length = int(raw_length)
            if length < 0:
                raise ValueError(raw_length)
        except ValueError:
            reply = text_reply(400, "400 bad Content-Length\n", "bad_request")
            reply.close = True
            return b"", reply
        if length > MAX_BODY_BYTES:
            # Not reading it: the connection is unusable afterwards, so close it.
            reply = text_reply(413, "413 request body too large\n", "payload_too_large")
            reply.close = True
            return b"", reply
        body = self.rfile.read(length)
        if len(body) != length:
            reply = text_reply(400, "400 incomplete body\n", "bad_request")
            reply.close = True
            return body, reply
        return body, None

    def _write(self, reply: Reply) -> None:
        if reply.action == "reset":
            self._reset_connection()
            return
        try:
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            if reply.content_type is not None:
                self.send_header("Content-Type", reply.content_type)
            declared = (
                reply.declared_length if reply.declared_length is not None else len(reply.body)
            )
            self.send_header("Content-Length", str(declared))
            if reply.close or reply.action == "truncate":
                self.send_header("Connection", "close")  # also sets close_connection
            self.end_headers()
            if self.command != "HEAD":  # RFC 9110 §9.3.2: the headers of a GET, no content
                self.wfile.write(reply.body)
                for chunk in reply.stream or ():
                    self.wfile.write(chunk)
        except OSError:
            self.close_connection = True

    def _reset_connection(self) -> None:
        # SO_LINGER {on, 0}: close() then sends RST instead of FIN. The socket must be closed
        # here (not via shutdown(), which would send a FIN first), and rfile holds a reference.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.connection.close()
