"""Who approved, and what may count as proof of it (OIDC Core §3.1.3.7 steps 2, 3, 9)."""

from __future__ import annotations

import base64
import json
import time

import pytest

from ci_shark.oauth.identity import from_claims, from_id_token
from ci_shark.oauth.providers import PROVIDERS
from ci_shark.secret import Secret

ISSUER = "https://as.example"


def id_token(claims: dict[str, object]) -> Secret:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    defaults: dict[str, object] = {"iss": ISSUER, "aud": "ci-shark", "exp": time.time() + 300}
    return Secret(f"{part({'alg': 'ES256'})}.{part(defaults | claims)}.c2ln")


def test_id_token_for_another_client_is_no_evidence() -> None:
    token = id_token({"sub": "u1", "aud": "someone-else", "preferred_username": "alice"})
    assert from_id_token(token, client_id="ci-shark", issuer=ISSUER) is None
    mine = from_id_token(
        id_token({"sub": "u1", "aud": ["ci-shark"]}), client_id="ci-shark", issuer=ISSUER
    )
    assert mine is not None
    assert mine.subject == "u1"


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"iss": "https://evil.example"}, id="another-issuer"),
        pytest.param({"iss": None}, id="no-issuer"),
        pytest.param({"exp": time.time() - 3600}, id="expired"),
        pytest.param({"exp": "tomorrow"}, id="exp-not-a-number"),
        pytest.param({"exp": None}, id="no-exp"),
    ],
)
def test_an_id_token_of_another_issuer_or_expired_is_no_evidence(claims: dict[str, object]) -> None:
    token = id_token({"sub": "u1", "preferred_username": "alice", **claims})
    assert from_id_token(token, client_id="ci-shark", issuer=ISSUER) is None


def test_the_issuer_may_differ_by_a_trailing_slash() -> None:
    token = id_token({"sub": "u1", "iss": ISSUER + "/"})
    assert from_id_token(token, client_id="ci-shark", issuer=ISSUER) is not None


def test_a_deeply_nested_id_token_is_no_evidence_not_a_crash() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    payload = base64.urlsafe_b64encode(deep.encode()).rstrip(b"=").decode()
    token = Secret(f"e30.{payload}.c2ln")
    assert from_id_token(token, client_id="ci-shark", issuer=ISSUER) is None


def test_unverified_email_and_nickname_are_not_kept() -> None:
    mallory = from_claims({"sub": "m-1", "email": "alice@corp.example", "nickname": "alice"})
    assert mallory is not None
    assert (mallory.subject, mallory.username, mallory.email) == ("m-1", None, None)
    verified = from_claims({"sub": "a-1", "email": "alice@corp.example", "email_verified": True})
    assert verified is not None
    assert verified.email == "alice@corp.example"


def test_claims_are_kept_raw_and_only_the_display_name_is_made_inert() -> None:
    hostile = from_claims({"sub": "x", "preferred_username": "bob$(touch /tmp/x);`id`"})
    assert hostile is not None
    assert hostile.username == "bob$(touch /tmp/x);`id`"
    assert hostile.display == "bob__touch /tmp/x___id_"


def test_githubs_api_user_names_the_login_and_numeric_id() -> None:
    github = from_claims(
        {"login": "octocat", "id": 583231, "name": "The Maintainer", "email": "o@example.com"},
        PROVIDERS["github"],
    )
    assert github is not None
    assert (github.subject, github.unique_username, github.email) == ("583231", "octocat", None)
    assert github.display == "octocat"


def test_a_forged_preferred_username_does_not_name_a_github_approver() -> None:
    mallory = from_claims(
        {"login": "mallory", "id": 7, "preferred_username": "maintainer"}, PROVIDERS["github"]
    )
    assert mallory is not None
    assert (mallory.unique_username, mallory.display) == ("mallory", "mallory")
    # Other presets have no unique username: only `user:` entries read preferred_username.
    elsewhere = from_claims({"sub": "m-1", "login": "maintainer"})
    assert elsewhere is not None
    assert elsewhere.unique_username is None
