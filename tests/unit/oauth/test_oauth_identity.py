"""Who approved, and what may count as proof of it."""

from __future__ import annotations

import base64
import json

from ci_shark.oauth.identity import from_claims, from_id_token
from ci_shark.secret import Secret


def id_token(claims: dict[str, object]) -> Secret:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return Secret(f"{part({'alg': 'ES256'})}.{part(claims)}.c2ln")


def test_id_token_for_another_client_is_no_evidence() -> None:
    token = id_token({"sub": "u1", "aud": "someone-else", "preferred_username": "alice"})
    assert from_id_token(token, "ci-shark") is None
    mine = from_id_token(id_token({"sub": "u1", "aud": ["ci-shark"]}), "ci-shark")
    assert mine is not None
    assert mine.subject == "u1"


def test_unverified_email_and_nickname_do_not_match() -> None:
    mallory = from_claims(
        {"sub": "m-1", "email": "alice@corp.example", "nickname": "alice"}, "userinfo"
    )
    assert mallory is not None
    assert not mallory.matches(["alice@corp.example", "alice"])
    verified = from_claims(
        {"sub": "a-1", "email": "alice@corp.example", "email_verified": True}, "userinfo"
    )
    assert verified is not None
    assert verified.matches(["Alice@Corp.example"])


def test_names_are_inert_in_outputs() -> None:
    hostile = from_claims({"sub": "x", "preferred_username": "bob$(touch /tmp/x);`id`"}, "u")
    assert hostile is not None
    assert hostile.display == "bob__touch /tmp/x___id_"
