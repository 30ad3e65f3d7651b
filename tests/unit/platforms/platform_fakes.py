"""Shared pieces for the platform unit tests: settings, a request, credentials, streams."""

from __future__ import annotations

import io
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ci_shark.config import Settings
from ci_shark.flow import enforce_run_policy
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.tokens import TokenSet
from ci_shark.outputs import Credentials
from ci_shark.platforms.base import Platform
from ci_shark.render import ApprovalRequest, RunContext
from ci_shark.secret import Secret

ACCESS_TOKEN = "at-SECRET-4f0c1e2d9a8b7c6d"
REFRESH_TOKEN = "rt-SECRET-0a1b2c3d4e5f6a7b"
DEVICE_CODE = "dc-SECRET-9f8e7d6c5b4a3210"
GITLAB_TOKEN = "glpat-SECRET-abcdefabcdef"


def settings(**values: Any) -> Settings:
    return Settings(auth_url="https://auth.example.com", client_id="ci", **values)


def credentials(*, dpop: bool = True) -> Credentials:
    tokens = TokenSet(
        access_token=Secret(ACCESS_TOKEN),
        token_type="DPoP" if dpop else "Bearer",
        expires_in=300,
        scope="deploy",
        refresh_token=Secret(REFRESH_TOKEN),
        id_token=None,
        received_at=time.time(),
    )
    return Credentials(
        tokens=tokens, dpop_key=DPoPKey.generate() if dpop else None, dpop_key_file=None
    )


def request(context: RunContext, *, user_code: str = "WDJB-MJHT") -> ApprovalRequest:
    return ApprovalRequest(
        link="https://auth.example.com/device?user_code=" + user_code,
        verification_uri="https://auth.example.com/device",
        user_code=user_code,
        expires_at=datetime.now(timezone.utc) + timedelta(minutes=10),
        scope="deploy",
        resource=(),
        dpop_jkt="jkt-thumbprint",
        context=context,
    )


class Streams:
    """stdout and stderr of a platform under test."""

    def __init__(self, *, tty: bool = False) -> None:
        self.stdout = io.StringIO()
        self.stderr = _Tty() if tty else io.StringIO()

    def kwargs(self) -> dict[str, Any]:
        return {"stdout": self.stdout, "stderr": self.stderr}

    def all(self) -> str:
        return self.stdout.getvalue() + self.stderr.getvalue()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


FAKE_AGENT = """#!{python}
# A stand-in for buildkite-agent: records argv and stdin, one JSON line per call.
import json, sys
record = {{"argv": sys.argv[1:], "stdin": sys.stdin.read()}}
with open({log!r}, "a", encoding="utf-8") as log:
    log.write(json.dumps(record) + "\\n")
sys.exit({exit_code})
"""


def fake_buildkite_agent(directory: Path, *, exit_code: int = 0) -> tuple[Path, Path]:
    """A fake ``buildkite-agent`` in ``directory/bin``; returns (bin dir, call log)."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = directory / "agent-calls.jsonl"
    script = bin_dir / "buildkite-agent"
    script.write_text(FAKE_AGENT.format(python=sys.executable, log=str(log), exit_code=exit_code))
    script.chmod(0o755)
    return bin_dir, log


def agent_calls(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def enforce_policy(platform: Platform, context: RunContext) -> None:
    """The flow's fork and public-repository rule, on the facts this platform found."""
    enforce_run_policy(context, platform.settings, platform.warn)
