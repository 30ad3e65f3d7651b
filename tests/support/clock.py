"""The one fake clock: monotonic time that moves only when the code sleeps or a test says.

Inject it as ``clock=fake`` (a ``Callable[[], float]``) and ``sleep=fake.sleep``; nothing
really waits. ``sleeps`` records every requested sleep, in order.
"""

from __future__ import annotations

START = 1000.0  # where every fake clock starts unless told otherwise


class FakeClock:
    def __init__(self, now: float = START) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, "slept a negative time"
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        """Time passes without anyone sleeping (a test moving the server's clock)."""
        self.now += seconds
