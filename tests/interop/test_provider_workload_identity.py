"""Workload identity on node oidc-provider, by hand (httpx, joserfc proofs, no ci_shark code).

provider.mjs takes the CI's OIDC token in the RFC 7523 fields (client_assertion_type +
client_assertion) on the device authorization request, as a verified device-request
parameter (extraParams), and shows its claims on the confirmation page (deviceInfo,
userCodeConfirmSource). oidc-provider cannot take it as client authentication: see
docs/compatibility.md. The tokens come from the fake GitHub token service the provider
trusts (conftest.py's ``ci_issuer``), fetched as a job would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from approver import Approver, approve
from github_runner import PR_NUMBER, github_step, link_from_pr_comment
from oidc_peer import CLIENT_ID, SCOPE, WI_CLIENT_ID, ProviderServer
from support.ci_tokens import (
    JWT_BEARER,
    assert_invalid_client,
    bad_ci_tokens,
    fetch_github_token,
)
from support.dpop_proofs import DpopKey

from ci_shark.sandbox import FakeCiIssuer

pytestmark = pytest.mark.interop

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
VERIFIED = "Verified by this server from the CI\u2019s OIDC token"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def assertion_fields(token: str) -> dict[str, str]:
    return {"client_assertion_type": JWT_BEARER, "client_assertion": token}


def start(
    http: httpx.Client, provider: ProviderServer, token: str | None, client_id: str = WI_CLIENT_ID
) -> httpx.Response:
    data = {"client_id": client_id, "scope": SCOPE, **(assertion_fields(token) if token else {})}
    return http.post(
        provider.device_authorization_endpoint, data=data, headers={"Accept": "application/json"}
    )


def test_a_ci_token_starts_the_flow_and_the_page_shows_its_verified_claims(
    provider: ProviderServer, ci_issuer: FakeCiIssuer, http: httpx.Client
) -> None:
    token = fetch_github_token(http, ci_issuer.environment(), provider.issuer)
    response = start(http, provider, token)
    assert response.status_code == 200, response.text
    device = response.json()
    with Approver() as maintainer:
        page = maintainer.open_code(device["verification_uri_complete"], device["user_code"])
        verified, sent = page.text.split("Sent by the client, not verified")
        assert VERIFIED in verified
        for fact in ("ci-shark-wi", "octo/app", "refs/heads/main", "octocat (push)", ci_issuer.url):
            assert fact in verified
        assert "repo:octo/app:ref:refs/heads/main" in verified
        assert SCOPE in sent
        assert token not in page.text
        assert "client_assertion" not in page.text
        approve(device["verification_uri_complete"], device["user_code"], approver=maintainer)
    key = DpopKey()
    data = {"grant_type": DEVICE_GRANT, "device_code": device["device_code"]}
    data["client_id"] = WI_CLIENT_ID
    granted = None
    for _ in range(2):  # the first answer asks for a DPoP nonce
        # Polls carry a fresh CI token as a client would; oidc-provider ignores the fields.
        fresh = fetch_github_token(http, ci_issuer.environment(), provider.issuer)
        granted = key.post(http, provider.token_endpoint, {**data, **assertion_fields(fresh)})
        if granted.json().get("error") != "use_dpop_nonce":
            break
    assert granted is not None
    assert granted.status_code == 200, granted.text
    assert granted.json()["token_type"] == "DPoP"
    assert token not in provider.log_path.read_text()


def test_the_workload_client_needs_a_ci_token(provider: ProviderServer, http: httpx.Client) -> None:
    response = start(http, provider, None)
    assert_invalid_client(
        response, "", rf"client '{WI_CLIENT_ID}' must authenticate with its CI's OIDC token"
    )
    assert f"aud {provider.issuer}" in response.json()["error_description"]


def test_a_client_no_rule_names_takes_no_ci_token_but_works_without(
    provider: ProviderServer, ci_issuer: FakeCiIssuer, http: httpx.Client
) -> None:
    token = ci_issuer.mint(provider.issuer)
    assert_invalid_client(
        start(http, provider, token, CLIENT_ID), token, "accepts no CI token on this server"
    )
    assert start(http, provider, None, CLIENT_ID).status_code == 200


@pytest.mark.parametrize(
    ("make", "reason"),
    bad_ci_tokens(
        {
            "wrong-aud": r"aud is 'https://github.com/octo', not this server's issuer",
            "other-audiences-too": r"aud names other audiences too \(.*\): any of them could "
            r"present it here",
            "expired": r"expired at 2023-11-14T22:18:20\.000Z",
            "tampered": r"signature does not verify",
            "repository-not-allowed": rf"client '{WI_CLIENT_ID}' does not accept this CI "
            r"identity: repository is 'mallory/app'",
            "alg-none": r"alg 'none' is not accepted",
            "hs256-confusion": r"alg 'HS256' is not accepted",
            "another-issuer": r"issuer is 'https://token\.actions\.githubusercontent\.com'",
        }
    ),
)
def test_a_bad_ci_token_is_invalid_client(
    provider: ProviderServer,
    ci_issuer: FakeCiIssuer,
    http: httpx.Client,
    make: Callable[[FakeCiIssuer, str], str],
    reason: str,
) -> None:
    token = make(ci_issuer, provider.issuer)
    response = start(http, provider, token)
    assert_invalid_client(response, token, reason)
    assert token not in provider.log_path.read_text()


def test_a_replayed_ci_token_is_refused(
    provider: ProviderServer, ci_issuer: FakeCiIssuer, http: httpx.Client
) -> None:
    token = fetch_github_token(http, ci_issuer.environment(), provider.issuer)
    assert start(http, provider, token).status_code == 200
    assert_invalid_client(start(http, provider, token), token, r"already used \(its jti\)")


def test_metadata_still_offers_only_the_methods_it_can_check(provider: ProviderServer) -> None:
    """The CI token is not client authentication here, and the metadata does not claim it."""
    methods: Any = provider.metadata["token_endpoint_auth_methods_supported"]
    assert sorted(methods) == ["client_secret_basic", "none"]


# --------------------------------------------------------------------------- our client


def test_our_job_starts_the_flow_with_its_ci_token_and_the_page_shows_the_claims(
    provider: ProviderServer, ci_issuer: FakeCiIssuer, ci_shark_cli: list[str], tmp_path: Path
) -> None:
    """entrypoint.py as a GitHub job with `id-token: write` (the fake token service stands in
    for the runner's): the device request carries a CI token for the provider's issuer, the
    provider verifies it and shows its claims, and a maintainer approves."""
    served_before = len(ci_issuer.served)
    wi = {"CI_SHARK_CLIENT_ID": WI_CLIENT_ID, "CI_SHARK_WORKLOAD_IDENTITY": "true"}
    with github_step(provider, tmp_path, **wi, **ci_issuer.environment()) as (job, files, api):
        link, code, comment = link_from_pr_comment(api, job)
        # What the job says, and what the CI's token proves, apart in the comment...
        assert "Proved to the server by the CI" in comment
        with Approver() as maintainer:
            # ...and the provider's own page shows what it verified.
            page = maintainer.open_code(link, code)
            verified, _ = page.text.split("Sent by the client, not verified")
            assert VERIFIED in verified
            for fact in (WI_CLIENT_ID, "octo/app", "refs/heads/main", ci_issuer.url):
                assert fact in verified
            approve(link, code, approver=maintainer)
        rc = job.wait(60)
        assert rc == 0, job.transcript()
        assert files.outputs()["token-type"] == "DPoP"
        log = job.stdout + job.stderr

    served = ci_issuer.served[served_before:]
    assert {token.audience for token in served} == {provider.issuer}
    assert len({token.jti for token in served}) == len(served) >= 2  # device request + polls
    assert f"authenticating with the CI's OIDC token for {provider.issuer}" in log
    for line in log.splitlines():  # a CI token is only ever a mask command
        assert "eyJ" not in line or line.startswith("::add-mask::"), line[:80]
    assert "eyJ" not in provider.log_path.read_text()


def test_our_job_with_a_ci_token_the_provider_refuses_ends_before_any_code(
    provider: ProviderServer, ci_issuer: FakeCiIssuer, ci_shark_cli: list[str], tmp_path: Path
) -> None:
    ci_issuer.answer_next(200, json.dumps({"value": ci_issuer.mint(provider.issuer, ref="x")}))
    wi = {"CI_SHARK_CLIENT_ID": WI_CLIENT_ID, "CI_SHARK_WORKLOAD_IDENTITY": "true"}
    with github_step(provider, tmp_path, **wi, **ci_issuer.environment()) as (job, files, api):
        rc = job.wait(30)
        assert rc == 2, job.transcript()
        assert "does not accept this CI identity: ref is 'x'" in job.stderr
        assert files.outputs() == {"status": "error"}
        assert api.comments_on(PR_NUMBER) == []
