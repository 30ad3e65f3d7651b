"""What the interop suite's two peers (oidc_peer.py, glewlwyd_peer.py) share: a missing
tool skips locally and fails under CI, the endpoints their metadata advertises, the end
of their log for a failure report, and stopping their process.

Locally, a missing tool (node, npm, glewlwyd) skips the tests that need it with the
reason; under CI (``CI=true``) it fails them, so the suite can never pass by silently
running nothing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, ClassVar

from support.cli import job_env
from support.required import missing

STOP_TIMEOUT_S = 5


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"{name} not found on PATH; {hint}")
    return path


class Peer:
    """A running peer: mixed into each peer's dataclass, which has these attributes."""

    name: ClassVar[str]
    log_path: Path
    metadata: dict[str, Any]  # its OpenID configuration

    @property
    def device_authorization_endpoint(self) -> str:
        return str(self.metadata["device_authorization_endpoint"])

    @property
    def token_endpoint(self) -> str:
        return str(self.metadata["token_endpoint"])

    @property
    def userinfo_endpoint(self) -> str:
        return str(self.metadata["userinfo_endpoint"])

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no {self.name} log: {exc})"
        return "\n".join(text.splitlines()[-lines:])


def login_env(
    tmp: Path, *, auth_url: str, client_id: str, scope: str, timeout: str, **overrides: str
) -> dict[str, str]:
    """A login job against a peer: JSON outputs in ``tmp/out.json``, the approval in the log
    only; ``overrides`` (any CI_SHARK_* variable) win."""
    values = {
        "CI_SHARK_AUTH_URL": auth_url,
        "CI_SHARK_CLIENT_ID": client_id,
        "CI_SHARK_SCOPE": scope,
        "CI_SHARK_OUTPUT_FORMAT": "json",
        "CI_SHARK_OUTPUT_FILE": str(tmp / "out.json"),
        "CI_SHARK_NOTIFY": "log",
        "CI_SHARK_TIMEOUT": timeout,
        **overrides,
    }
    return job_env(tmp, **values)


def stop(process: subprocess.Popen[Any]) -> None:
    """Terminate, then kill: every wait bounded."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)
