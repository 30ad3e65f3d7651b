"""Workload identity against the standalone sandbox (``python -m ci_shark.sandbox``), over
HTTP: a CI token as RFC 7523 client authentication on the device request, every poll,
refresh and revoke; and every way such a token is refused, each ``invalid_client`` with a
reason a person can act on and never the token.

The CI tokens come from a fake GitHub token service (``FakeCiIssuer``) fetched as a job
would, or are signed by hand with joserfc (tests/support/ci_tokens.py).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from support.ci_tokens import (
    JWT_BEARER,
    CiKeys,
    assert_invalid_client,
    bad_ci_tokens,
    fetch_github_token,
)
from support.sandbox_client import (
    CLIENT_ID,
    WorkloadClient,
    error_of,
    http_client,
    page_token_of,
    standalone,
    standalone_lines,
)

from ci_shark.sandbox import FakeCiIssuer

Mint = Callable[[str], str]  # the sandbox's URL -> a CI token


@pytest.fixture(scope="module")
def issuer() -> Iterator[FakeCiIssuer]:
    with FakeCiIssuer() as fake:
        yield fake


@pytest.fixture(scope="module")
def sandbox(issuer: FakeCiIssuer) -> Iterator[str]:
    """The sandbox as a user starts it, trusting the fake issuer by its JWKS URL."""
    # --interval 0: a poll right after the approval is no slow_down (not what is tested here).
    with standalone(
        "--interval",
        "0",
        "--trust-ci-issuer",
        issuer.jwks_url,
        "--ci-issuer",
        issuer.url,
        "--ci-allow",
        f"{CLIENT_ID}:repository=octo/app",
        "--ci-allow",
        f"{CLIENT_ID}:ref=refs/heads/*",
    ) as url:
        yield url


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with http_client(timeout=10.0) as client:
        yield client


@pytest.fixture
def client(sandbox: str, issuer: FakeCiIssuer, http: httpx.Client) -> WorkloadClient:
    return WorkloadClient(
        sandbox, http, lambda: fetch_github_token(http, issuer.environment(), sandbox)
    )


def approve_on_the_page(http: httpx.Client, link: str, user_code: str) -> None:
    page = http.get(link)
    assert "Verified by this server from the CI" in page.text
    url = link.split("?", 1)[0]
    decision = {"user_code": user_code, "action": "approve", "page_token": page_token_of(page.text)}
    assert http.post(url, data=decision).status_code == 200


def test_a_job_with_its_ci_token_gets_approved_refreshes_and_revokes(
    client: WorkloadClient, issuer: FakeCiIssuer, http: httpx.Client
) -> None:
    served = len(issuer.served)
    start = client.device(binding_message="deploy v1.2.3")
    assert start.status_code == 200, start.text
    device = start.json()
    pending = client.poll(device["device_code"])
    assert error_of(pending) == "authorization_pending"
    approve_on_the_page(http, device["verification_uri_complete"], device["user_code"])
    granted = client.poll(device["device_code"])
    assert granted.status_code == 200, granted.text
    tokens = granted.json()
    assert tokens["token_type"] == "DPoP"
    refreshed = client.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert client.revoke(refreshed.json()["refresh_token"]).status_code == 200
    assert client.refresh(refreshed.json()["refresh_token"]).json()["error"] == "invalid_grant"
    # A fresh CI token for each request, the nonce retries included: none was used twice.
    jtis = [token.jti for token in issuer.served[served:]]
    assert len(jtis) == len(set(jtis)) >= 7


def test_the_retry_after_use_dpop_nonce_needs_a_fresh_ci_token(
    client: WorkloadClient, http: httpx.Client
) -> None:
    device = client.device().json()
    assertion = client.ci_token()
    data = {
        **client.authentication(assertion),
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": device["device_code"],
    }
    client.key.nonce = None
    challenge = client.key.post(http, f"{client.url}/oauth/token", data)
    assert error_of(challenge) == "use_dpop_nonce"
    replay = client.key.post(http, f"{client.url}/oauth/token", data)
    assert_invalid_client(
        replay, assertion, r"already used \(its jti\).*a retry after use_dpop_nonce included"
    )


def test_every_request_of_a_workload_client_needs_its_ci_token(
    client: WorkloadClient, sandbox: str, http: httpx.Client
) -> None:
    bare = http.post(f"{sandbox}/oauth/device", data={"client_id": CLIENT_ID})
    assert_invalid_client(
        bare, "", rf"client '{CLIENT_ID}' must authenticate with its CI's OIDC token"
    )
    assert (
        "client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        in (bare.json()["error_description"])
    )
    assert f"aud {sandbox}" in bare.json()["error_description"]
    device = client.device().json()
    data = {
        "client_id": CLIENT_ID,
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "device_code": device["device_code"],
    }
    poll = client.key.post(http, f"{sandbox}/oauth/token", data)
    assert_invalid_client(poll, "", "must authenticate with its CI's OIDC token")
    approve_on_the_page(http, device["verification_uri_complete"], device["user_code"])
    tokens = client.poll(device["device_code"]).json()
    assert_invalid_client(
        client.revoke(tokens["access_token"], authenticated=False),
        "",
        "must authenticate with its CI's OIDC token to revoke its tokens",
    )
    introspected = http.post(f"{sandbox}/oauth/introspect", data={"token": tokens["access_token"]})
    assert introspected.json()["active"] is True


@pytest.mark.parametrize(
    ("make", "reason"),
    bad_ci_tokens(
        {
            "wrong-aud": r"aud is 'https://github.com/octo', not this server's issuer.*request "
            r"the CI token with audience http://127\.0\.0\.1",
            "expired": r"expired at 2023-11-14T22:18:20Z .*fetch a fresh CI token for each request",
            "tampered": r"signature does not verify with the keys of 'http://127\.0\.0\.1:\d+' "
            r"\(from http://127\.0\.0\.1:\d+/\.well-known/jwks\)",
            "repository-not-allowed": rf"client '{CLIENT_ID}' does not accept this CI identity: "
            rf"repository is 'mallory/app', and the rule is {CLIENT_ID}:repository=octo/app",
            "ref-not-allowed": r"ref is 'refs/tags/v1', and the rule is .*:ref=refs/heads/\*",
            "alg-none": r"alg 'none' is not accepted",
            "hs256-confusion": r"alg 'HS256' is not accepted",
            "another-key": r"signature does not verify",
            "another-issuer": r"issuer is 'https://token\.actions\.githubusercontent\.com'; this "
            r"server trusts",
        }
    ),
)
def test_a_bad_ci_token_is_invalid_client_with_a_reason(
    sandbox: str,
    issuer: FakeCiIssuer,
    http: httpx.Client,
    make: Callable[[FakeCiIssuer, str], str],
    reason: str,
) -> None:
    token = make(issuer, sandbox)
    data = {"client_id": CLIENT_ID, "client_assertion_type": JWT_BEARER, "client_assertion": token}
    response = http.post(f"{sandbox}/oauth/device", data=data)
    assert_invalid_client(response, token, reason)
    assert "device_code" not in response.text


def test_a_replayed_ci_token_is_refused(
    sandbox: str, issuer: FakeCiIssuer, http: httpx.Client
) -> None:
    token = fetch_github_token(http, issuer.environment(), sandbox)
    data = {"client_id": CLIENT_ID, "client_assertion_type": JWT_BEARER, "client_assertion": token}
    assert http.post(f"{sandbox}/oauth/device", data=data).status_code == 200
    assert_invalid_client(
        http.post(f"{sandbox}/oauth/device", data=data), token, r"already used \(its jti\)"
    )


def test_a_jwks_file_an_es256_issuer_and_token_reuse(tmp_path: Path, http: httpx.Client) -> None:
    """GitLab's shape: one token per job, so a server must let it be used again."""
    keys = CiKeys(issuer="https://gitlab.example.com", alg="ES256")
    jwks = keys.write_jwks(tmp_path / "jwks.json")
    flags = ["--trust-ci-issuer", str(jwks), "--ci-issuer", keys.issuer, "--ci-token-reuse"]
    with standalone(*flags, "--ci-allow", "*:project_path=octo/*") as url:
        gitlab_claims = {"project_path": "octo/app", "pipeline_id": "77", "job_id": "88"}
        token = keys.token(url, run_id=None, run_attempt=None, **gitlab_claims)
        data = {"client_id": "any", "client_assertion_type": JWT_BEARER, "client_assertion": token}
        for _ in range(2):
            response = http.post(f"{url}/oauth/device", data=data)
            assert response.status_code == 200, response.text
        page = http.get(response.json()["verification_uri_complete"]).text
        assert "pipeline 77, job 88" in page


def test_the_fake_ci_issuer_beside_the_sandbox(http: httpx.Client) -> None:
    flags = ("--fake-ci-issuer", "--fake-ci-claim", "ref=refs/heads/dev")
    with standalone_lines(*flags, then=3) as (url, lines):
        assert re.fullmatch(
            r"ci_shark fake CI issuer at http://127\.0\.0\.1:\d+, trusted by this sandbox", lines[0]
        )
        environment = dict(line.split("=", 1) for line in lines[1:])
        assert sorted(environment) == [
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            "ACTIONS_ID_TOKEN_REQUEST_URL",
        ]
        client = WorkloadClient(url, http, lambda: fetch_github_token(http, environment, url))
        device = client.device()
        assert device.status_code == 200, device.text
        assert (
            "refs/heads/dev (branch)" in http.get(device.json()["verification_uri_complete"]).text
        )


def test_the_fake_ci_issuer_with_a_repository_the_rules_refuse(http: httpx.Client) -> None:
    flags = (
        "--fake-ci-issuer",
        "--fake-ci-claim",
        "repository=mallory/app",
        "--ci-allow",
        f"{CLIENT_ID}:repository=octo/app",
    )
    with standalone_lines(*flags, then=3) as (url, lines):
        environment = dict(line.split("=", 1) for line in lines[1:])
        token = fetch_github_token(http, environment, url)
        client = WorkloadClient(url, http, lambda: token)
        assert_invalid_client(client.device(), token, r"repository is 'mallory/app'")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--trust-ci-issuer", "jwks.json"], "needs --ci-issuer ISS"),
        (["--trust-ci-issuer", "x", "--ci-issuer", "i"], "needs at least one --ci-allow"),
        (["--fake-ci-issuer", "--ci-allow", "nonsense"], "write CLIENT:CLAIM=GLOB"),
        (
            [
                "--trust-ci-issuer",
                "http://keys.example/jwks",
                "--ci-issuer",
                "i",
                "--ci-allow",
                "a:b=c",
            ],
            "plain http from a loopback host only",
        ),
    ],
)
def test_options_that_cannot_work_exit_2_with_the_fix(flags: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ci_shark.sandbox", "--port", "0", *flags],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert message in done.stderr
