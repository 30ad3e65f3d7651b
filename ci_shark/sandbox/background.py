"""What the sandbox (``server.py``) and its fake CI issuer (``ci_issuer.py``) share: a
server on a loopback port, served from a daemon thread, that its user starts once
(``start()``, or a ``with`` block) and stops (``stop()``: safe twice, or before ``start()``).
"""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import ClassVar, Final, TypeVar

POLL_INTERVAL_S: Final = 0.05  # how soon serve_forever notices a stop
STOP_JOIN_TIMEOUT_S: Final = 5.0

_Served = TypeVar("_Served", bound="ServedInBackground")


class ServedInBackground:
    """A subclass binds its server (:meth:`_bind`) and may do more around :meth:`stop`;
    ``stopping`` is set as it stops (a handler's wait ends early)."""

    what: ClassVar[str]  # in messages: "the sandbox"

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _bind(self) -> ThreadingHTTPServer:
        """The server, bound to its port and not serving yet."""
        raise NotImplementedError

    def start(self: _Served) -> _Served:
        if self._httpd is not None or self.stopping.is_set():
            raise RuntimeError(f"{self.what} was started already: it starts once")
        httpd = self._bind()
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": POLL_INTERVAL_S},
            name=f"ci_shark {self.what} on port {httpd.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the server's sockets. Safe twice, or before start()."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.stopping.set()
        httpd.shutdown()  # returns within one poll interval once serve_forever runs
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=STOP_JOIN_TIMEOUT_S)

    def __enter__(self: _Served) -> _Served:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
