"""The fake CI issuer, over HTTP, as a GitHub job's token fetcher would use it; its tokens
are checked with joserfc against the JWKS it serves, not with the sandbox's own code."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from support.sandbox_client import http_client

from ci_shark.sandbox import FakeCiIssuer


@pytest.fixture(scope="module")
def issuer() -> Iterator[FakeCiIssuer]:
    with FakeCiIssuer() as fake:
        yield fake


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with http_client(timeout=5.0) as client:
        yield client


def fetch(
    http: httpx.Client, issuer: FakeCiIssuer, suffix: str, bearer: str | None
) -> httpx.Response:
    headers = {} if bearer is None else {"Authorization": f"bearer {bearer}"}
    return http.get(issuer.request_url + suffix, headers=headers)


def verified_claims(http: httpx.Client, issuer: FakeCiIssuer, token: str) -> dict[str, object]:
    keys = KeySet.import_key_set(http.get(issuer.jwks_url).json())
    return dict(jwt.decode(token, keys, algorithms=["RS256", "ES256"]).claims)


def test_the_request_url_serves_a_fresh_token_for_the_audience(
    issuer: FakeCiIssuer, http: httpx.Client
) -> None:
    audience = "https://auth.example.com/realms/ci?x=1"
    suffix = "&audience=" + urllib.parse.quote(audience, safe="")
    first = fetch(http, issuer, suffix, issuer.request_token)
    second = fetch(http, issuer, suffix, issuer.request_token)
    assert first.status_code == second.status_code == 200
    tokens = [first.json()["value"], second.json()["value"]]
    claims = [verified_claims(http, issuer, token) for token in tokens]
    assert claims[0]["jti"] != claims[1]["jti"]  # one token per request
    assert [served.jti for served in issuer.served[-2:]] == [c["jti"] for c in claims]
    assert issuer.served[-1].audience == audience
    now = time.time()
    for found in claims:
        assert found["aud"] == audience
        assert found["iss"] == issuer.url
        assert found["sub"] == "repo:octo/app:ref:refs/heads/main"
        assert found["repository"] == "octo/app"
        assert found["repository_owner"] == "octo"
        assert found["workflow_ref"] == "octo/app/.github/workflows/deploy.yml@refs/heads/main"
        assert isinstance(found["exp"], int)
        assert 0 < found["exp"] - now <= 301
        assert found["nbf"] == found["iat"]


def test_without_an_audience_it_is_github_s_default(
    issuer: FakeCiIssuer, http: httpx.Client
) -> None:
    token = fetch(http, issuer, "", issuer.request_token).json()["value"]
    assert verified_claims(http, issuer, token)["aud"] == "https://github.com/octo"


@pytest.mark.parametrize("bearer", [None, "wrong", "x" + "y" * 42])
def test_a_missing_or_wrong_bearer_is_403(
    issuer: FakeCiIssuer, http: httpx.Client, bearer: str | None
) -> None:
    served = len(issuer.served)
    response = fetch(http, issuer, "&audience=x", bearer)
    assert response.status_code == 403
    assert "value" not in response.json()
    assert len(issuer.served) == served


def test_audience_appended_with_a_second_question_mark_is_a_400(
    issuer: FakeCiIssuer, http: httpx.Client
) -> None:
    response = fetch(http, issuer, "?audience=x", issuer.request_token)
    assert response.status_code == 400
    assert "api-version" in response.json()["message"]


def test_metadata_and_unknown_paths(issuer: FakeCiIssuer, http: httpx.Client) -> None:
    document = http.get(f"{issuer.url}/.well-known/openid-configuration").json()
    assert document == {"issuer": issuer.url, "jwks_uri": issuer.jwks_url}
    assert http.get(f"{issuer.url}/nothing").status_code == 404
    assert issuer.environment() == {
        "ACTIONS_ID_TOKEN_REQUEST_URL": issuer.request_url,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": issuer.request_token,
    }
    assert issuer.request_url.endswith("/idtoken?api-version=2.0")


def test_canned_answers_come_first_then_tokens_again(
    issuer: FakeCiIssuer, http: httpx.Client
) -> None:
    issuer.answer_next(500, '{"message":"internal"}')
    assert fetch(http, issuer, "&audience=x", issuer.request_token).status_code == 500
    assert fetch(http, issuer, "&audience=x", issuer.request_token).status_code == 200


def test_mint_overrides_rederive_and_remove(issuer: FakeCiIssuer, http: httpx.Client) -> None:
    claims = verified_claims(
        http, issuer, issuer.mint("aud", repository="mallory/app", exp=123, jti=None)
    )
    assert claims["repository"] == "mallory/app"
    assert claims["sub"] == "repo:mallory/app:ref:refs/heads/main"
    assert claims["exp"] == 123
    assert "jti" not in claims


@pytest.mark.parametrize(
    ("claims", "subject"),
    [
        ({"environment": "production"}, "repo:octo/app:environment:production"),
        ({"event_name": "pull_request", "ref": "refs/pull/7/merge"}, "repo:octo/app:pull_request"),
    ],
)
def test_subject_follows_github_s_default_template(
    http: httpx.Client, claims: dict[str, str], subject: str
) -> None:
    with FakeCiIssuer(claims=claims, alg="ES256") as fake:
        token = fetch(http, fake, "&audience=a", fake.request_token).json()["value"]
        assert verified_claims(http, fake, token)["sub"] == subject


def test_it_stops_and_its_url_goes_with_it() -> None:
    fake = FakeCiIssuer().start()
    url = fake.url
    fake.stop()
    fake.stop()
    with pytest.raises(RuntimeError, match="not started"):
        _ = fake.url
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/.well-known/jwks", timeout=2)
