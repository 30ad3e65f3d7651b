"""Workload identity: the job proves which run asks with its CI's OIDC token, sent as RFC
7523 client authentication on every request that authenticates the client (the device
authorization request, each poll, refresh, revoke), and the server, not the job, vouches
for what the approver reads.

Its rules:

1. Before any device code, the CI must be able to mint a token: its token service exists
   (``platforms.ci_identity.token_service`` says why not), and one token is fetched up
   front and checked (a JWT, its ``aud`` the audience, not expired). The first request
   carries that token.
2. The audience is `workload-identity-audience`, else the server's issuer from its
   metadata, else `auth-url`: the value RFC 7523 §3 has a server require in ``aud``.
3. A fresh token for each request, every retry included (``oauth.http.PerRequest``):
   a server takes a ``jti`` once, and a token lives minutes while a wait can last longer.
   A CI that mints one per job (GitLab) gives that one each time, and the log says so.
4. Each token is masked before it is used, and held as a :class:`Secret`; the newest
   ``KEPT_TOKENS`` stay alive, so that a server quoting one in its answer has it redacted
   (``secret.redact`` knows the live secrets only).
5. The approver reads the token's claims (``render.facts.ci_token_facts``), titled as
   proved to the server; the log says which subject asks.
6. Later commands authenticate the same way, untold: the login records the method and
   the audience (``SHARK_CLIENT_AUTH``, ``SHARK_WORKLOAD_IDENTITY_AUDIENCE``), never a token,
   and they fetch tokens of their own (``commands.find_server``).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from ci_shark.errors import ConfigError, ProtocolError
from ci_shark.oauth.device import DeviceFlow
from ci_shark.oauth.tokens import jwt_claims
from ci_shark.platforms.base import Platform
from ci_shark.platforms.ci_identity import GITLAB_ID_VARIABLE, CiTokenService, token_service
from ci_shark.render.facts import FactGroup, ci_token_facts
from ci_shark.safe_text import untrusted
from ci_shark.secret import Secret

KEPT_TOKENS = 16  # rule 4: a server's answer quotes what its request carried, if anything
AUDIENCE_NAME = "SHARK_WORKLOAD_IDENTITY_AUDIENCE"  # rule 6, in the credentials


class CiAssertions:
    """The client's assertions: the CI's OIDC token, one per request (rules 1, 3, 4). An
    instance is the token source ``oauth.tokens.Client`` calls for each send."""

    def __init__(
        self,
        service: CiTokenService,
        mask: Callable[[Sequence[Secret]], None],
        audience: str | None = None,
    ) -> None:
        self._service = service
        self._mask = mask
        self.audience = audience
        self._unsent: Secret | None = None  # fetched up front, for the first request
        self._kept: deque[Secret] = deque(maxlen=KEPT_TOKENS)

    @classmethod
    def of(cls, platform: Platform, audience: str | None = None) -> CiAssertions:
        """The assertions of the CI this job runs on; ConfigError when it mints none."""
        return cls(token_service(platform), platform.mask, audience)

    @property
    def reused(self) -> bool:
        return self._service.reused

    def __call__(self) -> Secret:
        """The token for the request being sent now."""
        token, self._unsent = self._unsent or self._fetch(), None
        return token

    def first(self, audience: str) -> dict[str, Any]:
        """Rule 1: the token the first request will carry, fetched now for the audience
        (rule 2: ``audience`` unless one was given) and checked; its claims."""
        self.audience = self.audience or audience
        token = self._fetch()
        claims = checked_claims(token, self.audience)
        self._unsent = token
        return claims

    def close(self) -> None:
        self._service.close()

    def _fetch(self) -> Secret:
        if self.audience is None:
            raise RuntimeError("the audience is not known yet: call first() before a request")
        token = self._service.fetch(self.audience)
        self._mask([token])
        self._kept.append(token)
        return token


def checked_claims(token: Secret, audience: str, *, now: float | None = None) -> dict[str, Any]:
    """The token's claims (unverified: the server verifies them), once they say that it is
    for ``audience`` and still valid: a mistake said now, before a device code."""
    claims = jwt_claims(token)
    if claims is None:
        raise ProtocolError("the CI's OIDC token is not a JWT whose claims can be read")
    aud = claims.get("aud")
    if audience not in (aud if isinstance(aud, list) else [aud]):
        shown = untrusted(aud if isinstance(aud, str) else str(aud), 200)
        raise ConfigError(
            f"the CI's OIDC token is for the audience {shown}, and the server expects "
            f"{untrusted(audience, 200)}",
            hint=f"on GitLab, set `aud: {untrusted(audience, 200)}` under `id_tokens:` "
            f"`{GITLAB_ID_VARIABLE}:`; or set `workload-identity-audience` to the audience the "
            "server expects",
        )
    expires = claims.get("exp")
    if isinstance(expires, (int, float)) and expires < (time.time() if now is None else now):
        when = datetime.fromtimestamp(expires, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        raise ConfigError(
            f"the CI's OIDC token expired at {when}",
            hint="a CI that mints one token per job (GitLab) must run the login early in the "
            "job, within the token's lifetime",
        )
    return claims


def prove(
    flow: DeviceFlow, assertions: CiAssertions, log: Callable[[str], None], *, deadline: float
) -> tuple[FactGroup, ...]:
    """Rules 1, 2 and 5 for a login: find the server's issuer, fetch and check the first
    token, say who asks; the facts the approver reads."""
    flow.endpoints(deadline=deadline)
    claims = assertions.first(flow.issuer)
    subject = claims.get("sub")
    how = (
        "the job's one token (this CI mints one per job) on every request"
        if assertions.reused
        else "a fresh one for each request"
    )
    log(
        f"ci_shark: authenticating with the CI's OIDC token for {untrusted(assertions.audience)}"
        f" (subject {untrusted(subject if isinstance(subject, str) else '?', 200)}): {how}"
    )
    return (ci_token_facts(claims),)
