"""Token responses (RFC 6749 §5.1) and revocation (RFC 7009)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ci_shark.errors import CiSharkError, OAuthError, ProtocolError, inert
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import OAuthHttp
from ci_shark.secret import Secret

MAX_TOKEN_CHARS = 64 * 1024
# Longer than any real token lives, short enough that expires_at is still a date.
MAX_EXPIRES_IN_S = 100 * 365 * 24 * 3600


@dataclass(frozen=True)
class TokenSet:
    access_token: Secret
    token_type: str
    expires_in: int | None
    scope: str | None
    refresh_token: Secret | None
    id_token: Secret | None
    received_at: float  # wall clock, for expires_at

    @property
    def expires_at(self) -> datetime | None:
        if self.expires_in is None:
            return None
        return datetime.fromtimestamp(self.received_at + self.expires_in, tz=timezone.utc)

    @property
    def is_dpop_bound(self) -> bool:
        return self.token_type.lower() == "dpop"


def _optional_secret(body: dict[str, Any], name: str) -> Secret | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_TOKEN_CHARS or not value.isprintable():
        raise ProtocolError(f"the token response's {name} is not a usable string")
    return Secret(value)


def parse_token_response(body: dict[str, Any], *, now: float | None = None) -> TokenSet:
    """A successful token response, validated strictly: server text is untrusted."""
    access_token = _optional_secret(body, "access_token")
    if access_token is None:
        raise ProtocolError("the token endpoint answered without an access_token")
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or not token_type.isalnum() or len(token_type) > 32:
        raise ProtocolError("the token response has no valid token_type")
    expires_in = body.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)  # some servers send a numeric string
    if expires_in is not None and (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or not 0 <= expires_in <= MAX_EXPIRES_IN_S
    ):
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
        refresh_token=_optional_secret(body, "refresh_token"),
        id_token=_optional_secret(body, "id_token"),
        received_at=time.time() if now is None else now,
    )


def revoke(
    http: OAuthHttp,
    endpoint: str,
    token: Secret,
    *,
    token_type_hint: str,
    client_id: str,
    client_secret: Secret | None = None,
    dpop: DPoPKey | None = None,
    deadline: float,
) -> None:
    """RFC 7009: ask the server to revoke one token. 200 means done (or already invalid)."""
    form: dict[str, str | Secret] = {"token": token, "token_type_hint": token_type_hint}
    basic_auth = None
    if client_secret is None:
        form["client_id"] = client_id
    else:
        basic_auth = (client_id, client_secret)
    reply = http.request(
        "POST", endpoint, form=form, dpop=dpop, basic_auth=basic_auth, deadline=deadline
    )
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
    tokens: Iterable[tuple[Secret | None, str]],
    *,
    client_id: str,
    client_secret: Secret | None = None,
    dpop: DPoPKey | None = None,
    deadline: float,
) -> dict[str, CiSharkError | None]:
    """Revoke each (token, hint) given, in order, even when another fails; None tokens are
    skipped. Returns, per hint, the error or None when it was revoked."""
    results: dict[str, CiSharkError | None] = {}
    for token, hint in tokens:
        if token is None:
            continue
        try:
            revoke(
                http,
                endpoint,
                token,
                token_type_hint=hint,
                client_id=client_id,
                client_secret=client_secret,
                dpop=dpop,
                deadline=deadline,
            )
            results[hint] = None
        except CiSharkError as failure:
            results[hint] = failure
    return results
