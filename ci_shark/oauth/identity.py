"""Who approved: from the id_token, else from userinfo. Used for the `approver` output and
the `allowed-approvers` policy (which lives in ``flow.py``).

The id_token's signature is not checked: it came straight from the token endpoint over the
connection we opened (OpenID Connect Core §3.1.3.7), so its claims are as trustworthy as
the access token itself. Who it is about is still checked (steps 2, 3 and 9): issued by
this server (``iss``), to us (``aud``), and not expired (``exp``). An id_token that fails
is no evidence, and userinfo is asked instead.

Claims are kept exactly as the server sent them: the policy compares raw values, and only
the display name is sanitised (``john$doe`` and ``john_doe`` are different people). Which
claim is the subject, and which (if any) is a username the server keeps unique, is the
provider preset's to say (GitHub's REST API: ``id`` and ``login``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ci_shark.errors import CiSharkError
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import OAuthHttp
from ci_shark.oauth.providers import PROVIDERS, Provider
from ci_shark.oauth.tokens import TokenSet, jwt_claims
from ci_shark.safe_text import inert
from ci_shark.secret import Secret
from ci_shark.urls import same_issuer

EXPIRY_LEEWAY_S = 60  # clock skew between the server and the runner
MAX_CLAIM_CHARS = 256


@dataclass(frozen=True)
class Identity:
    subject: str | None  # the preset's subject claim (`sub`; GitHub: `id`), as sent
    username: str | None  # `preferred_username`, `login` or `username`, as sent
    email: str | None  # `email`, as sent, and only when the server marked it verified
    # The preset's unique username claim (GitHub: `login`), as sent: what a bare
    # `allowed-approvers` entry matches. None for presets without one.
    unique_username: str | None = None

    @property
    def display(self) -> str:
        """Who approved, for the `approver` output and messages: inert, bounded. The
        preset's unique username first: another claim may hold any name."""
        name = self.unique_username or self.username or self.email or self.subject
        return inert(name or "unknown", 100)


def _claim(claims: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = claims.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # numeric subjects (GitHub user ids)
        if isinstance(value, str) and 0 < len(value) <= MAX_CLAIM_CHARS:
            return value
    return None


def from_claims(
    claims: Mapping[str, Any], provider: Provider = PROVIDERS["shark"]
) -> Identity | None:
    unique = provider.unique_username_claim
    identity = Identity(
        subject=_claim(claims, provider.subject_claim),
        # Not `nickname` or `name`: anyone may set theirs to a maintainer's name.
        username=_claim(claims, "preferred_username", "login", "username"),
        # An email counts only once the server says it verified it.
        email=_claim(claims, "email") if claims.get("email_verified") is True else None,
        unique_username=_claim(claims, unique) if unique else None,
    )
    return identity if identity.subject or identity.username or identity.email else None


def from_id_token(
    id_token: Secret,
    *,
    client_id: str,
    issuer: str,
    provider: Provider = PROVIDERS["shark"],
    now: float | None = None,
) -> Identity | None:
    """The identity in an id_token issued by ``issuer`` to ``client_id`` that has not
    expired; None when it is not evidence of who approved our request."""
    claims = jwt_claims(id_token)
    if claims is None:
        return None
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    issued_by = claims.get("iss")
    expires = claims.get("exp")
    now = time.time() if now is None else now
    if (
        client_id not in audiences
        or not isinstance(issued_by, str)
        or not same_issuer(issued_by, issuer)
        or not isinstance(expires, (int, float))
        or isinstance(expires, bool)
        or expires + EXPIRY_LEEWAY_S < now
    ):
        return None
    return from_claims(claims, provider)


def identify(
    tokens: TokenSet,
    *,
    client_id: str,
    issuer: str,
    http: OAuthHttp,
    find_userinfo: Callable[[], str | None],
    dpop: DPoPKey | None,
    deadline: float,
    provider: Provider = PROVIDERS["shark"],
) -> Identity | None:
    """The approver, when the server tells; None when it does not. ``find_userinfo`` is
    asked only when the id_token does not tell (it may have to read the metadata)."""
    if tokens.id_token is not None:
        identity = from_id_token(
            tokens.id_token, client_id=client_id, issuer=issuer, provider=provider
        )
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
    return from_claims(reply.body, provider)
