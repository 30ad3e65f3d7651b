"""The server's memory: device grants, tokens and the request log, behind one lock.

Grant timing and token expiry follow the injected ``clock`` (tests move it by hand); the
epoch seconds a client sees (``iat``, ``exp``) come from the wall clock.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric import ec

from ci_shark.sandbox.ci_trust import CiIdentity, CiTrust
from ci_shark.sandbox.jose import jwk_thumbprint, public_coordinates, sign_jwt
from ci_shark.sandbox.options import SandboxOptions
from ci_shark.sandbox.records import GrantInfo, RequestRecord, SandboxStats
from ci_shark.sandbox.wire import OAuthError, Reply, Request

ID_TOKEN_TTL_S: Final = 600
# RFC 8628 §6.1: consonants only, no vowels (no words), no easily confused letters.
USER_CODE_ALPHABET: Final = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH: Final = 8
# Approval pages a grant remembers at once (each with its own form token): enough for a few
# tabs, bounded against a script reloading the page.
MAX_PAGE_TOKENS: Final = 8

Decision = Literal["pending", "approved", "denied"]


@dataclass
class Grant:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    resources: tuple[str, ...]
    extra_params: dict[str, str]
    issued_at: float
    expires_at: float
    interval_s: int
    status: Decision = "pending"
    redeemed: bool = False
    last_poll_at: float | None = None
    jkt: str | None = None
    # Who asks, as the CI's OIDC token proved it to this server (workload identity).
    ci_identity: CiIdentity | None = None
    # The form tokens of the approval pages shown for this grant, newest last; each works once.
    page_tokens: list[str] = field(default_factory=list)


@dataclass
class Token:
    kind: Literal["access", "refresh"]
    client_id: str
    scope: str
    issued_at: int  # wall clock (epoch seconds): it appears in introspection
    issued_on_clock: float  # the server clock at issue: expiry is judged on it
    lifetime_s: int | None
    jkt: str | None
    family: str  # the device code it descends from: revoking a family kills all of it
    active: bool = True
    audience: str | None = None  # a token exchange's `audience` (exchange.py)

    @property
    def expires_at(self) -> int | None:
        """Wall-clock expiry (epoch seconds), as introspection reports it."""
        return None if self.lifetime_s is None else self.issued_at + self.lifetime_s

    def expired(self, now: float) -> bool:
        return self.lifetime_s is not None and now >= self.issued_on_clock + self.lifetime_s

    def require_key(self, jkt: str | None, what: str) -> None:
        """RFC 9449: a token bound to a key is used with a proof from that key only."""
        if self.jkt is not None and jkt != self.jkt:
            needed = "a DPoP proof is required" if jkt is None else "another key signed"
            raise OAuthError("invalid_dpop_proof", f"{what} is DPoP-bound: {needed}")

    def narrowed_scope(self, asked: str | None, beyond: str) -> str:
        """The scope asked for (this token's when none), which may only narrow it."""
        scope = asked or self.scope
        if not set(scope.split()) <= set(self.scope.split()):
            raise OAuthError("invalid_scope", f"the scope exceeds {beyond}")
        return scope


def normalise_user_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def display_user_code(code: str) -> str:
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"


class SandboxState:
    """Grants by device and user code, tokens by value, and what every request got."""

    def __init__(
        self,
        options: SandboxOptions,
        issuer: Callable[[], str],
        ci_trust: CiTrust | None = None,
    ) -> None:
        self.options = options
        self.issuer = issuer  # the base URL, known once the port is bound
        self.ci_trust = ci_trust  # None: no CI issuer is trusted
        self.clock = options.clock
        self.lock = threading.Lock()
        self.automatic_decision: Decision = (
            "approved" if options.decision == "approve" else "denied"
        )
        self.grants: dict[str, Grant] = {}  # by device code
        self.grants_by_user_code: dict[str, Grant] = {}  # by normalised user code
        self.tokens: dict[str, Token] = {}
        self._records: list[RequestRecord] = []
        self.signing_key = ec.generate_private_key(ec.SECP256R1())
        self.signing_kid = jwk_thumbprint(*public_coordinates(self.signing_key))

    # ----------------------------------------------------------------- grants

    def new_user_code_locked(self) -> str:
        while True:
            code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
            if code not in self.grants_by_user_code:
                return code

    def status_locked(self, grant: Grant, now: float) -> str:
        self.settle_locked(grant, now)
        if grant.redeemed:
            return "redeemed"
        if now >= grant.expires_at:
            return "expired"
        return grant.status

    def settle_locked(self, grant: Grant, now: float) -> None:
        """Apply the automatic decision once approve_after_s has passed (lazily, on access)."""
        after = self.options.approve_after_s
        if (
            grant.status == "pending"
            and after is not None
            and grant.issued_at + after <= now < grant.expires_at
        ):
            grant.status = self.automatic_decision

    def decide(self, user_code: str | None, decision: Decision) -> None:
        """Decide a code (None: the most recent pending one) as the approver would."""
        now = self.clock()
        with self.lock:
            if user_code is None:
                pending = [
                    g for g in self.grants.values() if self.status_locked(g, now) == "pending"
                ]
                if not pending:
                    raise LookupError("no pending device code to decide")
                grant = pending[-1]
            else:
                found = self.grants_by_user_code.get(normalise_user_code(user_code))
                if found is None:
                    raise LookupError(f"unknown user code {user_code!r}")
                grant = found
            status = self.status_locked(grant, now)
            if status == decision:
                return
            if status != "pending":
                raise ValueError(f"code {display_user_code(grant.user_code)} is already {status}")
            grant.status = decision

    def grant_infos(self) -> tuple[GrantInfo, ...]:
        now = self.clock()
        with self.lock:
            return tuple(
                GrantInfo(
                    user_code=display_user_code(grant.user_code),
                    client_id=grant.client_id,
                    scope=grant.scope,
                    resources=grant.resources,
                    extra_params=dict(grant.extra_params),
                    status=self.status_locked(grant, now),
                    interval_s=grant.interval_s,
                    jkt=grant.jkt,
                    ci_claims=dict(grant.ci_identity.claims) if grant.ci_identity else None,
                )
                for grant in self.grants.values()
            )

    # ----------------------------------------------------------------- tokens

    def issue_tokens_locked(
        self,
        client_id: str,
        scope: str,
        jkt: str | None,
        family: str,
        *,
        with_refresh_token: bool = True,
    ) -> dict[str, Any]:
        """A token response (RFC 6749 §5.1); the tokens are remembered for later checks."""
        now = int(time.time())
        on_clock = self.clock()
        lifetime_s = self.options.access_token_ttl_s
        access = secrets.token_urlsafe(32)
        self.tokens[access] = Token(
            "access", client_id, scope, now, on_clock, lifetime_s, jkt, family
        )
        payload: dict[str, Any] = {
            "access_token": access,
            "token_type": "DPoP" if jkt else "Bearer",
            "expires_in": lifetime_s,
        }
        if jkt:
            # SharkAuth names the binding in the token response (its SDK reads cnf_jkt there).
            payload["cnf"] = {"jkt": jkt}
        if scope:
            payload["scope"] = scope
        if with_refresh_token and self.options.issue_refresh_token:
            refresh = secrets.token_urlsafe(32)
            self.tokens[refresh] = Token(
                "refresh", client_id, scope, now, on_clock, None, jkt, family
            )
            payload["refresh_token"] = refresh
        if "openid" in scope.split():
            subject = self.options.subject
            claims = {
                "iss": self.issuer(),
                "sub": subject,
                "aud": client_id,
                "iat": now,
                "exp": now + ID_TOKEN_TTL_S,
                "preferred_username": subject,
            }
            payload["id_token"] = sign_jwt(self.signing_key, self.signing_kid, claims)
        return payload

    def revoke_family_locked(self, family: str) -> None:
        for token in self.tokens.values():
            if token.family == family:
                token.active = False

    def active_token_locked(self, value: str) -> Token | None:
        token = self.tokens.get(value)
        if token is None or not token.active or token.expired(self.clock()):
            return None
        return token

    # ----------------------------------------------------------------- the request log

    def record(self, req: Request, reply: Reply) -> None:
        record = RequestRecord(
            req.method, req.path, req.arrived_at, req.connection_id, reply.outcome, reply.detail
        )
        with self.lock:
            self._records.append(record)

    def stats(self) -> SandboxStats:
        with self.lock:
            return SandboxStats(tuple(self._records))
