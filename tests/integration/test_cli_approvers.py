"""Who approved: the `approver` output, `allowed-approvers`, and `renew`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from scripted_server import Answer, ScriptedServer, device_answer, token_answer
from support.cli import CliJob, login_env, run_cli

from ci_shark.sandbox import METADATA_PATHS, SandboxServer

SandboxFactory = Callable[..., SandboxServer]


def test_approver_is_exported(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory(approve_after_s=1, subject="maintainer")
    result = run_cli([], login_env(server, tmp_path, CI_SHARK_ALLOWED_APPROVERS="user:Maintainer"))

    assert result.returncode == 0, result.stderr
    outputs = json.loads((tmp_path / "out.json").read_text())
    assert outputs["SHARK_APPROVER"] == "maintainer"


def test_approval_by_someone_else_is_revoked_and_refused(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1, subject="mallory")
    result = run_cli(
        [], login_env(server, tmp_path, CI_SHARK_ALLOWED_APPROVERS="user:maintainer, user:alice")
    )

    assert result.returncode == 6, result.stderr
    assert "approved by mallory, who is not in `allowed-approvers`" in result.stderr
    assert "the tokens it issued were revoked" in result.stderr
    assert not (tmp_path / "out.json").exists()
    assert not list(tmp_path.glob("ci-shark-dpop-*"))
    assert server.stats.outcomes("/oauth/revoke")  # the grant really was revoked
    # Nothing issued for the device code is still active.
    token_records = [r for r in server.stats.requests if r.outcome == "granted"]
    assert len(token_records) == 1


def test_userinfo_tells_the_approver_without_an_id_token(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    # No openid scope: no id_token; userinfo (DPoP-bound call) tells who it was.
    env = login_env(
        server, tmp_path, CI_SHARK_ALLOWED_APPROVERS="user:octocat", CI_SHARK_SCOPE="deploy"
    )
    result = run_cli([], env)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out.json").read_text())["SHARK_APPROVER"] == "octocat"


@pytest.mark.parametrize(
    ("provider", "entries"),
    [
        ("auto", "maintainer"),  # SharkAuth, as the sandbox's URL says
        ("keycloak", "sub:m-1, maintainer"),
        ("generic", "user:alice,maintainer"),
    ],
)
def test_a_bare_entry_is_refused_before_any_device_code(
    sandbox_factory: SandboxFactory, tmp_path: Path, provider: str, entries: str
) -> None:
    # These presets do not say their usernames are unique and fixed: a bare name would be
    # compared with preferred_username, which a user may set to a maintainer's.
    server = sandbox_factory(approve_after_s=1, subject="maintainer")
    env = login_env(
        server, tmp_path, CI_SHARK_ALLOWED_APPROVERS=entries, CI_SHARK_PROVIDER=provider
    )

    result = run_cli([], env)

    assert result.returncode == 2, result.stderr
    assert "bare entry `maintainer`" in result.stderr
    assert all(fix in result.stderr for fix in ("sub:<subject>", "email:", "user:"))
    assert not server.grants  # no device code was asked for
    assert not (tmp_path / "out.json").exists()


@pytest.fixture
def github() -> Iterator[ScriptedServer]:
    """GitHub's device flow at its preset paths, on loopback (so its REST API is at
    /api/v3, as on GitHub Enterprise Server): no metadata, no id_token, a Bearer token."""
    server = ScriptedServer().start()
    server.scripts["/login/device/code"] = [device_answer()]
    server.scripts["/login/oauth/access_token"] = [token_answer(scope="")]
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("entries", "user", "returncode"),
    [
        ("maintainer", {"login": "Maintainer", "id": 583231}, 0),
        ("sub:583231", {"login": "renamed-maintainer", "id": 583231}, 0),  # ids survive
        ("maintainer", {"login": "mallory", "id": 7, "name": "maintainer"}, 6),
        ("maintainer", {"login": "mallory", "id": 7, "preferred_username": "maintainer"}, 6),
    ],
)
def test_a_bare_entry_is_a_github_login(
    github: ScriptedServer, tmp_path: Path, entries: str, user: dict[str, Any], returncode: int
) -> None:
    github.scripts["/api/v3/user"] = [Answer(body=user)]
    env = login_env(
        github,
        tmp_path,
        CI_SHARK_PROVIDER="github",
        CI_SHARK_DPOP="false",  # GitHub issues Bearer tokens
        CI_SHARK_ALLOWED_APPROVERS=entries,
    )

    result = run_cli([], env)

    assert result.returncode == returncode, result.stderr
    assert [r.path for r in github.requests if r.method == "GET"] == ["/api/v3/user"]
    if returncode == 0:
        approver = json.loads((tmp_path / "out.json").read_text())["SHARK_APPROVER"]
        assert approver == user["login"]
    else:
        assert "approved by mallory, who is not in `allowed-approvers`" in result.stderr


def explicit_endpoints_env(server: SandboxServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    """A login that names both endpoints, so discovery is skipped before the link."""
    return login_env(
        server,
        tmp_path,
        CI_SHARK_DEVICE_AUTHORIZATION_ENDPOINT=f"{server.url}/oauth/device",
        CI_SHARK_TOKEN_ENDPOINT=f"{server.url}/oauth/token",
        **extra,
    )


def test_explicit_endpoints_still_learn_the_approver_from_the_metadata(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1, subject="mallory")
    env = explicit_endpoints_env(
        server,
        tmp_path,
        CI_SHARK_ALLOWED_APPROVERS="user:octocat",
        CI_SHARK_SCOPE="deploy",  # no id_token: only userinfo can tell
    )
    result = run_cli([], env)
    assert result.returncode == 6, result.stderr
    assert "approved by mallory" in result.stderr
    assert "the tokens it issued were revoked" in result.stderr
    assert server.stats.outcomes("/oauth/revoke")


def test_explicit_endpoints_with_an_id_token_read_no_metadata(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1, subject="maintainer")
    env = explicit_endpoints_env(server, tmp_path, CI_SHARK_ALLOWED_APPROVERS="user:maintainer")
    result = run_cli([], env)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out.json").read_text())["SHARK_APPROVER"] == "maintainer"
    asked = {record.path for record in server.stats.requests}
    assert asked.isdisjoint(METADATA_PATHS)  # the id_token told: nothing else was asked


def test_unknown_approver_fails_closed(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory(approve_after_s=1, metadata=False)
    # Explicit endpoints and no metadata: no userinfo; no openid scope, so no id_token.
    env = explicit_endpoints_env(
        server, tmp_path, CI_SHARK_ALLOWED_APPROVERS="user:octocat", CI_SHARK_SCOPE="deploy"
    )
    result = run_cli([], env)
    assert result.returncode == 6, result.stderr
    assert "someone the server did not identify" in result.stderr
    assert not (tmp_path / "out.json").exists()


def test_renew_replaces_an_expired_code(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory(expires_in_s=2)
    env = login_env(server, tmp_path, CI_SHARK_RENEW="true", CI_SHARK_TIMEOUT="40")
    with CliJob([], env) as job:
        deadline = time.monotonic() + 20
        while len(server.grants) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        if len(server.grants) >= 2:
            server.approve(server.grants[1].user_code)
        returncode = job.wait(40)
    stderr = job.stderr
    assert returncode == 0, stderr
    assert "asking for a new one" in stderr
    assert stderr.count("approval needed") == 2
    codes = [grant.user_code for grant in server.grants]
    assert codes[0] != codes[1]
    assert all(code in stderr for code in codes)


def test_without_renew_an_expired_code_ends_the_run(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(expires_in_s=2)
    result = run_cli([], login_env(server, tmp_path, CI_SHARK_TIMEOUT="40"))
    assert result.returncode == 4
    assert len(server.grants) == 1


def test_extra_params_reach_the_device_request(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    env = login_env(
        server, tmp_path, CI_SHARK_EXTRA_PARAMS="binding_message=deploy acme/web\naudience=api"
    )
    result = run_cli([], env)
    assert result.returncode == 0, result.stderr
    assert dict(server.grants[0].extra_params) == {
        "binding_message": "deploy acme/web",
        "audience": "api",
    }
