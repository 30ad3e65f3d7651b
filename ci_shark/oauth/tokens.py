"""Token responses (RFC 6749 §5.1), client authentication (§2.3.1) and revocation (RFC 7009).

A token is checked as RFC 6750's ``b64token`` (letters, digits, ``-._~+/``, trailing
``=``): it goes into an ``Authorization`` header and, unquoted, into dotenv files, where
a ``$`` or a quote in a hostile server's token would mean something to the reader.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from ci_shark.errors import CiSharkError, ConfigError, OAuthError, ProtocolError, oauth_error
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import Form, OAuthHttp, PerRequest, Reply
from ci_shark.safe_text import inert
from ci_shark.secret import Secret, SecretStr

MAX_TOKEN_CHARS = 64 * 1024
# Longer than any real token lives, short enough that expires_at is still a date.
MAX_EXPIRES_IN_S = 100 * 365 * 24 * 3600
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_SECONDS = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() takes "²"
TOKEN_FIELDS = ("access_token", "refresh_token", "id_token")

ClientAuth = Literal["basic", "post"]
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"  # RFC 7523 §2.2
# RFC 7523 §2.2 client authentication with a JWT another party issued (a CI's OIDC token),
# fresh from its source for each request. No registered name fits: `private_key_jwt` means
# a JWT the client signs with its own key.
ASSERTION_METHOD = "workload_identity"
# How a client proves who it is, by its RFC 8414 / RFC 7591 name: what a login records
# (`SHARK_CLIENT_AUTH`) so that `refresh` and `revoke` in a later step do the same. "none" is
# a public client. The non-secret parameters of a method (an assertion's audience) are
# recorded beside it; a credential never is.
CLIENT_AUTH_METHODS: dict[str, ClientAuth | None] = {
    "none": None,
    "client_secret_basic": "basic",
    "client_secret_post": "post",
    ASSERTION_METHOD: None,
}
# The methods whose credential is `client-secret`: a later step must be given it again.
SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post"})


def whole_seconds(value: object) -> int | None:
    """A count of seconds as servers send it (a number, or a numeric string); None when
    it is neither, or too long to be one."""
    if isinstance(value, str) and _SECONDS.fullmatch(value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**12:
        return value
    return None


class UnusableTokenResponse(ProtocolError):
    """A 200 from the token endpoint we cannot use. The server may still have issued what
    it sent: ``issued`` holds those values, so the caller can revoke them."""

    def __init__(self, message: str, issued: list[tuple[Secret, str]]) -> None:
        super().__init__(message, hint="the server's token response is malformed")
        self.issued = issued


@dataclass(frozen=True)
class TokenSet:
    access_token: Secret
    token_type: str
    expires_in: int | None
    scope: str | None
    refresh_token: Secret | None
    id_token: Secret | None
    received_at: float  # wall clock, for expires_at
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)  # the response, as sent

    @property
    def expires_at(self) -> datetime | None:
        if self.expires_in is None:
            return None
        return datetime.fromtimestamp(self.received_at + self.expires_in, tz=timezone.utc)

    @property
    def is_dpop_bound(self) -> bool:
        return self.token_type.lower() == "dpop"

    def issued(self) -> list[tuple[Secret, str]]:
        """What revocation undoes, in :func:`revocable`'s order."""
        return revocable(refresh_token=self.refresh_token, access_token=self.access_token)


def revocable(
    *, refresh_token: Secret | None, access_token: Secret | None
) -> list[tuple[Secret, str]]:
    """What revocation undoes, (token, RFC 7009 type hint), in the order it goes: the
    refresh token first. It is the grant: once it is gone nothing mints a new access
    token, even when revoking the access token then fails (and many servers revoke the
    access tokens of a grant with it)."""
    pairs = ((refresh_token, "refresh_token"), (access_token, "access_token"))
    return [(token, hint) for token, hint in pairs if token is not None]


def _issued_strings(body: Mapping[str, Any]) -> list[tuple[Secret, str]]:
    def loose(name: str) -> Secret | None:
        value = body.get(name)
        if isinstance(value, str) and value and len(value) <= MAX_TOKEN_CHARS:
            return Secret(value)
        return None

    return revocable(refresh_token=loose("refresh_token"), access_token=loose("access_token"))


def _token(body: Mapping[str, Any], name: str) -> Secret | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_TOKEN_CHARS or not _B64TOKEN.fullmatch(value):
        raise ProtocolError(
            f"the token response's {name} is not a token (RFC 6750 b64token characters only)"
        )
    return Secret(value)


def parse_token_response(body: Mapping[str, Any], *, now: float | None = None) -> TokenSet:
    """A successful token response, validated strictly: server text is untrusted. On a
    failure, :class:`UnusableTokenResponse` says what the server may have issued anyway."""
    try:
        return _parse(body, now)
    except ProtocolError as failure:
        raise UnusableTokenResponse(failure.message, _issued_strings(body)) from None


def _parse(body: Mapping[str, Any], now: float | None) -> TokenSet:
    access_token = _token(body, "access_token")
    if access_token is None:
        raise ProtocolError("the token endpoint answered without an access_token")
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or not token_type.isalnum() or len(token_type) > 32:
        raise ProtocolError("the token response has no valid token_type")
    expires_in = body.get("expires_in")
    if expires_in is not None:
        expires_in = whole_seconds(expires_in)
        if expires_in is None or expires_in > MAX_EXPIRES_IN_S:
            raise ProtocolError("the token response's expires_in is not a whole number of seconds")
    scope = body.get("scope")
    if isinstance(scope, list):  # a few servers send a JSON array
        scope = " ".join(str(item) for item in scope)
    if scope is not None and not isinstance(scope, str):
        raise ProtocolError("the token response's scope is not a string")
    return TokenSet(
        access_token=access_token,
        # RFC 6749: case-insensitive; normalise so outputs read `DPoP` or `Bearer`.
        token_type={"dpop": "DPoP", "bearer": "Bearer"}.get(token_type.lower(), token_type),
        expires_in=expires_in,
        scope=inert(scope, 1000) if scope else None,
        refresh_token=_token(body, "refresh_token"),
        id_token=_token(body, "id_token"),
        received_at=time.time() if now is None else now,
        raw=dict(body),
    )


@dataclass(frozen=True)
class Client:
    """Who we are to the authorization server, and how we prove it (RFC 6749 §2.3.1, RFC
    7523 §2.2): one rule for the device, token and revocation endpoints alike."""

    client_id: str
    secret: Secret | None = None
    auth: ClientAuth = "basic"  # for a secret: Basic (every server must take it), or the form
    # A JWT someone else issued (a CI's OIDC token), asked of its source for each request.
    assertion: Callable[[], Secret] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.secret is not None and self.assertion is not None:
            raise ConfigError(
                "a client authenticates one way: a client secret or a client assertion",
                hint="set `client-secret` or `workload-identity`, not both",
            )

    def authenticate(self, form: dict[str, str | Secret | Any]) -> tuple[str, Secret] | None:
        """A public client names itself in the form; a confidential one uses HTTP Basic, or
        the form when the server's metadata says it takes only that; an asserting one sends
        a fresh assertion with each send (:class:`PerRequest`), retries included. Returns
        the Basic credentials, or None when the form carries them."""
        if self.secret is not None and self.auth == "basic":
            return (self.client_id, self.secret)
        form["client_id"] = self.client_id
        if self.secret is not None:
            form["client_secret"] = self.secret
        if self.assertion is not None:
            form["client_assertion_type"] = JWT_BEARER
            form["client_assertion"] = PerRequest(self.assertion)
        return None

    @property
    def method(self) -> str:
        """How this client authenticates, by its name in :data:`CLIENT_AUTH_METHODS`."""
        if self.assertion is not None:
            return ASSERTION_METHOD
        if self.secret is None:
            return "none"
        return "client_secret_post" if self.auth == "post" else "client_secret_basic"


def post_form(
    http: OAuthHttp,
    endpoint: str,
    form: Form,
    client: Client,
    *,
    dpop: DPoPKey | None,
    deadline: float,
    retry: bool = True,
) -> Reply:
    """A form POST to an OAuth endpoint (device, token, revocation), as ``client``, with a
    DPoP proof when given.
    ``retry=False`` for a request that must not be sent twice (a rotating refresh token:
    a lost answer replayed is ``invalid_grant``, or the grant revoked)."""
    sent: dict[str, str | Secret | Any] = dict(form)
    basic_auth = client.authenticate(sent)
    return http.request(
        "POST",
        endpoint,
        form=sent,
        dpop=dpop,
        basic_auth=basic_auth,
        deadline=deadline,
        retry=retry,
    )


def token_request(
    http: OAuthHttp,
    endpoint: str,
    form: Mapping[str, str | Secret],
    client: Client,
    *,
    dpop: DPoPKey | None = None,
    deadline: float,
    retry: bool = True,
) -> TokenSet:
    """One token request (any grant but the device code's, whose answers the poller
    reads): the tokens, or the OAuthError the server answered."""
    reply = post_form(http, endpoint, form, client, dpop=dpop, deadline=deadline, retry=retry)
    if reply.status == 200 and reply.error is None and reply.body is not None:
        return parse_token_response(reply.body)
    if reply.error is not None:
        raise oauth_error(
            reply.error,
            reply.error_description,
            status_code=reply.status,
            endpoint="the token endpoint",
        )
    detail = f": {reply.text}" if reply.text else ""
    raise OAuthError(
        message=f"the token endpoint answered HTTP {reply.status} without a token{detail}",
        status_code=reply.status,
    )


def refresh_grant(
    http: OAuthHttp,
    endpoint: str,
    refresh_token: Secret,
    client: Client,
    *,
    dpop: DPoPKey | None = None,
    deadline: float,
) -> TokenSet:
    """RFC 6749 §6, with a DPoP proof from the same key when the grant is bound (RFC 9449
    §5: the server checks it is the key the refresh token was issued to)."""
    form: dict[str, str | Secret] = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return token_request(http, endpoint, form, client, dpop=dpop, deadline=deadline, retry=False)


def revoke(
    http: OAuthHttp,
    endpoint: str,
    token: Secret,
    client: Client,
    *,
    token_type_hint: str,
    dpop: DPoPKey | None = None,
    deadline: float,
) -> None:
    """RFC 7009: ask the server to revoke one token. 200 means done (or already invalid)."""
    form: dict[str, str | Secret] = {"token": token, "token_type_hint": token_type_hint}
    reply = post_form(http, endpoint, form, client, dpop=dpop, deadline=deadline)
    if reply.status == 200:
        return
    raise OAuthError(
        reply.error or f"HTTP {reply.status}",
        reply.error_description,
        status_code=reply.status,
        endpoint="the revocation endpoint",
    )


def revoke_each(
    http: OAuthHttp,
    endpoint: str,
    tokens: Iterable[tuple[Secret, str]],
    client: Client,
    *,
    dpop: DPoPKey | None = None,
    deadline: float,
) -> dict[str, CiSharkError | None]:
    """Revoke each (token, hint) in the order given (:func:`revocable`'s), even when another
    fails. Returns, per hint, the error or None when it was revoked."""
    results: dict[str, CiSharkError | None] = {}
    for token, hint in tokens:
        try:
            revoke(
                http, endpoint, token, client, token_type_hint=hint, dpop=dpop, deadline=deadline
            )
            results[hint] = None
        except CiSharkError as failure:
            results[hint] = failure
    return results


# -- the SharkAuth SDK's Token -------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class Token:
    """A token response in the SharkAuth SDK's shape. ``access_token`` (and the other
    tokens) are :class:`SecretStr`: usable as strings in a header, hidden in ``repr``."""

    access_token: SecretStr
    token_type: str
    expires_in: int | None
    scope: str | None
    refresh_token: SecretStr | None
    id_token: SecretStr | None
    cnf_jkt: str | None  # the RFC 7638 thumbprint of the key the token is bound to
    raw: Mapping[str, Any]  # the server's JSON, its tokens as SecretStr

    @classmethod
    def from_token_set(cls, tokens: TokenSet, dpop: DPoPKey | None) -> Token:
        def plain(secret: Secret | None) -> SecretStr | None:
            return SecretStr(secret.reveal()) if secret is not None else None

        raw = {
            name: SecretStr(value) if name in TOKEN_FIELDS and isinstance(value, str) else value
            for name, value in tokens.raw.items()
        }
        access_token = plain(tokens.access_token)
        assert access_token is not None
        return cls(
            access_token=access_token,
            token_type=tokens.token_type,
            expires_in=tokens.expires_in,
            scope=tokens.scope,
            refresh_token=plain(tokens.refresh_token),
            id_token=plain(tokens.id_token),
            cnf_jkt=_bound_jkt(tokens, dpop),
            raw=raw,
        )

    def __repr__(self) -> str:
        return (
            f"Token(token_type={self.token_type!r}, expires_in={self.expires_in!r}, "
            f"scope={self.scope!r}, cnf_jkt={self.cnf_jkt!r}, access_token='***')"
        )

    __str__ = __repr__


def _bound_jkt(tokens: TokenSet, dpop: DPoPKey | None) -> str | None:
    """``cnf.jkt`` as the server says it (in its response, as SharkAuth sends it, or in a
    JWT access token); else, for a DPoP token, the key that proved possession when it
    was issued (RFC 9449 binds it to that key)."""
    for confirmation in (tokens.raw.get("cnf"), (jwt_claims(tokens.access_token) or {}).get("cnf")):
        if isinstance(confirmation, dict) and isinstance(confirmation.get("jkt"), str):
            return inert(confirmation["jkt"], 100)
    return dpop.jkt if dpop is not None and tokens.is_dpop_bound else None


def jwt_claims(token: Secret) -> dict[str, Any] | None:
    """A JWT's claims, unverified (what the caller checks is its own business); None for
    anything else, an opaque token among them."""
    parts = token.reveal().split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, RecursionError):
        return None
    return claims if isinstance(claims, dict) else None


__all__ = [
    "ASSERTION_METHOD",
    "CLIENT_AUTH_METHODS",
    "JWT_BEARER",
    "SECRET_METHODS",
    "Client",
    "ClientAuth",
    "Token",
    "TokenSet",
    "UnusableTokenResponse",
    "parse_token_response",
    "post_form",
    "refresh_grant",
    "revocable",
    "revoke",
    "revoke_each",
    "token_request",
    "whole_seconds",
]
