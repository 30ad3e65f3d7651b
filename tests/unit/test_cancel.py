"""Cancellation ends the wait, but never cuts the writing of outputs in half."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from ci_shark import cancel
from ci_shark.errors import Cancelled


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(cancel, "_state", cancel._State())
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    cancel.install()
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.usefixtures("handlers")
def test_a_signal_while_waiting_raises_cancelled() -> None:
    with pytest.raises(Cancelled) as cancelled:
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next bytecode
    assert cancelled.value.exit_code == 143
    # A second signal is ignored: the clean-up must not be interrupted.
    os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.usefixtures("handlers")
def test_a_signal_inside_the_shield_lets_the_block_finish() -> None:
    finished = False
    with cancel.shielded():
        os.kill(os.getpid(), signal.SIGINT)
        finished = True
    assert finished
    deferred = cancel.deferred()
    assert deferred is not None
    assert deferred.exit_code == 130
