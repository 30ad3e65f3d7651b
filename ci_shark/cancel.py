"""Cancellation: SIGINT/SIGTERM end the wait at once, but never half-way through writing
the outputs.

The runner cancels a job by signalling the step's process (action.yml `exec`s python so
that it is ours). While waiting, the signal raises :class:`Cancelled` where the wait is.
Inside :func:`shielded` (masking, exporting, the final status) it is only recorded: those
few milliseconds finish, so the outputs are all there or none are.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType

from ci_shark.errors import Cancelled, ExitCode

_SIGNALS = {
    signal.SIGINT: ("SIGINT", ExitCode.SIGINT),
    signal.SIGTERM: ("SIGTERM", ExitCode.SIGTERM),
}


@dataclass
class _State:
    shield_depth: int = 0
    deferred: Cancelled | None = None


_state = _State()  # one per process, like the signal handlers themselves


def install() -> None:
    for signum in _SIGNALS:
        signal.signal(signum, _on_signal)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # One cancellation is enough: a second signal must not interrupt the clean-up (editing
    # the comment to say "cancelled"), whose every request is bounded.
    for other in _SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    name, exit_code = _SIGNALS[signal.Signals(signum)]
    cancelled = Cancelled(name, exit_code)
    if _state.shield_depth:
        _state.deferred = cancelled
        return
    raise cancelled


@contextmanager
def shielded() -> Iterator[None]:
    """Run the block to its end even if the job is cancelled meanwhile."""
    _state.shield_depth += 1
    try:
        yield
    finally:
        _state.shield_depth -= 1


def deferred() -> Cancelled | None:
    """The cancellation that arrived inside a shielded block, if any."""
    return _state.deferred
