"""Workload identity: which verified CI tokens may authenticate which client.

A rule ``CLIENT:CLAIM=GLOB`` (``--ci-allow``) lets a CI token that passed every check of
``assertions.py`` authenticate the client ``CLIENT`` (``*``: every client) when the token's
claim ``CLAIM`` is a string matching ``GLOB``: ``fnmatch``, case-sensitive, where ``*`` also
spans ``/`` and a pattern without ``*?[`` is plain equality. Every rule that applies to a
client must hold. The pattern may contain ``:`` and ``=`` (``sub`` values do); the client id
is what comes before the last ``:`` ahead of the first ``=``.

A client some rule applies to must authenticate with a CI token on every request that
authenticates a client (device authorization, each poll, refresh, revoke): without one, or
with a client secret instead, it is refused. A client no rule names keeps its old ways
(public, or its secret), and a CI token sent for it is refused: no policy says whose it may be.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ci_shark.sandbox.assertions import AssertionChecks, AssertionRefused, shown
from ci_shark.sandbox.jwks import IssuerKeys, parse_jwks

if TYPE_CHECKING:
    from ci_shark.sandbox.ci_issuer import FakeCiIssuer
    from ci_shark.sandbox.options import SandboxOptions

ANY_CLIENT = "*"
RULE_SYNTAX = "CLIENT:CLAIM=GLOB, e.g. ci-shark:repository=octo/app"


@dataclass(frozen=True)
class ClaimRule:
    client_id: str
    claim: str
    pattern: str

    @classmethod
    def parse(cls, text: str) -> ClaimRule:
        target, equals, pattern = text.partition("=")
        client_id, colon, claim = target.rpartition(":")
        if not (equals and colon and client_id.strip() and claim.strip() and pattern):
            raise ValueError(f"--ci-allow {text!r}: write {RULE_SYNTAX}")
        return cls(client_id.strip(), claim.strip(), pattern)

    def __str__(self) -> str:
        return f"{self.client_id}:{self.claim}={self.pattern}"

    def applies_to(self, client_id: str) -> bool:
        return self.client_id in (ANY_CLIENT, client_id)

    def refusal(self, claims: Mapping[str, Any]) -> str | None:
        """Why ``claims`` break this rule; None when they keep it."""
        value = claims.get(self.claim)
        if value is None:
            return f"the CI token has no {self.claim} claim (the rule is {self})"
        if not isinstance(value, str):
            return f"the CI token's {self.claim} is not a string (the rule is {self})"
        if not fnmatch.fnmatchcase(value, self.pattern):
            return f"{self.claim} is {shown(value)}, and the rule is {self}"
        return None


@dataclass(frozen=True)
class CiIdentity:
    """A CI token's claims, verified by this server: who asks, as the CI itself says."""

    issuer: str
    claims: Mapping[str, Any]


class CiTrust:
    """A trusted CI issuer and the rules that say which of its tokens authenticate whom."""

    def __init__(self, checks: AssertionChecks, rules: Sequence[ClaimRule]) -> None:
        self.checks = checks
        self.rules = tuple(rules)

    @property
    def issuer(self) -> str:
        return self.checks.issuer()

    def requires_identity(self, client_id: str) -> bool:
        return any(rule.applies_to(client_id) for rule in self.rules)

    def authenticate(
        self,
        client_id: str,
        assertion_type: str | None,
        assertion: str | None,
        *,
        audience: str,
        now: float,
    ) -> CiIdentity:
        """The verified identity behind a request for ``client_id``; AssertionRefused."""
        rules = [rule for rule in self.rules if rule.applies_to(client_id)]
        if not rules:
            raise AssertionRefused(
                f"client '{client_id}' accepts no CI token on this server: no --ci-allow "
                f"rule names it ({RULE_SYNTAX})"
            )
        token = self.checks.verify(assertion_type, assertion, audience=audience, now=now)
        for rule in rules:
            reason = rule.refusal(token.claims)
            if reason is not None:
                raise AssertionRefused(
                    f"client '{client_id}' does not accept this CI identity: {reason}"
                )
        self.checks.take_once(token, now)
        return CiIdentity(self.issuer, token.claims)


def trust_from_options(options: SandboxOptions, fake: FakeCiIssuer | None) -> CiTrust | None:
    """The trust the options configure (None: no CI issuer); JwksError for unusable keys."""
    if options.fake_ci_issuer:
        if fake is None:
            raise ValueError("fake_ci_issuer needs the FakeCiIssuer the server started")
        keys = IssuerKeys(parse_jwks(fake.jwks_document()), source="the fake CI issuer")
        default = ClaimRule(ANY_CLIENT, "repository", str(fake.claims["repository"]))
        return _trust(lambda: fake.url, keys, options.ci_allow or (default,), options)
    if options.trust_ci_issuer is None:
        return None
    named = options.ci_issuer or ""
    keys = IssuerKeys.load(options.trust_ci_issuer)
    return _trust(lambda: named, keys, options.ci_allow, options)


def _trust(
    issuer: Callable[[], str],
    keys: IssuerKeys,
    rules: Sequence[ClaimRule],
    options: SandboxOptions,
) -> CiTrust:
    checks = AssertionChecks(issuer=issuer, keys=keys, token_reuse=options.ci_token_reuse)
    return CiTrust(checks, rules)
