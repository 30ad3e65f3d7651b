"""The interop suite's peer: a real node oidc-provider on loopback, and helpers."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from peers import STOP_TIMEOUT_S, Peer, require_tool, stop
from support.cli import CliJob

from ci_shark.sandbox import FakeCiIssuer

INTEROP_DIR = Path(__file__).resolve().parent
REPO_ROOT = INTEROP_DIR.parents[1]
NPM_CI_TIMEOUT_S = 300
READY_TIMEOUT_S = 30

# The public, DPoP-bound clients provider.mjs registers, and the resource server's
# confidential client used for introspection. WI_CLIENT_ID must prove its CI identity
# (workload identity): the fixture's --ci-allow rules name it.
CLIENT_ID = "ci-shark"
EXPIRING_CLIENT_ID = "ci-shark-expiring"
WI_CLIENT_ID = "ci-shark-wi"
WI_REPOSITORY = "octo/app"
RS_CLIENT_ID = "resource-server"
RS_CLIENT_SECRET = "rs-secret"
SCOPE = "openid offline_access"
# What oidc-provider prints for the approver: user codes in its base-20 charset, mask
# ****-****, and its device page.
USER_CODE = re.compile(r"\b[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}\b")
LINK = re.compile(r"https?://127\.0\.0\.1:\d+/device(?:\?user_code=[A-Z0-9-]+)?")


def wait_for_link(job: CliJob, timeout_s: float = 20) -> tuple[str, str]:
    """The link and user code oidc-provider gave, as the job's log shows them."""
    return job.wait_for_link(link=LINK, user_code=USER_CODE, timeout_s=timeout_s)


@dataclasses.dataclass
class ProviderServer(Peer):
    """A running oidc-provider and what tests need to talk to it."""

    name: ClassVar[str] = "provider"
    issuer: str
    log_path: Path
    metadata: dict[str, Any]
    version: str

    @property
    def introspection_endpoint(self) -> str:
        return str(self.metadata["introspection_endpoint"])

    @property
    def revocation_endpoint(self) -> str:
        return str(self.metadata["revocation_endpoint"])


def _installed_version() -> str | None:
    manifest = INTEROP_DIR / "node_modules" / "oidc-provider" / "package.json"
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def _pinned_version() -> str:
    package = json.loads((INTEROP_DIR / "package.json").read_text())
    return str(package["dependencies"]["oidc-provider"])


def _ensure_node_modules(npm: str) -> str:
    pinned = _pinned_version()
    if _installed_version() == pinned:
        return pinned
    try:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=INTEROP_DIR,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=NPM_CI_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"npm ci in {INTEROP_DIR} took more than {NPM_CI_TIMEOUT_S} s", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"npm ci in {INTEROP_DIR} failed ({done.returncode}):\n{done.stderr[-3000:]}",
            pytrace=False,
        )
    installed = _installed_version()
    if installed != pinned:
        pytest.fail(f"npm ci installed oidc-provider {installed}, expected {pinned}", pytrace=False)
    return pinned


def _read_lines(stream: Any, lines: queue.Queue[str | None]) -> None:
    try:
        for line in stream:
            lines.put(line)
    finally:
        lines.put(None)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        try:
            if process.stdin is not None:
                process.stdin.close()  # provider.mjs exits when its stdin closes
        except OSError:
            pass
        stop(process)
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def workload_identity_flags(ci_issuer: FakeCiIssuer) -> list[str]:
    """provider.mjs trusts ``ci_issuer``; WI_CLIENT_ID needs a token of WI_REPOSITORY's main."""
    return [
        *("--trust-ci-issuer", ci_issuer.jwks_url, "--ci-issuer", ci_issuer.url),
        *("--ci-allow", f"{WI_CLIENT_ID}:repository={WI_REPOSITORY}"),
        *("--ci-allow", f"{WI_CLIENT_ID}:ref=refs/heads/*"),
    ]


@contextlib.contextmanager
def run_provider(log_dir: Path, ci_issuer: FakeCiIssuer | None = None) -> Iterator[ProviderServer]:
    """Start provider.mjs on a free loopback port, trusting ``ci_issuer`` if given; stop it
    (terminate, then kill) on exit."""
    node = require_tool("node", "install Node.js >= 18 with npm")
    npm = require_tool("npm", "install npm (it ships with Node.js)")
    version = _ensure_node_modules(npm)

    log_path = log_dir / "provider.log"
    log = log_path.open("w")
    trust = workload_identity_flags(ci_issuer) if ci_issuer is not None else []
    process = subprocess.Popen(
        [node, str(INTEROP_DIR / "provider.mjs"), "--port", "0", *trust],
        cwd=INTEROP_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True)
    reader.start()
    try:
        issuer = None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while issuer is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"oidc-provider not ready in {READY_TIMEOUT_S} s", pytrace=False)
            try:
                line = lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                log.flush()
                pytest.fail(
                    f"oidc-provider exited ({process.wait(timeout=STOP_TIMEOUT_S)}) before "
                    f"it was ready:\n{log_path.read_text(errors='replace')[-3000:]}",
                    pytrace=False,
                )
            if line.startswith("READY "):
                issuer = line.split(maxsplit=1)[1].strip()
        response = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=10)
        response.raise_for_status()
        yield ProviderServer(
            issuer=issuer, log_path=log_path, metadata=response.json(), version=version
        )
    finally:
        _stop(process)
        reader.join(timeout=STOP_TIMEOUT_S)
        log.close()
