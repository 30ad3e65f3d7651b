"""Fixtures for the interop suite: real authorization servers on loopback.

Two independent implementations: node oidc-provider (oidc_peer.py) and Debian's glewlwyd
(glewlwyd_peer.py). Locally, a missing tool (node, npm, glewlwyd, the ci_shark CLI) skips
the tests that need it, with the reason; under CI (``CI=true``) it fails them, so the suite
can never pass by silently running nothing.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from glewlwyd_peer import GlewlwydServer, run_glewlwyd
from oidc_peer import REPO_ROOT, ProviderServer, run_provider
from support.cli import clean_env, cli_argv, run_cli
from support.required import missing

from ci_shark.sandbox import FakeCiIssuer


@pytest.fixture(scope="session")
def ci_issuer() -> Iterator[FakeCiIssuer]:
    """The CI's OIDC token service (GitHub-shaped) that the provider trusts."""
    with FakeCiIssuer() as issuer:
        yield issuer


@pytest.fixture(scope="session")
def provider(
    tmp_path_factory: pytest.TempPathFactory, ci_issuer: FakeCiIssuer
) -> Iterator[ProviderServer]:
    with run_provider(tmp_path_factory.mktemp("oidc-provider"), ci_issuer) as server:
        yield server


@pytest.fixture(scope="session")
def glewlwyd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GlewlwydServer]:
    """One glewlwyd for the session: start-up and provisioning take about a second."""
    with run_glewlwyd(tmp_path_factory.mktemp("glewlwyd")) as server:
        yield server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure, attach the end of the server's log to the report."""
    outcome = yield
    report = outcome.get_result()
    funcargs = getattr(item, "funcargs", {})
    if report.failed:
        provider = funcargs.get("provider")
        if isinstance(provider, ProviderServer):
            report.sections.append(("oidc-provider log (tail)", provider.log_tail()))
        peer = funcargs.get("glewlwyd")
        if isinstance(peer, GlewlwydServer):
            report.sections.append(("glewlwyd log (tail)", peer.log_tail()))


@pytest.fixture(scope="session")
def ci_shark_cli() -> list[str]:
    """The command that runs our client, once it is importable and answers --help."""
    try:
        done = run_cli(["--help"], clean_env(), cwd=REPO_ROOT, timeout_s=30)
    except subprocess.TimeoutExpired:
        missing("python -m ci_shark --help did not answer in 30 s")
    if done.returncode != 0:
        missing(f"python -m ci_shark --help failed ({done.returncode}): {done.stderr[-500:]}")
    return cli_argv()
