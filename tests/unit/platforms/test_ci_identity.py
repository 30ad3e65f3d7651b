"""Each CI's OIDC token fetcher against a loopback fake of its token service: GitHub's
request URL (``FakeCiIssuer``), Azure Pipelines' OIDC request URI, a ``buildkite-agent`` on
PATH, GitLab's ``id_tokens:`` variable. Checked: the audience asked for, the credential
sent (and masked first), the refusals with their fix, and that no token or credential ever
reaches a message."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.ci_token_fakes import AZURE_AUDIENCE, FakeAzureOidc, FakeBuildkiteAgent
from support.ci_tokens import parts
from support.github_fakes import masked_values

from ci_shark.errors import CiSharkError, ConfigError, ExitCode, ProtocolError
from ci_shark.oauth.http import TransientFailure
from ci_shark.platforms.azure import AzurePlatform
from ci_shark.platforms.base import Platform
from ci_shark.platforms.buildkite import BuildkitePlatform
from ci_shark.platforms.ci_identity import CiTokenService, token_service
from ci_shark.platforms.github import GitHubPlatform
from ci_shark.platforms.gitlab import GitLabPlatform
from ci_shark.sandbox import FakeCiIssuer
from ci_shark.secret import Secret

from .platform_fakes import Streams, settings

AUDIENCE = "https://auth.example/realms/ci"


@pytest.fixture(scope="module")
def issuer() -> Iterator[FakeCiIssuer]:
    with FakeCiIssuer() as fake:
        yield fake


@pytest.fixture
def azure() -> Iterator[FakeAzureOidc]:
    fake = FakeAzureOidc().start()
    yield fake
    fake.stop()


def service_on(platform: type[Platform], env: dict[str, str], streams: Streams) -> CiTokenService:
    return token_service(platform(settings(), env, **streams.kwargs()))


def nothing_secret_in(failure: CiSharkError, *secrets: str) -> None:
    said = failure.diagnostics()
    for secret in secrets:
        assert secret not in said
        for segment in secret.split("."):
            assert len(segment) < 8 or segment not in said


# -- GitHub --------------------------------------------------------------------------------


def github(issuer: FakeCiIssuer, streams: Streams, **env: str) -> CiTokenService:
    return service_on(GitHubPlatform, {"GITHUB_ACTIONS": "true", **env}, streams)


def test_github_asks_for_the_audience_with_the_request_token_masked_first(
    issuer: FakeCiIssuer,
) -> None:
    streams = Streams()
    service = github(issuer, streams, **issuer.environment())
    audience = "https://auth.example/realms/ci?x=a&b c"  # encoded, and read back whole
    try:
        token = service.fetch(audience)
        again = service.fetch(audience)
    finally:
        service.close()

    assert isinstance(token, Secret)
    assert token != again  # a fresh token each time: a server takes each jti once
    assert parts(token.reveal())[1]["aud"] == audience
    assert [served.audience for served in issuer.served[-2:]] == [audience, audience]
    assert issuer.request_token in masked_values(streams.stderr.getvalue())
    assert not service.reused


def test_github_without_id_token_write_names_the_permission(issuer: FakeCiIssuer) -> None:
    with pytest.raises(ConfigError) as refused:
        github(issuer, Streams())
    assert refused.value.exit_code == ExitCode.CONFIG
    assert "`permissions: id-token: write`" in refused.value.message
    assert (
        "(ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set)"
        in refused.value.message
    )
    assert "`id-token: write`" in (refused.value.hint or "")


def test_github_with_one_of_the_two_variables_names_the_one_missing(
    issuer: FakeCiIssuer,
) -> None:
    url = issuer.environment()["ACTIONS_ID_TOKEN_REQUEST_URL"]
    with pytest.raises(ConfigError) as refused:
        github(issuer, Streams(), ACTIONS_ID_TOKEN_REQUEST_URL=url)
    assert "(ACTIONS_ID_TOKEN_REQUEST_TOKEN is not set)" in refused.value.message
    assert "ACTIONS_ID_TOKEN_REQUEST_URL" not in refused.value.message


def test_github_refusing_the_bearer_says_what_the_service_said_and_the_fix(
    issuer: FakeCiIssuer,
) -> None:
    env = {**issuer.environment(), "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "not-this-jobs-token"}
    service = github(issuer, Streams(), **env)
    with pytest.raises(ConfigError) as refused:
        service.fetch(AUDIENCE)
    service.close()
    assert "GitHub's OIDC token service refused the token request (HTTP 403)" in (
        refused.value.message
    )
    assert "bearer token is missing or not valid" in refused.value.message  # its own words
    assert "`id-token: write`" in (refused.value.hint or "")
    nothing_secret_in(refused.value, "not-this-jobs-token")


def test_a_service_that_quotes_the_request_token_has_it_redacted(issuer: FakeCiIssuer) -> None:
    service = github(issuer, Streams(), **issuer.environment())
    issuer.answer_next(403, json.dumps({"message": f"token {issuer.request_token} refused"}))
    with pytest.raises(ConfigError) as refused:
        service.fetch(AUDIENCE)
    service.close()
    assert "token *** refused" in refused.value.message
    nothing_secret_in(refused.value, issuer.request_token)


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_a_service_in_trouble_is_a_transient_failure(issuer: FakeCiIssuer, status: int) -> None:
    service = github(issuer, Streams(), **issuer.environment())
    issuer.answer_next(status, "<html>upstream gone</html>")
    with pytest.raises(TransientFailure, match=rf"answered HTTP {status}: <html>"):
        service.fetch(AUDIENCE)
    service.close()


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        json.dumps({"count": 1}),
        json.dumps({"value": "<b>opaque</b> not-a-jwt"}),
        json.dumps({"value": "a.b"}),
    ],
)
def test_an_answer_that_is_no_token_is_refused_without_quoting_it(
    issuer: FakeCiIssuer, body: str
) -> None:
    service = github(issuer, Streams(), **issuer.environment())
    issuer.answer_next(200, body)
    with pytest.raises(ProtocolError) as refused:
        service.fetch(AUDIENCE)
    service.close()
    assert "opaque" not in refused.value.message
    assert refused.value.exit_code == ExitCode.PROTOCOL


def test_an_unreachable_service_is_a_transient_failure(issuer: FakeCiIssuer) -> None:
    env = issuer.environment()
    env["ACTIONS_ID_TOKEN_REQUEST_URL"] = "http://127.0.0.1:9/idtoken?api-version=2.0"
    service = github(issuer, Streams(), **env)
    with pytest.raises(TransientFailure, match="could not be reached"):
        service.fetch(AUDIENCE)
    service.close()


# -- Azure Pipelines -----------------------------------------------------------------------

AZURE_ENV = {"TF_BUILD": "True"}


def test_azure_posts_with_the_access_token_for_its_one_audience(azure: FakeAzureOidc) -> None:
    streams = Streams()
    service = service_on(AzurePlatform, {**AZURE_ENV, **azure.environment()}, streams)
    token = service.fetch(AZURE_AUDIENCE)
    service.close()

    assert parts(token.reveal())[1]["aud"] == AZURE_AUDIENCE
    (call,) = azure.calls
    assert (call.method, call.query["api-version"]) == ("POST", ["7.1-preview.1"])
    assert call.authorization == f"Bearer {azure.access_token}"
    assert f"##vso[task.setsecret]{azure.access_token}" in streams.all()  # masked first


def test_azure_for_another_audience_is_not_supported_and_asks_nothing(
    azure: FakeAzureOidc,
) -> None:
    service = service_on(AzurePlatform, {**AZURE_ENV, **azure.environment()}, Streams())
    with pytest.raises(ConfigError) as refused:
        service.fetch(AUDIENCE)
    assert "not supported on this CI (azure)" in refused.value.message
    assert AZURE_AUDIENCE in refused.value.message
    assert f"`workload-identity-audience` to {AZURE_AUDIENCE}" in (refused.value.hint or "")
    assert azure.calls == []


def test_azure_without_the_access_token_says_how_to_map_it(azure: FakeAzureOidc) -> None:
    env = {**AZURE_ENV, "SYSTEM_OIDCREQUESTURI": azure.request_uri}
    with pytest.raises(ConfigError) as refused:
        service_on(AzurePlatform, env, Streams())
    assert "SYSTEM_ACCESSTOKEN is not set" in refused.value.message
    assert "SYSTEM_ACCESSTOKEN: $(System.AccessToken)" in (refused.value.hint or "")


def test_azure_refusing_the_access_token_says_so(azure: FakeAzureOidc) -> None:
    env = {**AZURE_ENV, **azure.environment(), "SYSTEM_ACCESSTOKEN": "a-stale-access-token"}
    service = service_on(AzurePlatform, env, Streams())
    with pytest.raises(ConfigError) as refused:
        service.fetch(AZURE_AUDIENCE)
    service.close()
    assert "refused the token request (HTTP 401): TF400813" in refused.value.message
    nothing_secret_in(refused.value, "a-stale-access-token")


# -- Buildkite -----------------------------------------------------------------------------


def buildkite(agent: FakeBuildkiteAgent | None) -> CiTokenService:
    path = (f"{agent.bin}{os.pathsep}" if agent else "") + "/usr/bin:/bin"
    env = {"BUILDKITE": "true", "PATH": path, "BUILDKITE_AGENT_ACCESS_TOKEN": "agent-secret-1"}
    return service_on(BuildkitePlatform, env, Streams())


def test_buildkite_asks_the_agent_for_the_audience_and_reads_stdout(tmp_path: Path) -> None:
    agent = FakeBuildkiteAgent(tmp_path)
    minted = agent.keys.token(AUDIENCE)
    agent.answer(minted)
    token = buildkite(agent).fetch(AUDIENCE)

    assert token.reveal() == minted
    asked = [call for call in agent.calls() if call["argv"][:2] == ["oidc", "request-token"]]
    assert [call["argv"] for call in asked] == [["oidc", "request-token", "--audience", AUDIENCE]]
    assert asked[0]["agent_token"] == "agent-secret-1"  # its credential stays in its env


def test_buildkite_agent_failing_says_its_words_and_tries_again_later(tmp_path: Path) -> None:
    agent = FakeBuildkiteAgent(tmp_path)
    agent.answer(exit_code=1, stderr="fatal: failed to request OIDC token: 403 Forbidden\n")
    with pytest.raises(TransientFailure) as failed:
        buildkite(agent).fetch(AUDIENCE)
    assert "`buildkite-agent oidc request-token` failed (exit 1): fatal: failed to request" in (
        failed.value.message
    )


def test_buildkite_agent_printing_no_token_is_refused(tmp_path: Path) -> None:
    agent = FakeBuildkiteAgent(tmp_path)
    agent.answer("Usage: buildkite-agent oidc request-token [options...]")
    with pytest.raises(ProtocolError, match="not a signed JWT"):
        buildkite(agent).fetch(AUDIENCE)


def test_buildkite_without_the_agent_says_so() -> None:
    with pytest.raises(ConfigError, match="buildkite-agent is not on PATH"):
        buildkite(None)


@pytest.mark.parametrize("entry", ["", ".", "bin"])
def test_a_buildkite_agent_planted_in_the_checkout_is_never_run(
    entry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PATH="::/usr/bin" or ".:/usr/bin" means the working directory: a pull request's own
    # buildkite-agent there would be handed the agent's token and print our CI token.
    planted = FakeBuildkiteAgent(tmp_path)
    monkeypatch.chdir(planted.home / "bin" if entry in ("", ".") else planted.home)
    env = {"BUILDKITE": "true", "PATH": f"{entry}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    with pytest.raises(ConfigError, match="buildkite-agent is not on PATH"):
        service_on(BuildkitePlatform, env, Streams())
    assert planted.calls() == []


# -- GitLab --------------------------------------------------------------------------------


def test_gitlab_reads_the_jobs_one_token_and_reuses_it(issuer: FakeCiIssuer) -> None:
    minted = issuer.mint(AUDIENCE)
    env = {"GITLAB_CI": "true", "CI_SHARK_ID_TOKEN": minted}
    service = service_on(GitLabPlatform, env, Streams())
    first, second = service.fetch(AUDIENCE), service.fetch(AUDIENCE)
    assert first.reveal() == minted
    assert first is second
    assert service.reused


def test_gitlab_without_the_variable_shows_the_id_tokens_block_to_add() -> None:
    service = service_on(GitLabPlatform, {"GITLAB_CI": "true"}, Streams())
    with pytest.raises(ConfigError) as refused:
        service.fetch(AUDIENCE)
    assert "CI_SHARK_ID_TOKEN, and it is not set" in refused.value.message
    hint = refused.value.hint or ""
    assert f"  id_tokens:\n    CI_SHARK_ID_TOKEN:\n      aud: {AUDIENCE}" in hint


def test_gitlab_with_something_else_in_the_variable_refuses_it_unquoted() -> None:
    env = {"GITLAB_CI": "true", "CI_SHARK_ID_TOKEN": "glcbt-not-a-jwt-secretish"}
    service = service_on(GitLabPlatform, env, Streams())
    with pytest.raises(ProtocolError) as refused:
        service.fetch(AUDIENCE)
    nothing_secret_in(refused.value, "glcbt-not-a-jwt-secretish")


# -- anywhere else -------------------------------------------------------------------------


def test_anywhere_else_workload_identity_is_not_supported() -> None:
    with pytest.raises(ConfigError) as refused:
        service_on(Platform, {"CI": "true"}, Streams())
    assert refused.value.exit_code == ExitCode.CONFIG
    assert "workload identity is not supported on this CI (generic)" in refused.value.message
    assert "GitHub Actions, GitLab CI/CD, Buildkite" in refused.value.message
