"""Stand-ins for the CI token services ci_shark asks for a job's OIDC token, on loopback or
on PATH: GitHub's is ``ci_shark.sandbox.FakeCiIssuer``; here Azure Pipelines' OIDC request
URI and a ``buildkite-agent`` that answers ``oidc request-token``. Each records what it was
asked, so a test can check the audience, the credential and the method; the tokens are
signed by :class:`support.ci_tokens.CiKeys` (no ci_shark code)."""

from __future__ import annotations

import json
import sys
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from support.ci_tokens import CiKeys
from support.loopback_http import JsonHandler, LoopbackFake, LoopbackServer

AZURE_AUDIENCE = "api://AzureADTokenExchange"


@dataclass(frozen=True)
class AzureCall:
    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None


class FakeAzureOidc(LoopbackFake):
    """``$SYSTEM_OIDCREQUESTURI``: a POST with ``api-version=7.1-preview.1`` and the job's
    access token as a Bearer answers ``{"oidcToken": jwt}`` (aud api://AzureADTokenExchange);
    a wrong or missing Bearer is a 401 with a message, as Azure DevOps answers."""

    PATH = "/0f0e/_apis/distributedtask/hubs/build/plans/1a2b/jobs/3c4d/oidctoken"

    def __init__(self, access_token: str = "azure-system-access-token-7f3e") -> None:
        self.access_token = access_token
        self.keys = CiKeys(issuer="https://vstoken.dev.azure.com/0f0e")
        self.calls: list[AzureCall] = []
        self._canned: deque[tuple[int, Any]] = deque()
        self._lock = threading.Lock()

    @property
    def request_uri(self) -> str:
        return self.url + self.PATH

    def environment(self) -> dict[str, str]:
        """What a step that maps System.AccessToken into its env has."""
        return {"SYSTEM_OIDCREQUESTURI": self.request_uri, "SYSTEM_ACCESSTOKEN": self.access_token}

    def answer_next(self, status: int, body: Any) -> None:
        with self._lock:
            self._canned.append((status, body))

    def start(self) -> FakeAzureOidc:
        fake = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                self.send_json(*fake._answer(self))

        self._server = LoopbackServer(Handler)
        return self

    def _answer(self, handler: JsonHandler) -> tuple[int, Any]:
        split = urlsplit(handler.path)
        call = AzureCall(
            handler.command, split.path, parse_qs(split.query), handler.headers["Authorization"]
        )
        with self._lock:
            self.calls.append(call)
            canned = self._canned.popleft() if self._canned else None
        if canned is not None:
            return canned
        if call.path != self.PATH:
            return 404, {"message": "not found"}
        if call.authorization != f"Bearer {self.access_token}":
            return 401, {"message": "TF400813: The user is not authorized to access this resource."}
        if call.query.get("api-version") != ["7.1-preview.1"]:
            return 400, {"message": "api-version must be 7.1-preview.1"}
        token = self.keys.token(AZURE_AUDIENCE, sub="p://example/test-oidc/test-oidc")
        return 200, {"oidcToken": token}


AGENT_SCRIPT = """#!{python}
# A stand-in for buildkite-agent that answers `oidc request-token --audience AUD`: it
# records its argv and whether the agent's own credential reached it, then prints the
# token it was given (or fails as told).
import json, os, sys
here = {here!r}
with open(os.path.join(here, "calls.jsonl"), "a", encoding="utf-8") as log:
    log.write(json.dumps({{"argv": sys.argv[1:],
                           "agent_token": os.environ.get("BUILDKITE_AGENT_ACCESS_TOKEN")}}) + "\\n")
behaviour = json.load(open(os.path.join(here, "behaviour.json"), encoding="utf-8"))
if sys.argv[1:3] != ["oidc", "request-token"]:
    sys.exit(0)  # redactor add and the rest: nothing to say
if behaviour["exit_code"]:
    sys.stderr.write(behaviour["stderr"])
    sys.exit(behaviour["exit_code"])
sys.stdout.write(behaviour["token"] + "\\n")
"""


class FakeBuildkiteAgent:
    """A ``buildkite-agent`` in ``directory/bin`` (put it first on PATH)."""

    def __init__(self, directory: Path, keys: CiKeys | None = None) -> None:
        self.keys = keys or CiKeys(issuer="https://agent.buildkite.com")
        self.home = directory / "agent"
        self.bin = self.home / "bin"
        self.bin.mkdir(parents=True)
        script = self.bin / "buildkite-agent"
        script.write_text(AGENT_SCRIPT.format(python=sys.executable, here=str(self.home)))
        script.chmod(0o755)
        self.answer(self.keys.token("https://auth.example"))

    def answer(self, token: str = "", *, exit_code: int = 0, stderr: str = "") -> None:
        behaviour = {"token": token, "exit_code": exit_code, "stderr": stderr}
        (self.home / "behaviour.json").write_text(json.dumps(behaviour))

    def calls(self) -> list[dict[str, Any]]:
        log = self.home / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
