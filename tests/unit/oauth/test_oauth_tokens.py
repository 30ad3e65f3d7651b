"""Token responses (RFC 6749 §5.1), read strictly, and revocation (RFC 7009)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import parse_qs

import httpx
import pytest
from joserfc import jws
from joserfc.jwk import ECKey
from support.clock import FakeClock

from ci_shark.errors import ConfigError, OAuthError, ProtocolError
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import OAuthHttp
from ci_shark.oauth.tokens import (
    ASSERTION_METHOD,
    CLIENT_AUTH_METHODS,
    JWT_BEARER,
    MAX_EXPIRES_IN_S,
    MAX_TOKEN_CHARS,
    SECRET_METHODS,
    Client,
    UnusableTokenResponse,
    parse_token_response,
    revocable,
    revoke,
)
from ci_shark.secret import Secret

NOW = 1_700_000_000.0
REVOKE_URL = "https://as.example/oauth/revoke"


def body(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"access_token": "at-1", "token_type": "DPoP", "expires_in": 3600}
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


# -- parse_token_response ------------------------------------------------------------------


def test_minimal_response() -> None:
    tokens = parse_token_response(body(expires_in=None), now=NOW)

    assert isinstance(tokens.access_token, Secret)
    assert tokens.access_token.reveal() == "at-1"
    assert tokens.expires_in is None
    assert tokens.expires_at is None
    assert tokens.scope is None
    assert tokens.refresh_token is None
    assert tokens.id_token is None


def test_secrets_stay_out_of_the_repr() -> None:
    tokens = parse_token_response(body(refresh_token="rt-secret", id_token="idt-secret"), now=NOW)
    text = repr(tokens)
    assert "at-1" not in text
    assert "rt-secret" not in text
    assert "idt-secret" not in text
    assert tokens.refresh_token is not None
    assert tokens.refresh_token.reveal() == "rt-secret"
    assert tokens.id_token is not None
    assert tokens.id_token.reveal() == "idt-secret"


@pytest.mark.parametrize(
    ("sent", "normalised", "bound"),
    [
        ("DPoP", "DPoP", True),
        ("dpop", "DPoP", True),
        ("DPOP", "DPoP", True),
        ("Bearer", "Bearer", False),
        ("bearer", "Bearer", False),  # Okta, Entra and others send lowercase
        ("BEARER", "Bearer", False),
        ("MAC", "MAC", False),
    ],
)
def test_token_type_is_normalised(sent: str, normalised: str, *, bound: bool) -> None:
    tokens = parse_token_response(body(token_type=sent), now=NOW)
    assert tokens.token_type == normalised
    assert tokens.is_dpop_bound is bound


@pytest.mark.parametrize(("sent", "expected"), [(3600, 3600), ("3600", 3600), (0, 0), (None, None)])
def test_expires_in_forms(sent: Any, expected: int | None) -> None:
    assert parse_token_response(body(expires_in=sent), now=NOW).expires_in == expected


def test_a_long_lived_token_still_has_an_expiry_date() -> None:
    tokens = parse_token_response(body(expires_in=MAX_EXPIRES_IN_S), now=NOW)
    assert tokens.expires_at is not None
    assert tokens.expires_at.year == 2123


def test_expires_at_is_utc_from_the_receipt_time() -> None:
    tokens = parse_token_response(body(expires_in=3600), now=NOW)
    assert tokens.expires_at == datetime(2023, 11, 14, 23, 13, 20, tzinfo=timezone.utc)
    assert tokens.expires_at is not None
    assert tokens.expires_at.utcoffset() is not None


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("deploy read", "deploy read"),
        (["deploy", "read"], "deploy read"),
        ("", None),
        ("deploy\nread", "deploy read"),  # server text is flattened to one line
    ],
)
def test_scope_forms(sent: Any, expected: str | None) -> None:
    assert parse_token_response(body(scope=sent), now=NOW).scope == expected


def test_empty_refresh_and_id_tokens_are_absent() -> None:
    tokens = parse_token_response(body(refresh_token="", id_token=""), now=NOW)
    assert tokens.refresh_token is None
    assert tokens.id_token is None


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"access_token": None}, id="no-access-token"),
        pytest.param({"access_token": ""}, id="empty-access-token"),
        pytest.param({"access_token": 123}, id="access-token-number"),
        pytest.param({"access_token": "at\nX-Injected: 1"}, id="access-token-newline"),
        pytest.param({"access_token": "a" * (MAX_TOKEN_CHARS + 1)}, id="access-token-huge"),
        pytest.param({"token_type": None}, id="no-token-type"),
        pytest.param({"token_type": ""}, id="empty-token-type"),
        pytest.param({"token_type": "Bearer\n"}, id="token-type-newline"),
        pytest.param({"token_type": "x" * 33}, id="token-type-huge"),
        pytest.param({"token_type": 1}, id="token-type-number"),
        pytest.param({"expires_in": -1}, id="expires-in-negative"),
        pytest.param({"expires_in": "1h"}, id="expires-in-unit"),
        pytest.param({"expires_in": 3600.5}, id="expires-in-float"),
        pytest.param({"expires_in": True}, id="expires-in-bool"),
        pytest.param({"expires_in": [3600]}, id="expires-in-list"),
        pytest.param({"expires_in": 10**13}, id="expires-in-past-year-9999"),
        pytest.param({"scope": 42}, id="scope-number"),
        pytest.param({"scope": {"a": 1}}, id="scope-object"),
        pytest.param({"refresh_token": 7}, id="refresh-token-number"),
        pytest.param({"id_token": "a\x00b"}, id="id-token-control"),
    ],
)
def test_strictness(overrides: dict[str, Any]) -> None:
    sent = body()
    sent.update(overrides)
    sent = {name: value for name, value in sent.items() if value is not None}
    with pytest.raises(ProtocolError) as caught:
        parse_token_response(sent, now=NOW)
    assert caught.value.exit_code == 5
    assert "at-1" not in caught.value.diagnostics()


# -- revoke --------------------------------------------------------------------------------


Revoker = Callable[..., list[httpx.Request]]


@pytest.fixture
def revoke_with() -> Iterator[Revoker]:
    opened: list[OAuthHttp] = []

    def run(*answers: httpx.Response, **kwargs: Any) -> list[httpx.Request]:
        seen: list[httpx.Request] = []
        script = list(answers)

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return script.pop(0)

        clock = FakeClock()
        http = OAuthHttp(
            transport=httpx.MockTransport(handler),
            clock=clock,
            sleep=clock.sleep,
            jitter=lambda: 0.0,
        )
        opened.append(http)
        client = Client("ci-client", kwargs.pop("client_secret", None))
        revoke(
            http,
            REVOKE_URL,
            Secret("at-to-revoke"),
            client,
            token_type_hint=kwargs.pop("token_type_hint", "access_token"),
            deadline=clock() + 60,
            **kwargs,
        )
        return seen

    yield run
    for http in opened:
        http.close()


def test_revoke_public_client_form(revoke_with: Revoker) -> None:
    (request,) = revoke_with(httpx.Response(200))

    assert request.method == "POST"
    assert str(request.url) == REVOKE_URL
    assert parse_qs(request.content.decode()) == {
        "token": ["at-to-revoke"],
        "token_type_hint": ["access_token"],
        "client_id": ["ci-client"],
    }
    assert "Authorization" not in request.headers


def test_revoke_confidential_client_uses_basic_auth(revoke_with: Revoker) -> None:
    (request,) = revoke_with(
        httpx.Response(200), client_secret=Secret("s3cret"), token_type_hint="refresh_token"
    )

    form = parse_qs(request.content.decode())
    assert form == {"token": ["at-to-revoke"], "token_type_hint": ["refresh_token"]}
    scheme, encoded = request.headers["Authorization"].split(" ")
    assert (scheme, base64.b64decode(encoded)) == ("Basic", b"ci-client:s3cret")


def test_revoke_with_dpop_sends_a_proof(revoke_with: Revoker) -> None:
    key = DPoPKey.generate()
    (request,) = revoke_with(httpx.Response(200), dpop=key)

    proof = jws.deserialize_compact(
        request.headers["DPoP"], ECKey.import_key(key.public_jwk), algorithms=["ES256"]
    )
    claims = json.loads(proof.payload)
    assert (claims["htm"], claims["htu"]) == ("POST", REVOKE_URL)


def test_revoke_retries_a_transient_failure(revoke_with: Revoker) -> None:
    requests = revoke_with(httpx.Response(503), httpx.Response(200))
    assert len(requests) == 2


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (
            httpx.Response(
                400,
                json={"error": "unsupported_token_type", "error_description": "no\nway"},
            ),
            "unsupported_token_type",
        ),
        (httpx.Response(401, json={"error": "invalid_client"}), "invalid_client"),
        (httpx.Response(404, text="<html>nope</html>"), "HTTP 404"),
    ],
)
def test_revoke_errors(revoke_with: Revoker, answer: httpx.Response, error: str) -> None:
    with pytest.raises(OAuthError) as caught:
        revoke_with(answer)

    assert caught.value.error == error
    assert caught.value.status_code == answer.status_code
    assert caught.value.exit_code == 5  # the server answered outside the protocol
    assert "revocation endpoint" in caught.value.message
    assert "\n" not in caught.value.message


def test_a_confidential_client_uses_the_form_when_the_server_takes_only_that() -> None:
    form: dict[str, object] = {}
    assert Client("ci", Secret("s3cret"), "post").authenticate(form) is None
    assert form == {"client_id": "ci", "client_secret": Secret("s3cret")}
    assert Client("ci", Secret("s3cret")).authenticate({}) == ("ci", Secret("s3cret"))
    public: dict[str, object] = {}
    assert Client("ci").authenticate(public) is None
    assert public == {"client_id": "ci"}


# -- the order of a revocation ---------------------------------------------------------------


def test_the_refresh_token_is_revoked_first_wherever_the_tokens_come_from() -> None:
    access, refresh = Secret("at-1"), Secret("rt-1")
    assert revocable(refresh_token=refresh, access_token=access) == [
        (refresh, "refresh_token"),
        (access, "access_token"),
    ]
    assert revocable(refresh_token=None, access_token=access) == [(access, "access_token")]

    tokens = parse_token_response(
        {"access_token": "at-1", "token_type": "Bearer", "refresh_token": "rt-1"}, now=NOW
    )
    assert tokens.issued() == [(refresh, "refresh_token"), (access, "access_token")]

    with pytest.raises(UnusableTokenResponse) as unusable:  # issued, then refused by us
        parse_token_response(
            {"access_token": "at-1", "refresh_token": "rt-1", "token_type": "not valid!"}
        )
    assert unusable.value.issued == [(refresh, "refresh_token"), (access, "access_token")]


@pytest.mark.parametrize(
    ("secret", "auth", "method"),
    [
        (None, "basic", "none"),
        (Secret("s3cret"), "basic", "client_secret_basic"),
        (Secret("s3cret"), "post", "client_secret_post"),
    ],
)
def test_a_clients_method_is_recorded_by_its_rfc_8414_name_and_read_back(
    secret: Secret | None, auth: Literal["basic", "post"], method: str
) -> None:
    # What a login records as SHARK_CLIENT_AUTH, and how a later step reads it back.
    client = Client("ci", secret, auth)
    assert client.method == method
    assert CLIENT_AUTH_METHODS[method] == (auth if secret else None)
    assert (method in SECRET_METHODS) == (secret is not None)


def test_an_asserting_client_sends_rfc_7523_fields_and_a_fresh_assertion_per_form() -> None:
    made = iter(["eyJ.first.sig", "eyJ.second.sig"])
    client = Client("ci-deploy", assertion=lambda: Secret(next(made)))
    forms: list[dict[str, Any]] = [{"grant_type": "refresh_token"}, {}]

    assert [client.authenticate(form) for form in forms] == [None, None]  # never HTTP Basic

    for form in forms:
        assert form["client_id"] == "ci-deploy"
        assert form["client_assertion_type"] == JWT_BEARER
        assert "client_secret" not in form
    # Made when each form is sent, not when it is built: a retry asks again.
    assert [form["client_assertion"].make().reveal() for form in forms] == [
        "eyJ.first.sig",
        "eyJ.second.sig",
    ]
    assert client.method == ASSERTION_METHOD == "workload_identity"
    assert CLIENT_AUTH_METHODS[ASSERTION_METHOD] is None
    assert ASSERTION_METHOD not in SECRET_METHODS  # a later step needs no secret: it asks the CI


def test_a_client_authenticates_one_way() -> None:
    with pytest.raises(ConfigError, match="one way"):
        Client("ci", Secret("s3cret"), assertion=lambda: Secret("eyJ.a.b"))
