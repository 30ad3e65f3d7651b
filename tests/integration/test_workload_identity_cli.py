"""Workload identity through the CLI, as a GitHub job runs it: entrypoint.py on simulated
runner files, a fake GitHub token service (``FakeCiIssuer``, the runner's
``ACTIONS_ID_TOKEN_REQUEST_URL``) and the sandbox trusting it, with DPoP nonces required and
each CI token's ``jti`` taken once.

Accepted: the login, and later steps (`refresh`, `request` and its auto-refresh, `revoke`)
that authenticate the same way untold. Refused: a wrong ``aud``, an expired token, a
tampered signature, a replayed ``jti``, a repository the server does not allow, a job
without ``id-token: write``, a CI without a token service, a later step without a CI
token. Each refusal exits non-zero before or at the device
request with a message a person can act on, and no CI token is ever in the output: stdout,
stderr (but for ``::add-mask::``), or any file the step wrote.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.ci_tokens import signed_by, tampered
from support.cli import REPO, CliResult, clean_env, run_cli, run_process
from support.gfm import read
from support.github_fakes import (
    FakeGitHubApi,
    RunnerFiles,
    fake_github_api,
    masked_values,
    pull_request_payload,
)
from support.sandbox_client import WorkloadClient, http_client
from support.seen import as_seen

from ci_shark.sandbox import ClaimRule, FakeCiIssuer, SandboxServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths")

ENTRYPOINT = REPO / "entrypoint.py"
CLIENT_ID = "ci-deploy"
GITHUB_TOKEN = "ghs_workload_identity_test_77"


@pytest.fixture(scope="module")
def issuer() -> Iterator[FakeCiIssuer]:
    with FakeCiIssuer() as fake:
        yield fake


@pytest.fixture
def sandbox(issuer: FakeCiIssuer) -> Iterator[SandboxServer]:
    """The server trusts the fake issuer's keys for the client of octo/app's branches, and
    its DPoP nonce goes stale between polls: each poll is challenged, and its retry must
    carry a fresh CI token."""
    rules = [ClaimRule.parse(f"{CLIENT_ID}:repository=octo/app")]
    rules.append(ClaimRule.parse(f"{CLIENT_ID}:ref=refs/heads/*"))
    with SandboxServer(
        interval_s=1,
        approve_after_s=1.5,
        nonce_ttl_s=0.5,
        trust_ci_issuer=issuer.jwks_url,
        ci_issuer=issuer.url,
        ci_allow=rules,
    ) as server:
        yield server


@pytest.fixture
def api() -> Iterator[FakeGitHubApi]:
    with fake_github_api(token=GITHUB_TOKEN) as fake:
        yield fake


class Job:
    """One GitHub job: its runner files, and its steps run in order."""

    def __init__(self, root: Path, api: FakeGitHubApi, issuer: FakeCiIssuer, auth_url: str):
        self.root = root
        self.files = RunnerFiles.create(root, pull_request_payload(7))
        env = clean_env(self.files.env(event_name="pull_request", api_url=api.url))
        env.pop("PYTHONPATH", None)  # entrypoint.py finds ci_shark beside itself
        self.env = {**env, **issuer.environment()}  # `permissions: id-token: write`
        self.inputs = {
            "CI_SHARK_AUTH_URL": auth_url,
            "CI_SHARK_CLIENT_ID": CLIENT_ID,
            "CI_SHARK_SCOPE": "openid deploy:write",
            "CI_SHARK_TIMEOUT": "30",
            "CI_SHARK_GITHUB_TOKEN": GITHUB_TOKEN,
            "CI_SHARK_WORKLOAD_IDENTITY": "true",
        }
        self.steps: list[CliResult] = []

    def login(self, **inputs: str) -> CliResult:
        env = {**self.env, **self.inputs, **inputs}
        return self._ran(run_process([sys.executable, str(ENTRYPOINT)], env, cwd=self.root))

    def later(self, *args: str) -> CliResult:
        """A later `run:` step: the runner's variables, none of the action's inputs."""
        env = {**self.env, "PYTHONPATH": str(REPO)}
        return self._ran(run_cli(list(args), env, cwd=self.root))

    def _ran(self, step: CliResult) -> CliResult:
        self.steps.append(step)
        return step

    def written(self) -> str:
        """Every file the steps left in the job's folders."""
        return "\n".join(
            path.read_text(errors="replace") for path in self.root.rglob("*") if path.is_file()
        )


def assert_no_ci_token_shown(job: Job, issuer: FakeCiIssuer) -> None:
    for step in job.steps:
        masked = set(masked_values(step.stderr))
        for line in step.log.splitlines():
            for token in signed_by(issuer.url, line):
                assert line == f"::add-mask::{token}", f"a CI token printed: {line[:60]}"
                assert token in masked
    assert signed_by(issuer.url, job.written()) == [], "a CI token was written to a file"


def test_a_login_authenticated_by_the_ci_token_and_its_later_steps(
    sandbox: SandboxServer, issuer: FakeCiIssuer, api: FakeGitHubApi, tmp_path: Path
) -> None:
    job = Job(tmp_path, api, issuer, sandbox.url)
    served_before = len(issuer.served)

    login = job.login()

    assert login.returncode == 0, login.log
    (grant,) = sandbox.grants
    assert grant.ci_claims is not None
    assert grant.ci_claims["repository"] == "octo/app"
    # One fresh token per request that authenticated the client: the device request and
    # every token request, each nonce challenge's retry included (the sandbox takes a jti
    # once, and demands a DPoP nonce before it redeems).
    client_requests = [
        r for r in sandbox.stats.requests if r.path in ("/oauth/device", "/oauth/token")
    ]
    assert sandbox.stats.nonce_challenges >= 1
    assert len(issuer.served) - served_before == len(client_requests)
    assert {served.audience for served in issuer.served[served_before:]} == {sandbox.url}
    assert f"authenticating with the CI's OIDC token for {sandbox.url}" in login.stderr
    assert "subject repo:octo/app:ref:refs/heads/main" in login.stderr

    # The PR comment shows the claims apart, under who vouches for them, as GitHub renders.
    (comment,) = api.comments_on(7)
    paragraphs = [" ".join(p.split()) for p in read(comment["body"]).text.split("\n")]
    (proved,) = [p for p in paragraphs if p.startswith("Proved to the server by the CI's OIDC")]
    assert "repository octo/app" in proved
    assert "ref refs/heads/main" in proved
    assert "triggered by octocat" in proved

    credentials = json.loads((job.files.temp / "ci-shark.json").read_text())
    assert credentials["SHARK_CLIENT_AUTH"] == "workload_identity"
    assert credentials["SHARK_WORKLOAD_IDENTITY_AUDIENCE"] == sandbox.url

    # Later steps see no inputs: they authenticate as the login did, with tokens of their own.
    served_before = len(issuer.served)
    refreshed = job.later("refresh")
    assert refreshed.returncode == 0, refreshed.log
    userinfo = job.later("request", f"{sandbox.url}/userinfo")
    assert userinfo.returncode == 0, userinfo.log
    assert json.loads(userinfo.stdout)["sub"]
    revoked = job.later("revoke")
    assert revoked.returncode == 0, revoked.log
    assert "revoked the refresh token" in revoked.stderr
    assert len(issuer.served) > served_before  # refresh and revoke each fetched their own
    revocations = [r for r in sandbox.stats.requests if r.path == "/oauth/revoke"]
    assert [r.outcome for r in revocations] == ["revoked", "revoked"]

    assert_no_ci_token_shown(job, issuer)


def test_requests_auto_refresh_authenticates_with_a_ci_token_of_its_own(
    issuer: FakeCiIssuer, api: FakeGitHubApi, tmp_path: Path
) -> None:
    """`ci-shark request` in a later step finds the token due and refreshes it first: with
    a fresh CI token, untold, as the login authenticated."""
    rules = [ClaimRule.parse(f"{CLIENT_ID}:repository=octo/app")]
    with SandboxServer(
        approve_after_s=1,
        access_token_ttl_s=4,  # due at half its life
        trust_ci_issuer=issuer.jwks_url,
        ci_issuer=issuer.url,
        ci_allow=rules,
    ) as sandbox:
        job = Job(tmp_path, api, issuer, sandbox.url)
        assert job.login().returncode == 0
        time.sleep(2.5)
        served_before = len(issuer.served)

        called = job.later("request", f"{sandbox.url}/api/echo")

        assert called.returncode == 0, called.log
        assert "refreshing it" in called.stderr
        outcomes = [r.outcome for r in sandbox.stats.requests if r.path == "/oauth/token"]
        assert outcomes[-1] == "refreshed"
        fetched = issuer.served[served_before:]
        assert {token.audience for token in fetched} == {sandbox.url}  # one at least
    assert_no_ci_token_shown(job, issuer)


Setup = Callable[[FakeCiIssuer, SandboxServer], dict[str, str]]


def wrong_audience(issuer: FakeCiIssuer, sandbox: SandboxServer) -> dict[str, str]:
    return {"CI_SHARK_WORKLOAD_IDENTITY_AUDIENCE": "https://github.com/octo"}


def tampered_signature(issuer: FakeCiIssuer, sandbox: SandboxServer) -> dict[str, str]:
    forged = tampered(issuer.mint(sandbox.url), sha="0" * 40)  # the signature is the old one
    issuer.answer_next(200, json.dumps({"value": forged}))
    return {}


def replayed_jti(issuer: FakeCiIssuer, sandbox: SandboxServer) -> dict[str, str]:
    token = issuer.mint(sandbox.url)
    with http_client(timeout=10) as http:  # someone used it first
        first = WorkloadClient(sandbox.url, http, lambda: token)
        first_use = http.post(
            f"{sandbox.url}/oauth/device",
            data={**first.authentication(token), "client_id": CLIENT_ID},
        )
        assert first_use.status_code == 200, first_use.text
    issuer.answer_next(200, json.dumps({"value": token}))
    return {}


def repository_not_allowed(issuer: FakeCiIssuer, sandbox: SandboxServer) -> dict[str, str]:
    issuer.answer_next(
        200, json.dumps({"value": issuer.mint(sandbox.url, repository="mallory/app")})
    )
    return {}


def other_audiences_too(issuer: FakeCiIssuer, sandbox: SandboxServer) -> dict[str, str]:
    token = issuer.mint([sandbox.url, "https://vault.example"])  # as a GitLab `aud:` list
    issuer.answer_next(200, json.dumps({"value": token}))
    return {}


def expired(issuer: FakeCiIssuer, sandbox: SandboxServer) -> dict[str, str]:
    now = int(time.time())
    token = issuer.mint(sandbox.url, iat=now - 900, nbf=now - 900, exp=now - 600)
    issuer.answer_next(200, json.dumps({"value": token}))
    return {}


@pytest.mark.parametrize(
    ("setup", "code", "said", "at_the_server"),
    [
        pytest.param(
            wrong_audience,
            2,
            r"client_assertion aud is 'https://github\.com/octo', not this server's issuer "
            r"'http://127\.0\.0\.1:\d+': request the CI token with audience",
            True,
            id="wrong-aud",
        ),
        pytest.param(
            other_audiences_too,
            2,
            r"client_assertion aud names other audiences too \(.*\): any of them could present "
            r"it here",
            True,
            id="other-audiences-too",
        ),
        pytest.param(
            expired,
            2,
            r"the CI's OIDC token expired at .* UTC",
            False,
            id="expired",
        ),
        pytest.param(
            tampered_signature,
            2,
            r"the CI token's signature does not verify with the keys of",
            True,
            id="tampered-signature",
        ),
        pytest.param(
            replayed_jti,
            2,
            r"this CI token was already used \(its jti\): fetch a fresh CI token",
            True,
            id="replayed-jti",
        ),
        pytest.param(
            repository_not_allowed,
            2,
            rf"client '{CLIENT_ID}' does not accept this CI identity: repository is "
            r"'mallory/app', and the rule is ci-deploy:repository=octo/app",
            True,
            id="repository-not-allowed",
        ),
    ],
)
def test_a_ci_token_the_server_would_not_take_ends_the_login_before_any_code(
    sandbox: SandboxServer,
    issuer: FakeCiIssuer,
    api: FakeGitHubApi,
    tmp_path: Path,
    setup: Setup,
    code: int,
    said: str,
    at_the_server: bool,
) -> None:
    job = Job(tmp_path, api, issuer, sandbox.url)
    inputs = setup(issuer, sandbox)
    grants_before, requests_before = len(sandbox.grants), len(sandbox.stats.requests)

    login = job.login(**inputs)

    assert login.returncode == code, login.log
    errors = [line for line in login.stderr.splitlines() if line.startswith("::error ")]
    assert errors, login.stderr
    assert re.search(said, "\n".join(errors)), errors
    if at_the_server:  # the fix points at the server's reason, and at the input for an aud
        (fix,) = [line for line in login.stderr.splitlines() if "  fix: " in line]
        assert "`workload-identity-audience`" in fix
    assert len(sandbox.grants) == grants_before  # no device code exists
    asked = sandbox.stats.requests[requests_before:]
    device = [r.outcome for r in asked if r.path == "/oauth/device"]
    assert device == (["invalid_client"] if at_the_server else [])
    assert job.files.outputs() == {"status": "error"}
    assert api.comments_on(7) == []
    assert_no_ci_token_shown(job, issuer)


def test_a_job_without_id_token_write_is_told_to_add_it(
    sandbox: SandboxServer, issuer: FakeCiIssuer, api: FakeGitHubApi, tmp_path: Path
) -> None:
    job = Job(tmp_path, api, issuer, sandbox.url)
    for name in ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"):
        del job.env[name]

    login = job.login()

    assert login.returncode == 2, login.log
    assert "`permissions: id-token: write`" in login.stderr
    assert sandbox.stats.requests == ()
    assert job.files.outputs() == {"status": "error"}


def test_a_later_step_without_the_ci_token_is_told_it_needs_one_not_to_turn_it_off(
    sandbox: SandboxServer, issuer: FakeCiIssuer, api: FakeGitHubApi, tmp_path: Path
) -> None:
    """`workload-identity` cannot be turned off for a later step: it authenticates as the
    login did, whatever its settings say. The fix names the login and the permission."""
    job = Job(tmp_path, api, issuer, sandbox.url)
    assert job.login().returncode == 0
    for name in ("ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"):
        del job.env[name]  # a step (or job) without `id-token: write`
    asked_before = len(sandbox.stats.requests)

    refreshed = job.later("refresh")

    assert refreshed.returncode == 2, refreshed.log
    (fix,) = [line for line in refreshed.stderr.splitlines() if "  fix: " in line]
    assert "turn `workload-identity`" not in fix
    assert "SHARK_CLIENT_AUTH=workload_identity" in fix
    assert "`permissions: id-token: write`" in refreshed.stderr
    assert "/oauth/token" not in [r.path for r in sandbox.stats.requests[asked_before:]]
    assert_no_ci_token_shown(job, issuer)


def test_a_ci_without_a_token_service_is_not_supported(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    env = clean_env(
        {
            "CI": "true",
            "CI_SHARK_AUTH_URL": sandbox.url,
            "CI_SHARK_CLIENT_ID": CLIENT_ID,
            "CI_SHARK_WORKLOAD_IDENTITY": "true",
            "CI_SHARK_OUTPUT_FILE": str(tmp_path / "out.env"),
        }
    )
    login = run_cli([], env, cwd=tmp_path)
    assert login.returncode == 2, login.log
    assert "workload identity is not supported on this CI (generic)" in login.stderr
    assert "fix: turn `workload-identity` (CI_SHARK_WORKLOAD_IDENTITY / " in login.stderr
    assert sandbox.stats.requests == ()


def test_an_approval_refused_by_policy_is_revoked_with_a_ci_token_too(
    sandbox: SandboxServer, issuer: FakeCiIssuer, api: FakeGitHubApi, tmp_path: Path
) -> None:
    """Flow rule 7 with workload identity: the sandbox revokes a CI-authenticated client's
    tokens only for a request that proves the same CI identity."""
    job = Job(tmp_path, api, issuer, sandbox.url)

    login = job.login(CI_SHARK_ALLOWED_APPROVERS="sub:someone-else")

    assert login.returncode == 6, login.log
    assert "the tokens it issued were revoked" in login.stderr
    revocations = [r.outcome for r in sandbox.stats.requests if r.path == "/oauth/revoke"]
    assert revocations == ["revoked", "revoked"]
    assert_no_ci_token_shown(job, issuer)


def test_a_branch_that_only_looks_like_main_is_not_shown_as_main(
    sandbox: SandboxServer, issuer: FakeCiIssuer, api: FakeGitHubApi, tmp_path: Path
) -> None:
    """Anyone who may push can create `main` plus a zero-width space: another branch, with
    its own workflow file. The server's rule (refs/heads/*) takes it, and its CI token is
    genuine: the approver's only defence is reading the ref, which must not read `main`."""
    job = Job(tmp_path, api, issuer, sandbox.url)
    branch = "refs/heads/main\u200b"
    issuer.answer_next(200, json.dumps({"value": issuer.mint(sandbox.url, ref=branch)}))

    login = job.login()

    assert login.returncode == 0, login.log
    (grant,) = sandbox.grants
    assert grant.ci_claims is not None
    assert grant.ci_claims["ref"] == branch  # the server verified that branch
    (comment,) = api.comments_on(7)
    shown = {as_seen(code) for code in read(comment["body"]).code}
    assert "refs/heads/main" not in shown
    assert "repo:octo/app:ref:refs/heads/main" not in shown
    (subject_line,) = [line for line in login.stderr.splitlines() if "(subject " in line]
    assert "refs/heads/main)" not in as_seen(subject_line)
