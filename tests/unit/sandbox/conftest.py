"""Fixtures of the sandbox's tests: a sandbox on a fake clock, and an independent client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from support.clock import FakeClock
from support.sandbox_client import Client, http_client

from ci_shark.sandbox import SandboxServer


@pytest.fixture
def clock() -> FakeClock:
    """The server reads it for every decision; tests move it with ``advance``."""
    return FakeClock()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with http_client(timeout=5.0) as client:
        yield client


@pytest.fixture
def server(clock: FakeClock) -> Iterator[SandboxServer]:
    with SandboxServer(clock=clock, approve_on_open=False) as sandbox:
        yield sandbox


@pytest.fixture
def client(server: SandboxServer, http: httpx.Client) -> Client:
    return Client(server, http)
