"""Waiting for what another thread or process does, with a deadline.

A server records a request, or logs its line, on its own thread: often after the client
already has its answer. A test that checks at once can run first on a busy machine, so it
waits for the condition itself (polled, bounded), never for a fixed time.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def until(condition: Callable[[], bool], what: str, *, within_s: float = 10) -> None:
    """Return once ``condition()`` holds; an AssertionError naming ``what`` if it does not
    within ``within_s``."""
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {within_s} s"
        time.sleep(0.02)
