"""An HTTP proxy on 127.0.0.1 that forwards nothing: it records what each connection asks
for (a ``CONNECT`` or an absolute-URI request, with every byte of its head) and answers
502. A test points ``HTTP(S)_PROXY`` at it to see what would have gone through a proxy."""

from __future__ import annotations

import socket
import threading
from contextlib import suppress


class RecordingProxy:
    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.heads: list[bytes] = []  # each request's head, as sent
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> RecordingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._listener.close()

    @property
    def request_lines(self) -> list[str]:
        with self._lock:
            return [head.split(b"\r\n", 1)[0].decode("latin-1") for head in self.heads]

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            with client, suppress(OSError):
                client.settimeout(5)
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    data = client.recv(4096)
                    if not data:
                        break
                    head += data
                with self._lock:
                    self.heads.append(head)
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
