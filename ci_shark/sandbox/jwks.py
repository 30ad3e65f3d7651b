"""The keys of a trusted CI issuer: a JWKS read from a file or fetched from a URL.

Rules:

- Only keys the verifier can use are kept: RSA of 2048 bits or more (RS256) and EC P-256
  (ES256). A key whose ``use`` is not ``sig``, or whose ``alg`` names another algorithm, is
  skipped; a key with private members makes the whole set an error (a JWKS that publishes a
  private key is a leak to stop at, not a key to use).
- A URL is https, or plain http to a loopback host: keys fetched over plain http from
  elsewhere could be swapped on the way. A fetch is bounded (5 s, 256 KiB) and follows no
  redirect.
- The keys are loaded when the server is built, so a bad file or an unreachable URL stops it
  at start. A URL is fetched again when a token names a ``kid`` it does not know (issuers
  rotate keys), at most once every 30 s, so a stream of made-up ``kid`` values costs nothing.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ci_shark.sandbox.jose import PRIVATE_JWK_MEMBERS, b64url_decode, json_object
from ci_shark.sandbox.wire import is_loopback

FETCH_TIMEOUT_S: Final = 5.0
MAX_JWKS_BYTES: Final = 256 * 1024
REFETCH_EVERY_S: Final = 30.0
MIN_RSA_BITS: Final = 2048

Alg = Literal["RS256", "ES256"]
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class JwksError(ValueError):
    """A key set that cannot be read or used; the message names its source."""


@dataclass(frozen=True)
class VerificationKey:
    kid: str | None
    alg: Alg
    key: PublicKey


def _member(jwk: dict[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise JwksError(f"a {jwk.get('kty')} key lacks {name}")
    try:
        return b64url_decode(value)
    except ValueError as exc:
        raise JwksError(f"a {jwk.get('kty')} key's {name} is not base64url") from exc


def _rsa_key(jwk: dict[str, Any]) -> rsa.RSAPublicKey:
    n = int.from_bytes(_member(jwk, "n"), "big")
    e = int.from_bytes(_member(jwk, "e"), "big")
    if n.bit_length() < MIN_RSA_BITS:
        raise JwksError(f"an RSA key has {n.bit_length()} bits; at least {MIN_RSA_BITS} needed")
    try:
        return rsa.RSAPublicNumbers(e, n).public_key()
    except ValueError as exc:
        raise JwksError("an RSA key is invalid") from exc


def _ec_key(jwk: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    x, y = _member(jwk, "x"), _member(jwk, "y")
    if len(x) != 32 or len(y) != 32:
        raise JwksError("a P-256 key's coordinates must be 32 bytes each")
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
    )
    try:
        return numbers.public_key()
    except ValueError as exc:
        raise JwksError("a P-256 key is not a point on the curve") from exc


def _usable_key(jwk: object) -> VerificationKey | None:
    if not isinstance(jwk, dict):
        raise JwksError("every member of keys must be a JSON object")
    if PRIVATE_JWK_MEMBERS & jwk.keys():
        raise JwksError("it holds private key members: a JWKS publishes public keys only")
    if jwk.get("use", "sig") != "sig":
        return None
    key: PublicKey
    alg: Alg
    if jwk.get("kty") == "RSA":
        alg, key = "RS256", _rsa_key(jwk)
    elif jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
        alg, key = "ES256", _ec_key(jwk)
    else:
        return None
    if jwk.get("alg", alg) != alg:
        return None
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise JwksError("a key's kid must be a string")
    return VerificationKey(kid, alg, key)


def parse_jwks(data: bytes) -> tuple[VerificationKey, ...]:
    """The RS256 and ES256 verification keys of a JWKS document (RFC 7517 §5)."""
    try:
        document = json_object(data)
    except ValueError as exc:
        raise JwksError(f"not a JSON object: {exc}") from exc
    members = document.get("keys")
    if not isinstance(members, list):
        raise JwksError('it has no "keys" list')
    keys = tuple(key for key in map(_usable_key, members) if key is not None)
    if not keys:
        raise JwksError("it holds no RS256 (RSA) or ES256 (P-256) signing key")
    return keys


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def check_url(url: str) -> None:
    split = urllib.parse.urlsplit(url)
    if split.scheme == "https" and split.hostname:
        return
    if split.scheme == "http" and split.hostname and is_loopback(split.hostname):
        return
    raise JwksError(f"{url}: keys come over https, or plain http from a loopback host only")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx becomes an HTTPError: the URL given is the one trusted


_OPENER: Final = urllib.request.build_opener(_NoRedirects)


def fetch_jwks(url: str) -> bytes:
    """GET ``url``: its body, at most MAX_JWKS_BYTES, within FETCH_TIMEOUT_S."""
    check_url(url)
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with _OPENER.open(request, timeout=FETCH_TIMEOUT_S) as response:
            body: bytes = response.read(MAX_JWKS_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise JwksError(f"cannot fetch {url}: {exc}") from exc
    if len(body) > MAX_JWKS_BYTES:
        raise JwksError(f"{url}: the key set is larger than {MAX_JWKS_BYTES} bytes")
    return body


class IssuerKeys:
    """The keys tokens are checked against; ``load`` reads them from a file or a URL."""

    def __init__(
        self,
        keys: Sequence[VerificationKey],
        *,
        source: str,
        url: str | None = None,
        fetch: Callable[[str], bytes] = fetch_jwks,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source  # where they came from, for messages
        self._keys = tuple(keys)
        self._url = url
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._fetched_at = clock()

    @classmethod
    def load(cls, source: str, *, fetch: Callable[[str], bytes] = fetch_jwks) -> IssuerKeys:
        """From a JWKS file, or an http(s) URL serving one. Raises JwksError."""
        if is_url(source):
            check_url(source)
            data = fetch(source)
        else:
            try:
                data = Path(source).read_bytes()
            except OSError as exc:
                raise JwksError(f"cannot read the JWKS file {source}: {exc.strerror}") from exc
        try:
            keys = parse_jwks(data)
        except JwksError as exc:
            raise JwksError(f"the JWKS at {source}: {exc}") from exc
        return cls(keys, source=source, url=source if is_url(source) else None, fetch=fetch)

    def candidates(self, kid: str | None, alg: str) -> list[VerificationKey]:
        """The keys that may have signed a token with this header: same ``alg``, and the
        ``kid`` when both name one. An unknown ``kid`` refetches a URL (rate-limited)."""
        found = self._matching(kid, alg)
        if not found and kid is not None and self._url is not None and self._may_refetch():
            try:
                keys = parse_jwks(self._fetch(self._url))
            except JwksError:
                return []  # keep the keys we had; this token is refused either way
            with self._lock:
                self._keys = keys
            found = self._matching(kid, alg)
        return found

    def _matching(self, kid: str | None, alg: str) -> list[VerificationKey]:
        with self._lock:
            keys = self._keys
        return [k for k in keys if k.alg == alg and (kid is None or k.kid in (kid, None))]

    def _may_refetch(self) -> bool:
        with self._lock:
            now = self._clock()
            if now - self._fetched_at < REFETCH_EVERY_S:
                return False
            self._fetched_at = now
            return True
