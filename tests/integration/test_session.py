"""``ci_shark.session()``: an httpx.Client with the login's token, for a job's Python steps,
against the sandbox's DPoP-protected ``/api/*`` (nonces on, proofs checked by the sandbox,
which shares no code with the client)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from support.cli import login_env, run_cli

import ci_shark
from ci_shark.errors import ConfigError, ProtocolError
from ci_shark.sandbox import SandboxServer

SandboxFactory = Callable[..., SandboxServer]
CI_MARKERS = ("GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "TF_BUILD", "CI")


@pytest.fixture(autouse=True)
def not_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session reads the environment as a later step would: this test's, not CI's."""
    for name in [*CI_MARKERS, *(name for name in os.environ if name.startswith("SHARK_"))]:
        monkeypatch.delenv(name, raising=False)


def logged_in(server: SandboxServer, tmp: Path) -> Path:
    done = run_cli([], login_env(server, tmp), cwd=tmp)
    assert done.returncode == 0, done.log
    return tmp / "out.json"


def test_a_session_calls_the_api_with_the_token_and_a_proof(
    sandbox_factory: SandboxFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = sandbox_factory(approve_after_s=1, require_nonce=True)
    credentials = logged_in(server, tmp_path)
    challenges = server.stats.nonce_challenges
    with ci_shark.session(credentials, base_url=server.url) as api:
        assert isinstance(api, httpx.Client)
        got = api.get("/api/echo", params={"page": "2"})
        posted = api.post("/api/echo", json={"ref": "v1.2.3"})
    assert got.status_code == 200
    assert got.json()["path"] == "/api/echo?page=2"
    assert got.json()["scheme"] == "DPoP"
    assert got.json()["jkt"] == json.loads(credentials.read_text())["SHARK_DPOP_JKT"]
    assert json.loads(posted.json()["body"]) == {"ref": "v1.2.3"}
    assert server.stats.nonce_challenges == challenges + 1  # answered once, then known
    logged = capsys.readouterr()
    assert f"using the credentials in {credentials}" in logged.err
    assert json.loads(credentials.read_text())["SHARK_ACCESS_TOKEN"] not in logged.err


def test_a_session_refreshes_the_token_before_it_expires(
    sandbox_factory: SandboxFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = sandbox_factory(approve_after_s=1, access_token_ttl_s=6)
    credentials = logged_in(server, tmp_path)
    first = json.loads(credentials.read_text())["SHARK_ACCESS_TOKEN"]
    with ci_shark.session(credentials) as api:
        assert api.get(f"{server.url}/api/echo").status_code == 200
        time.sleep(max(0.0, 3.5 - (time.time() - credentials.stat().st_mtime)))
        assert api.get(f"{server.url}/api/echo").status_code == 200  # due: refreshed first
    assert json.loads(credentials.read_text())["SHARK_ACCESS_TOKEN"] != first
    assert "expires soon; refreshing it" in capsys.readouterr().err
    assert "invalid_token" not in [record.outcome for record in server.stats.requests]


def test_a_session_sends_no_token_over_plain_http_to_another_host(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    credentials = logged_in(sandbox_factory(approve_after_s=1), tmp_path)
    seen: list[httpx.Request] = []

    def remote(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    api = ci_shark.session(credentials, transport=httpx.MockTransport(remote))
    with api, pytest.raises(ProtocolError, match="plain http"):
        api.get("http://api.example.com/items")
    assert seen == []


def test_a_session_without_credentials_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="no credentials"):
        ci_shark.session()


def test_a_session_with_a_base_url_sends_the_token_to_its_origin_only(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    # An API's "next page" or upload link on another host must not get the token.
    server = sandbox_factory(approve_after_s=1)
    credentials = logged_in(server, tmp_path)
    with ci_shark.session(credentials, base_url=server.url) as api:
        assert api.get("/api/echo").status_code == 200
        with pytest.raises(ProtocolError, match="the session's base_url"):
            api.get("https://files.example.com/upload")
        other_port = server.url.rsplit(":", 1)[0] + ":1"
        with pytest.raises(ProtocolError, match="the session's base_url"):
            api.get(f"{other_port}/api/echo")
