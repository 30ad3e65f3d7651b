"""Fixtures for the interop suite: a real node oidc-provider on loopback.

Locally, a missing tool (node, npm, the ci_shark CLI) skips the tests that need
it, with the reason; under CI (``CI=true``) it fails them, so the suite can never
pass by silently running nothing. The logic lives in oidc_peer.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from oidc_peer import REPO_ROOT, ProviderServer, missing, run_provider


@pytest.fixture(scope="session")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderServer]:
    with run_provider(tmp_path_factory.mktemp("oidc-provider")) as server:
        yield server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure, attach the end of the provider's request log to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and "provider" in getattr(item, "fixturenames", ()):
        server = item.funcargs.get("provider") if hasattr(item, "funcargs") else None
        if isinstance(server, ProviderServer):
            report.sections.append(("oidc-provider log (tail)", server.log_tail()))


@pytest.fixture(scope="session")
def ci_shark_cli() -> list[str]:
    """The command that runs our client, once it is importable and answers --help."""
    command = [sys.executable, "-m", "ci_shark"]
    try:
        done = subprocess.run(
            [*command, "--help"],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        missing("python -m ci_shark --help did not answer in 30 s")
    if done.returncode != 0:
        missing(f"python -m ci_shark --help failed ({done.returncode}): {done.stderr[-500:]}")
    return command
