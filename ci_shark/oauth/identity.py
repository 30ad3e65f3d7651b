"""Who approved: from the id_token, else from userinfo. Used for the `approver` output and
the `allowed-approvers` policy.

The id_token's signature is not checked: it came straight from the token endpoint over the
connection we opened (OpenID Connect Core §3.1.3.7), so its claims are as trustworthy as
the access token itself. Its audience must still be us.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ci_shark.errors import CiSharkError, inert
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import OAuthHttp
from ci_shark.oauth.tokens import TokenSet
from ci_shark.secret import Secret


@dataclass(frozen=True)
class Identity:
    subject: str | None
    username: str | None
    email: str | None
    source: str  # "id_token" or "userinfo"

    @property
    def display(self) -> str:
        return self.username or self.email or self.subject or "unknown"

    def matches(self, allowed: Iterable[str]) -> bool:
        """True when any allowed subject, username or verified email (case-insensitive) is
        this one. `sub` is the safest entry: usernames are only as stable as the server
        makes them."""
        mine = {name.casefold() for name in (self.subject, self.username, self.email) if name}
        return any(entry.strip().casefold() in mine for entry in allowed if entry.strip())


def _claim(claims: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = claims.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            return inert(value, 200)
    return None


def from_claims(claims: Mapping[str, Any], source: str) -> Identity | None:
    identity = Identity(
        subject=_claim(claims, "sub"),
        # Not `nickname`: anyone may set theirs to a maintainer's name.
        username=_claim(claims, "preferred_username", "login", "username"),
        # An email counts only once the server says it verified it.
        email=_claim(claims, "email") if claims.get("email_verified") is True else None,
        source=source,
    )
    return identity if identity.subject or identity.username or identity.email else None


def from_id_token(id_token: Secret, client_id: str) -> Identity | None:
    parts = id_token.reveal().split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(claims, dict):
        return None
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if client_id not in audiences:
        return None  # not issued to us: not evidence of who approved our request
    return from_claims(claims, "id_token")


def identify(
    tokens: TokenSet,
    *,
    client_id: str,
    http: OAuthHttp,
    find_userinfo: Callable[[], str | None],
    dpop: DPoPKey | None,
    deadline: float,
) -> Identity | None:
    """The approver, when the server tells; None when it does not. ``find_userinfo`` is
    asked only when the id_token does not tell (it may have to read the metadata)."""
    if tokens.id_token is not None:
        identity = from_id_token(tokens.id_token, client_id)
        if identity is not None:
            return identity
    userinfo_endpoint = find_userinfo()
    if userinfo_endpoint is None:
        return None
    try:
        reply = http.request(
            "GET",
            userinfo_endpoint,
            dpop=dpop if tokens.is_dpop_bound else None,
            access_token=tokens.access_token,
            deadline=deadline,
        )
    except CiSharkError:
        return None  # identity is best effort; the policy check fails closed on None
    if reply.status != 200 or reply.body is None:
        return None
    return from_claims(reply.body, "userinfo")
