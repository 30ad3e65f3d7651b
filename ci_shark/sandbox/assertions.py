"""RFC 7523 client authentication with a CI's OIDC token: every check but the client policy.

In this order, each failure an ``AssertionRefused`` whose reason a person can act on:

1. the form: ``client_assertion_type`` is RFC 7523's jwt-bearer and ``client_assertion`` a
   compact JWS (both or neither);
2. the header: ``alg`` is RS256 or ES256, refused before any key is looked at (``none``, and
   an HS256 token "signed" with the issuer's public key as the HMAC secret, never verify);
   no ``crit``;
3. ``iss`` is the trusted issuer (read before the signature only to say whose token it is);
4. the signature, with the issuer's key of that ``alg`` (and ``kid``);
5. ``aud`` is this server's issuer, alone (a string, or a list of it only): a token for
   several audiences lets each present it to the others as the client (audience
   injection; draft-ietf-oauth-rfc7523bis has the server refuse any other audience);
6. ``exp`` (required), ``nbf`` and ``iat`` within ``SKEW_S`` of this server's clock;
7. ``jti`` (required) is taken once per issuer until the token expires, unless reuse is on
   (a CI that gives one token per job, as GitLab's ``id_tokens:``).

A reason never quotes the token. It may show a claim's value once the signature holds, and
the unverified ``iss`` or ``kid`` only as short printable text.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ci_shark.sandbox.jose import Jws, decode_jws, es256_verify, rs256_verify
from ci_shark.sandbox.jwks import IssuerKeys

JWT_BEARER: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS: Final = ("RS256", "ES256")
SKEW_S: Final = 60
MAX_ASSERTION_CHARS: Final = 16 * 1024
MAX_SHOWN_CHARS: Final = 120


class AssertionRefused(Exception):
    """The client assertion does not authenticate; ``reason`` says why and what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def shown(value: object) -> str:
    """A claim or header value fit for an error message: short printable text, quoted."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > MAX_SHOWN_CHARS or not text.isprintable():
        return "(a value not shown)"
    return f"'{text}'"


def _utc(epoch: float) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _split(assertion: str) -> Jws:
    if len(assertion) > MAX_ASSERTION_CHARS:
        raise AssertionRefused(f"client_assertion is longer than {MAX_ASSERTION_CHARS} characters")
    segments = assertion.split(".")
    if len(segments) != 3:
        raise AssertionRefused(
            "client_assertion is not a signed JWT (three base64url parts): send the CI's "
            "OIDC token as it was issued"
        )
    try:
        return decode_jws(segments)
    except ValueError as exc:
        raise AssertionRefused(f"client_assertion is not a well-formed JWT: {exc}") from exc


def _check_header(header: Mapping[str, Any]) -> str:
    alg = header.get("alg")
    if alg is None:
        raise AssertionRefused("client_assertion has no alg: send the CI's OIDC token as issued")
    if alg not in ALGORITHMS:
        raise AssertionRefused(
            f"client_assertion alg {shown(alg)} is not accepted: a CI's OIDC token is signed "
            "with RS256 or ES256 by its issuer"
        )
    if "crit" in header:
        raise AssertionRefused("client_assertion has critical header parameters (crit)")
    return str(alg)


def _signature_holds(keys: IssuerKeys, jws: Jws, alg: str) -> bool:
    kid = jws.header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise AssertionRefused("client_assertion kid must be a string")
    for candidate in keys.candidates(kid, alg):
        key = candidate.key
        if isinstance(key, rsa.RSAPublicKey) and rs256_verify(
            key, jws.signing_input, jws.signature
        ):
            return True
        if isinstance(key, ec.EllipticCurvePublicKey) and es256_verify(
            key, jws.signing_input, jws.signature
        ):
            return True
    return False


def _check_audience(claims: Mapping[str, Any], audience: str) -> None:
    aud = claims.get("aud")
    names = aud if isinstance(aud, list) else [aud]
    if audience not in names:
        raise AssertionRefused(
            f"client_assertion aud is {shown(aud)}, not this server's issuer '{audience}': "
            f"request the CI token with audience {audience}"
        )
    if len(names) > 1:
        raise AssertionRefused(
            f"client_assertion aud names other audiences too ({shown(aud)}): any of them could "
            f"present it here as this client; request the CI token with audience {audience} "
            "alone"
        )


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AssertionRefused(f"client_assertion {name} must be a number (seconds since 1970)")
    return float(value)


def _check_times(claims: Mapping[str, Any], now: float) -> float:
    """The expiry (epoch seconds) once exp, nbf and iat hold."""
    exp = _number(claims, "exp")
    if exp is None:
        raise AssertionRefused("client_assertion has no exp: RFC 7523 requires one")
    if now > exp + SKEW_S:
        raise AssertionRefused(
            f"the CI token expired at {_utc(exp)} (this server's time: {_utc(now)}, "
            f"{SKEW_S} s of leeway): fetch a fresh CI token for each request"
        )
    nbf = _number(claims, "nbf")
    if nbf is not None and now < nbf - SKEW_S:
        raise AssertionRefused(
            f"the CI token is not valid before {_utc(nbf)} (this server's time: {_utc(now)}): "
            "check the clocks"
        )
    iat = _number(claims, "iat")
    if iat is not None and now < iat - SKEW_S:
        raise AssertionRefused(
            f"the CI token was issued in the future ({_utc(iat)}; this server's time: "
            f"{_utc(now)}): check the clocks"
        )
    return exp


class ReplayMemory:
    """The (issuer, jti) pairs taken, each kept until its token expires (plus the skew)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until: dict[tuple[str, str], float] = {}

    def take(self, issuer: str, jti: str, expires_at: float, now: float) -> bool:
        """True the first time; False for a replay."""
        with self._lock:
            for seen, until in list(self._until.items()):
                if until < now:
                    del self._until[seen]
            if (issuer, jti) in self._until:
                return False
            self._until[(issuer, jti)] = expires_at + SKEW_S
            return True


@dataclass(frozen=True)
class VerifiedToken:
    claims: dict[str, Any]
    jti: str
    expires_at: float  # epoch seconds


@dataclass(frozen=True)
class AssertionChecks:
    """What a CI token must satisfy here, whoever the client is."""

    issuer: Callable[[], str]  # the trusted CI issuer's iss
    keys: IssuerKeys
    token_reuse: bool = False
    replays: ReplayMemory = field(default_factory=ReplayMemory)

    def verify(
        self, assertion_type: str | None, assertion: str | None, *, audience: str, now: float
    ) -> VerifiedToken:
        """The token, once checks 1-6 of the module's list hold (``take_once`` is 7)."""
        if assertion_type != JWT_BEARER:
            raise AssertionRefused(f"client_assertion_type must be {JWT_BEARER}")
        if not assertion:
            raise AssertionRefused(
                "client_assertion is missing: send the CI's OIDC token beside its type"
            )
        jws = _split(assertion)
        alg = _check_header(jws.header)
        trusted = self.issuer()
        iss = jws.claims.get("iss")
        if iss != trusted:
            raise AssertionRefused(
                f"the CI token's issuer is {shown(iss)}; this server trusts CI tokens from "
                f"'{trusted}' only"
            )
        if not _signature_holds(self.keys, jws, alg):
            raise AssertionRefused(
                f"the CI token's signature does not verify with the keys of '{trusted}' "
                f"(from {self.keys.source}): the token was altered, or signed by another key"
            )
        claims = jws.claims
        _check_audience(claims, audience)
        expires_at = _check_times(claims, now)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise AssertionRefused("client_assertion has no jti: RFC 7523 one-time use needs one")
        return VerifiedToken(claims, jti, expires_at)

    def take_once(self, token: VerifiedToken, now: float) -> None:
        """Check 7: the token's jti, once (unless reuse is on)."""
        if self.token_reuse:
            return
        if not self.replays.take(self.issuer(), token.jti, token.expires_at, now):
            raise AssertionRefused(
                "this CI token was already used (its jti): fetch a fresh CI token for every "
                "request, a retry after use_dpop_nonce included"
            )
