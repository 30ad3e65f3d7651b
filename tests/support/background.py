"""A call on a daemon thread while the test goes on: the maintainer approving in a browser
while the job keeps polling. :meth:`Background.result` joins it with a deadline and
re-raises what the call raised."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Background(Generic[T]):
    def __init__(self, call: Callable[[], T], *, name: str) -> None:
        self._outcome: list[T] = []
        self._failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(call,), name=name, daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], T]) -> None:
        try:
            self._outcome.append(call())
        except BaseException as exc:
            self._failure.append(exc)

    def result(self, timeout_s: float = 30) -> T:
        self._thread.join(timeout=timeout_s)
        assert not self._thread.is_alive(), f"{self._thread.name} did not finish in {timeout_s} s"
        if self._failure:
            raise self._failure[0]
        return self._outcome[0]
