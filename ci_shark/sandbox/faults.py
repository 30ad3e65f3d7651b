"""Transport faults the sandbox injects into successive token / device requests, on demand."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Final

from ci_shark.sandbox.wire import DEVICE_PATH, TOKEN_PATH, Reply, json_reply, text_reply

#: Fault entries accepted in ``token_faults`` / ``device_faults`` (plus ``slow:<seconds>``).
FAULT_NAMES: Final = frozenset(
    {"500", "503", "oversized", "html", "429", "reset", "truncated", "ok"}
)
MAX_SLOW_FAULT_S: Final = 60.0
OVERSIZED_FAULT_BYTES: Final = 2 * 1024 * 1024


def parse_fault(entry: str) -> str:
    if entry in FAULT_NAMES:
        return entry
    if entry.startswith("slow:"):
        try:
            seconds = float(entry.removeprefix("slow:"))
        except ValueError:
            seconds = -1.0
        if 0 <= seconds <= MAX_SLOW_FAULT_S:
            return entry
    allowed = ", ".join(sorted(FAULT_NAMES))
    raise ValueError(f"unknown fault {entry!r}: use one of {allowed} or slow:<0-60 seconds>")


def slow_fault_delay_s(fault: str) -> float | None:
    """The delay of a "slow:<s>" fault (it answers normally, late), None for any other."""
    return float(fault.removeprefix("slow:")) if fault.startswith("slow:") else None


def fault_reply(fault: str) -> Reply:
    """The reply of every fault except "slow" (which answers normally, late)."""
    if fault == "500":
        payload = {"error": "server_error", "error_description": "sandbox fault: internal error"}
        return json_reply(500, payload, "")
    if fault == "503":
        return text_reply(503, "Service Unavailable\n", "")
    if fault == "oversized":
        # JSON-looking, so a client without a size cap would happily parse all of it.
        prefix = b'{"error":"server_error","padding":"'
        suffix = b'"}'
        filler = b"x" * (OVERSIZED_FAULT_BYTES - len(prefix) - len(suffix))
        return Reply(502, prefix + filler + suffix, "application/json")
    if fault == "html":
        page = (
            "<html><head><title>502 Bad Gateway</title></head><body>"
            "<center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>"
            "</body></html>\n"
        )
        return Reply(502, page.encode("utf-8"), "text/html")
    if fault == "429":
        reply = text_reply(429, "Too Many Requests: slow down\n", "")
        reply.headers.append(("Retry-After", "1"))
        return reply
    if fault == "reset":
        return Reply(0, action="reset")
    if fault == "truncated":
        body = b'{"access_token":"'
        return Reply(200, body, "application/json", action="truncate", declared_length=512)
    raise AssertionError(f"unhandled fault {fault}")  # parse_fault admits nothing else


class FaultQueues:
    """The faults still to inject, per endpoint: each POST there takes the next one."""

    def __init__(self, *, token_faults: Sequence[str], device_faults: Sequence[str]) -> None:
        self._lock = threading.Lock()
        self._queues = {
            TOKEN_PATH: deque(parse_fault(f) for f in token_faults),
            DEVICE_PATH: deque(parse_fault(f) for f in device_faults),
        }

    def take(self, path: str) -> str | None:
        queue = self._queues.get(path)
        with self._lock:
            return queue.popleft() if queue else None
