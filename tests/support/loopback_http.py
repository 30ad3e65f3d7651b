"""What every fake HTTP service of the tests shares: a quiet JSON request handler, and a
server on 127.0.0.1 in a daemon thread that starts and stops."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    """Reads and answers JSON; logs nothing (pytest shows what matters)."""

    def log_message(self, format: str, *args: Any) -> None:
        return

    def read_json(self) -> Any:
        """The request body as JSON, or None when there is none."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def send_json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)


class LoopbackFake:
    """What a fake service shares: its URL once started, and stop(). Its start() sets
    ``_server`` to a :class:`LoopbackServer` running its handler."""

    _server: LoopbackServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() it first"
        return self._server.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


class LoopbackServer:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port), serving until :meth:`stop`."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], *, tls: ssl.SSLContext | None = None
    ) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def free_port() -> int:
    """A loopback port nobody listens on right now (for a server started a moment later,
    or for a connection that must be refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
