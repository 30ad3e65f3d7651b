"""Fixtures shared by every test folder: a private temp dir and the loopback sandbox.

Helpers shared across folders live in ``tests/support/`` (imported as ``support.<module>``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ci_shark.sandbox import SandboxServer


@pytest.fixture(autouse=True)
def private_temp_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test's own temp dir and state folder, for this process and the ones it starts:
    no test leaves a ci-shark folder (a key, tokens) in the machine's temp dir or in the
    user's ~/.local/state (where a login outside CI keeps them)."""
    temp = tmp_path_factory.mktemp("tmp")
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setenv("XDG_STATE_HOME", str(temp / "state"))
    return temp


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., SandboxServer]]:
    """Start sandboxes with any options; every one is stopped after the test."""
    started: list[SandboxServer] = []

    def start(**options: object) -> SandboxServer:
        options.setdefault("interval_s", 1)
        server = SandboxServer(**options).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
