"""The sandbox's verifier of CI tokens as client assertions (RFC 7523), without a server.

Tokens are signed with joserfc (tests/support/ci_tokens.py), never with the sandbox's own
JOSE code; time is given to each check, so skew edges are exact.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import RSAKey
from support.ci_tokens import (
    JWT_BEARER,
    CiKeys,
    b64url,
    hmac_confused,
    parts,
    tampered,
    unsigned,
)

from ci_shark.sandbox.assertions import AssertionChecks, AssertionRefused
from ci_shark.sandbox.ci_trust import CiTrust, ClaimRule
from ci_shark.sandbox.jwks import IssuerKeys, JwksError, parse_jwks

AUDIENCE = "http://127.0.0.1:8787"
NOW = 1_750_000_000.0
RULES = ("ci-shark:repository=octo/app", "ci-shark:ref=refs/heads/*")


def trust_for(
    keys: CiKeys, *rules: str, token_reuse: bool = False, issuer: str | None = None
) -> CiTrust:
    key_set = IssuerKeys(parse_jwks(json.dumps(keys.jwks()).encode()), source="the test JWKS")
    checks = AssertionChecks(
        issuer=lambda: issuer or keys.issuer, keys=key_set, token_reuse=token_reuse
    )
    return CiTrust(checks, [ClaimRule.parse(rule) for rule in rules or RULES])


def authenticate(trust: CiTrust, token: str, client_id: str = "ci-shark", now: float = NOW) -> str:
    """The refusal's reason; fails the test when the token is accepted."""
    with pytest.raises(AssertionRefused) as refused:
        trust.authenticate(client_id, JWT_BEARER, token, audience=AUDIENCE, now=now)
    reason = refused.value.reason
    for segment in token.split("."):
        assert not segment or segment not in reason  # never the token, nor a part of it
    return reason


@pytest.fixture(scope="module", params=["RS256", "ES256"])
def keys(request: pytest.FixtureRequest) -> CiKeys:
    return CiKeys(alg=request.param)


# --------------------------------------------------------------------------- accepted


def test_a_fresh_token_of_an_allowed_run_authenticates(keys: CiKeys) -> None:
    trust = trust_for(keys)
    token = keys.token(AUDIENCE, now=NOW)
    identity = trust.authenticate("ci-shark", JWT_BEARER, token, audience=AUDIENCE, now=NOW)
    assert identity.issuer == keys.issuer
    assert identity.claims["repository"] == "octo/app"
    assert identity.claims["sub"] == "repo:octo/app:ref:refs/heads/main"


def test_an_audience_list_of_this_server_alone_is_accepted(keys: CiKeys) -> None:
    token = keys.token([AUDIENCE], now=NOW)
    trust_for(keys).authenticate("ci-shark", JWT_BEARER, token, audience=AUDIENCE, now=NOW)


def test_skew_of_sixty_seconds_either_way(keys: CiKeys) -> None:
    trust = trust_for(keys)
    expired_just_now = keys.token(AUDIENCE, now=NOW - 300 - 59)  # exp = NOW - 59
    trust.authenticate("ci-shark", JWT_BEARER, expired_just_now, audience=AUDIENCE, now=NOW)
    from_the_near_future = keys.token(AUDIENCE, now=NOW + 59)  # iat = nbf = NOW + 59
    trust.authenticate("ci-shark", JWT_BEARER, from_the_near_future, audience=AUDIENCE, now=NOW)


# --------------------------------------------------------------------------- refused


def test_a_token_for_other_audiences_too_is_refused(keys: CiKeys) -> None:
    """Audience injection (draft-ietf-oauth-rfc7523bis): each audience of a token may
    present it as the client to the others; a GitLab `aud:` list does that. This server
    must be the sole audience."""
    token = keys.token(["https://vault.example", AUDIENCE], now=NOW)
    reason = authenticate(trust_for(keys), token)
    assert "other audiences too" in reason
    assert f"request the CI token with audience {AUDIENCE} alone" in reason


def test_wrong_audience_names_the_audience_to_ask_for(keys: CiKeys) -> None:
    reason = authenticate(trust_for(keys), keys.token("https://github.com/octo", now=NOW))
    assert "'https://github.com/octo'" in reason
    assert f"request the CI token with audience {AUDIENCE}" in reason


def test_expired_token_says_when_and_to_fetch_a_fresh_one(keys: CiKeys) -> None:
    reason = authenticate(trust_for(keys), keys.token(AUDIENCE, now=NOW - 300 - 61))
    assert "expired at 2025-06-15T15:05:39Z" in reason
    assert "fetch a fresh CI token for each request" in reason


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"nbf": NOW + 61}, "not valid before"),
        ({"iat": NOW + 61}, "issued in the future"),
        ({"exp": None}, "has no exp"),
        ({"exp": "tomorrow"}, "exp must be a number"),
        ({"jti": None}, "has no jti"),
    ],
)
def test_time_claims_and_jti_are_required_and_checked(
    keys: CiKeys, claims: dict[str, object], expected: str
) -> None:
    assert expected in authenticate(trust_for(keys), keys.token(AUDIENCE, now=NOW, **claims))


def test_a_replayed_token_is_refused_and_reuse_can_be_allowed(keys: CiKeys) -> None:
    token = keys.token(AUDIENCE, now=NOW)
    strict = trust_for(keys)
    strict.authenticate("ci-shark", JWT_BEARER, token, audience=AUDIENCE, now=NOW)
    reason = authenticate(strict, token, now=NOW + 1)
    assert "already used" in reason
    assert "a retry after use_dpop_nonce included" in reason
    lenient = trust_for(keys, token_reuse=True)
    for _ in range(2):
        lenient.authenticate("ci-shark", JWT_BEARER, token, audience=AUDIENCE, now=NOW)


def test_a_token_refused_by_policy_does_not_burn_its_jti(keys: CiKeys) -> None:
    token = keys.token(AUDIENCE, now=NOW)
    trust = trust_for(keys)
    authenticate(trust, token, client_id="other-client")
    trust.authenticate("ci-shark", JWT_BEARER, token, audience=AUDIENCE, now=NOW)


def test_a_tampered_payload_does_not_verify(keys: CiKeys) -> None:
    token = tampered(keys.token(AUDIENCE, now=NOW), repository="octo/app", ref="refs/heads/evil")
    reason = authenticate(trust_for(keys), token)
    assert "signature does not verify" in reason
    assert "from the test JWKS" in reason


def test_a_token_signed_by_another_key_with_the_same_kid_does_not_verify(keys: CiKeys) -> None:
    impostor = CiKeys(alg=keys.alg)
    token = impostor.token(AUDIENCE, now=NOW, header={"kid": keys.kid})
    assert "signature does not verify" in authenticate(trust_for(keys), token)


def test_alg_none_is_refused_before_any_key(keys: CiKeys) -> None:
    reason = authenticate(trust_for(keys), unsigned(keys.token(AUDIENCE, now=NOW)))
    assert "alg 'none' is not accepted" in reason


def test_hs256_keyed_with_the_issuers_public_key_is_refused() -> None:
    """Algorithm confusion: the attacker knows the public key, so an HMAC keyed with it
    would 'verify' in a library that lets the header choose the algorithm."""
    keys = CiKeys(alg="RS256")
    public = RSAKey.import_key(keys.public_jwk())
    for secret in (public.as_pem(private=False), json.dumps(keys.public_jwk()).encode()):
        token = hmac_confused(keys.token(AUDIENCE, now=NOW), secret)
        assert "alg 'HS256' is not accepted" in authenticate(trust_for(keys), token)


def test_another_issuer_is_named_and_refused(keys: CiKeys) -> None:
    gitlab = CiKeys(issuer="https://gitlab.example", alg=keys.alg)
    reason = authenticate(trust_for(keys), gitlab.token(AUDIENCE, now=NOW))
    assert "issuer is 'https://gitlab.example'" in reason
    assert f"trusts CI tokens from '{keys.issuer}' only" in reason


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda token: "not-a-jwt", "not a signed JWT"),
        (lambda token: token + ".more", "not a signed JWT"),
        (lambda token: "e30." + token.split(".", 1)[1], "has no alg"),
        (lambda token: "!!!." + token.split(".", 1)[1], "not a well-formed JWT"),
        (lambda token: token + "A" * 17_000, "longer than"),
    ],
)
def test_malformed_assertions_are_refused(
    keys: CiKeys, make: Callable[[str], str], expected: str
) -> None:
    assert expected in authenticate(trust_for(keys), make(keys.token(AUDIENCE, now=NOW)))


def test_assertion_type_must_be_jwt_bearer(keys: CiKeys) -> None:
    trust = trust_for(keys)
    with pytest.raises(AssertionRefused, match="client_assertion_type must be urn:ietf"):
        trust.authenticate(
            "ci-shark", "jwt", keys.token(AUDIENCE, now=NOW), audience=AUDIENCE, now=NOW
        )
    with pytest.raises(AssertionRefused, match="client_assertion is missing"):
        trust.authenticate("ci-shark", JWT_BEARER, None, audience=AUDIENCE, now=NOW)


# --------------------------------------------------------------------------- the policy


def test_a_repository_the_rules_do_not_allow_is_refused_with_the_rule(keys: CiKeys) -> None:
    token = keys.token(AUDIENCE, now=NOW, repository="mallory/app")
    reason = authenticate(trust_for(keys), token)
    assert reason == (
        "client 'ci-shark' does not accept this CI identity: repository is 'mallory/app', "
        "and the rule is ci-shark:repository=octo/app"
    )


@pytest.mark.parametrize(
    ("ref", "allowed"),
    [
        ("refs/heads/main", True),
        ("refs/heads/release/1.2", True),  # * spans /
        ("refs/tags/v1", False),
        ("REFS/HEADS/MAIN", False),  # case-sensitive
    ],
)
def test_ref_globs(keys: CiKeys, ref: str, allowed: bool) -> None:
    trust = trust_for(keys)
    token = keys.token(AUDIENCE, now=NOW, ref=ref)
    if allowed:
        trust.authenticate("ci-shark", JWT_BEARER, token, audience=AUDIENCE, now=NOW)
    else:
        assert "ref is " in authenticate(trust, token)


def test_a_missing_or_non_string_claim_breaks_its_rule(keys: CiKeys) -> None:
    trust = trust_for(keys)
    assert "has no ref claim" in authenticate(trust, keys.token(AUDIENCE, now=NOW, ref=None))
    assert "ref is not a string" in authenticate(trust, keys.token(AUDIENCE, now=NOW, ref=["x"]))


def test_a_client_no_rule_names_takes_no_ci_token(keys: CiKeys) -> None:
    trust = trust_for(keys)
    assert not trust.requires_identity("someone-else")
    reason = authenticate(trust, keys.token(AUDIENCE, now=NOW), client_id="someone-else")
    assert "client 'someone-else' accepts no CI token on this server" in reason


def test_star_rules_apply_to_every_client(keys: CiKeys) -> None:
    trust = trust_for(keys, "*:repository_owner=octo", "deploy:environment=production")
    assert trust.requires_identity("anything")
    trust.authenticate(
        "anything", JWT_BEARER, keys.token(AUDIENCE, now=NOW), audience=AUDIENCE, now=NOW
    )
    reason = authenticate(trust, keys.token(AUDIENCE, now=NOW), client_id="deploy")
    assert "has no environment claim" in reason


def test_rule_syntax() -> None:
    rule = ClaimRule.parse("ci-shark:sub=repo:octo/app:ref:refs/heads/main")
    assert (rule.client_id, rule.claim, rule.pattern) == (
        "ci-shark",
        "sub",
        "repo:octo/app:ref:refs/heads/main",
    )
    url_client = ClaimRule.parse("https://app.example/client:repository=octo/*")
    assert url_client.client_id == "https://app.example/client"
    assert str(url_client) == "https://app.example/client:repository=octo/*"
    for bad in ("ci-shark", "ci-shark:repository", "repository=octo/app", ":ref=x", "c:ref="):
        with pytest.raises(ValueError, match="write CLIENT:CLAIM=GLOB"):
            ClaimRule.parse(bad)


# --------------------------------------------------------------------------- the keys


def test_the_key_set_keeps_signing_keys_and_refuses_private_ones(tmp_path: Path) -> None:
    rsa_key, ec_key = CiKeys(alg="RS256").public_jwk(), CiKeys(alg="ES256").public_jwk()
    encryption = {**rsa_key, "use": "enc", "kid": "enc"}
    other_alg = {**ec_key, "alg": "ES384", "kid": "es384"}
    okp = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
    keys = parse_jwks(json.dumps({"keys": [rsa_key, ec_key, encryption, other_alg, okp]}).encode())
    assert [(key.kid, key.alg) for key in keys] == [
        (rsa_key["kid"], "RS256"),
        (ec_key["kid"], "ES256"),
    ]
    private = CiKeys(alg="ES256").key.as_dict(private=True)
    with pytest.raises(JwksError, match="private key members"):
        parse_jwks(json.dumps({"keys": [private]}).encode())
    numbers = rsa.generate_private_key(65537, 1024).public_key().public_numbers()
    short = {"kty": "RSA", "n": b64url(numbers.n.to_bytes(128, "big")), "e": "AQAB"}
    with pytest.raises(JwksError, match="1024 bits; at least 2048"):
        parse_jwks(json.dumps({"keys": [short]}).encode())
    with pytest.raises(JwksError, match="no RS256"):
        parse_jwks(json.dumps({"keys": [okp]}).encode())
    with pytest.raises(JwksError, match='no "keys" list'):
        parse_jwks(b"{}")


def test_loading_names_the_source_and_its_problem(tmp_path: Path) -> None:
    with pytest.raises(JwksError, match=r"cannot read the JWKS file .*missing\.json"):
        IssuerKeys.load(str(tmp_path / "missing.json"))
    broken = tmp_path / "broken.json"
    broken.write_text("[]")
    with pytest.raises(JwksError, match=r"the JWKS at .*broken\.json: not a JSON object"):
        IssuerKeys.load(str(broken))
    with pytest.raises(JwksError, match="over https, or plain http from a loopback host only"):
        IssuerKeys.load("http://keys.example/jwks")
    good = CiKeys().write_jwks(tmp_path / "jwks.json")
    assert IssuerKeys.load(str(good)).source == str(good)


def test_an_unknown_kid_refetches_a_url_at_most_every_thirty_seconds() -> None:
    old, rotated = CiKeys(), CiKeys()
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return json.dumps(rotated.jwks()).encode()

    now = [0.0]
    url = "https://ci.example/.well-known/jwks"
    first = parse_jwks(json.dumps(old.jwks()).encode())
    keys = IssuerKeys(first, source=url, url=url, fetch=fetch, clock=lambda: now[0])
    assert keys.candidates(rotated.kid, "RS256") == []  # too soon after the first fetch
    assert fetched == []
    now[0] = 31.0
    assert [key.kid for key in keys.candidates(rotated.kid, "RS256")] == [rotated.kid]
    assert fetched == [url]
    assert keys.candidates("made-up", "RS256") == []  # the next refetch waits again
    assert fetched == [url]


def test_time_is_the_wall_clock_by_default() -> None:
    """The endpoint passes time.time(); a token minted now is inside every window."""
    keys = CiKeys()
    trust = trust_for(keys)
    token = keys.token(AUDIENCE)
    assert parts(token)[1]["exp"] > time.time()
    trust.authenticate("ci-shark", JWT_BEARER, token, audience=AUDIENCE, now=time.time())
