"""The sandbox's own JOSE: base64url, RFC 7638 thumbprints, ES256 and RS256, and DPoP proof
checks.

Written apart from ``ci_shark/oauth/dpop.py`` on purpose: the sandbox is the oracle the
client is tested against, so a misreading of RFC 9449 shared by both could never show.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

MAX_PROOF_CHARS: Final = 8 * 1024
DPOP_IAT_LEEWAY_S: Final = 60

PRIVATE_JWK_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_B64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]*")


class ProofError(ValueError):
    """A DPoP proof that is malformed or does not verify."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    # JOSE uses unpadded base64url; anything else (padding, '+', '/') is not a valid JWS.
    if not _B64URL_RE.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def json_object(data: bytes) -> dict[str, Any]:
    """Parse a JSON object, refusing duplicate members (a classic JOSE ambiguity)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ValueError(f"duplicate member {key!r}")
            result[key] = value
        return result

    value = json.loads(data, object_pairs_hook=no_duplicates)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


@dataclass(frozen=True)
class Jws:
    """A compact JWS with its parts decoded; nothing verified yet."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def decode_jws(segments: Sequence[str]) -> Jws:
    """The three segments of a compact JWS (split at its dots), decoded: ValueError when
    the header or the claims are not base64url of a JSON object, or the signature not
    base64url."""
    header, claims, signature = segments
    return Jws(
        json_object(b64url_decode(header)),
        json_object(b64url_decode(claims)),
        f"{header}.{claims}".encode("ascii"),
        b64url_decode(signature),
    )


def jwk_thumbprint(x: bytes, y: bytes) -> str:
    """RFC 7638 thumbprint of an EC P-256 key: required members, sorted, no whitespace."""
    canonical = json.dumps(
        {"crv": "P-256", "kty": "EC", "x": b64url_encode(x), "y": b64url_encode(y)},
        separators=(",", ":"),
        sort_keys=True,
    )
    return b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())


def public_coordinates(key: ec.EllipticCurvePrivateKey) -> tuple[bytes, bytes]:
    public = key.public_key().public_numbers()
    return public.x.to_bytes(32, "big"), public.y.to_bytes(32, "big")


def es256_public_jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    """The public half of a P-256 key as a JWKS lists it, ``kid`` its RFC 7638 thumbprint."""
    x, y = public_coordinates(key)
    jwk = {"kty": "EC", "crv": "P-256", "x": b64url_encode(x), "y": b64url_encode(y)}
    return {**jwk, "kid": jwk_thumbprint(x, y), "alg": "ES256", "use": "sig"}


def public_key_from_jwk(jwk: object) -> tuple[ec.EllipticCurvePublicKey, str]:
    if not isinstance(jwk, dict):
        raise ProofError("the jwk header must be a JSON object")
    if PRIVATE_JWK_MEMBERS & jwk.keys():
        raise ProofError("the jwk header must not contain private key members")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ProofError("the jwk header must be an EC P-256 key")
    coordinates: list[bytes] = []
    for name in ("x", "y"):
        member = jwk.get(name)
        if not isinstance(member, str):
            raise ProofError(f"the jwk header lacks {name}")
        try:
            decoded = b64url_decode(member)
        except ValueError as exc:
            raise ProofError(f"the jwk {name} is not base64url") from exc
        if len(decoded) != 32:
            raise ProofError(f"the jwk {name} must be 32 bytes")
        coordinates.append(decoded)
    x, y = coordinates
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
    )
    try:
        key = numbers.public_key()
    except ValueError as exc:  # the point is not on the curve
        raise ProofError("the jwk is not a valid P-256 point") from exc
    return key, jwk_thumbprint(x, y)


def es256_verify(key: ec.EllipticCurvePublicKey, signing_input: bytes, signature: bytes) -> bool:
    # JWS carries ES256 signatures as raw r || s (RFC 7518 §3.4); cryptography wants DER.
    if len(signature) != 64:
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def es256_sign(key: ec.EllipticCurvePrivateKey, signing_input: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def rs256_verify(key: rsa.RSAPublicKey, signing_input: bytes, signature: bytes) -> bool:
    try:
        key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def rs256_sign(key: rsa.RSAPrivateKey, signing_input: bytes) -> bytes:
    return key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())


SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def sign_jwt(key: SigningKey, kid: str, claims: Mapping[str, Any]) -> str:
    """A compact JWS over ``claims``: ES256 for an EC P-256 key, RS256 for an RSA key."""
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    header = {"alg": alg, "typ": "JWT", "kid": kid}
    segments = [
        b64url_encode(json.dumps(part, separators=(",", ":")).encode("utf-8"))
        for part in (header, claims)
    ]
    signing_input = ".".join(segments).encode("ascii")
    if isinstance(key, rsa.RSAPrivateKey):
        signature = rs256_sign(key, signing_input)
    else:
        signature = es256_sign(key, signing_input)
    return f"{segments[0]}.{segments[1]}.{b64url_encode(signature)}"


def normalise_htu(value: str) -> str | None:
    """Syntax-based normalisation (RFC 3986 §6.2.2): case of scheme/host, default port.

    Returns None for anything with a query, fragment or user info: htu must carry none.
    """
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if "?" in value or "#" in value or parts.username is not None or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    default_port = {"http": 80, "https": 443}.get(scheme)
    host = parts.hostname
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"


@dataclass(frozen=True)
class Proof:
    jkt: str
    jti: str
    nonce: str | None
    ath: str | None


def parse_dpop_proof(proof: str, *, method: str, url: str, now: float) -> Proof:
    """Check everything about a proof that needs no server state; raise ProofError."""
    if len(proof) > MAX_PROOF_CHARS:
        raise ProofError("the DPoP proof is too large")
    segments = proof.split(".")
    if len(segments) != 3:
        raise ProofError("the DPoP proof is not a compact JWS")
    try:
        jws = decode_jws(segments)
    except ValueError as exc:
        raise ProofError(f"the DPoP proof is malformed: {exc}") from exc
    header, claims = jws.header, jws.claims
    if header.get("typ") != "dpop+jwt":
        raise ProofError("the DPoP proof typ must be dpop+jwt")
    if header.get("alg") != "ES256":
        raise ProofError("the DPoP proof alg must be ES256")
    if "crit" in header:
        raise ProofError("the DPoP proof has critical headers this server does not understand")
    key, jkt = public_key_from_jwk(header.get("jwk"))
    if not es256_verify(key, jws.signing_input, jws.signature):
        raise ProofError("the DPoP proof signature does not verify")
    if claims.get("htm") != method:
        raise ProofError("the DPoP proof htm does not match the request method")
    htu = claims.get("htu")
    if not isinstance(htu, str) or normalise_htu(htu) != normalise_htu(url):
        raise ProofError("the DPoP proof htu does not match the request URL")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, (int, float)):
        raise ProofError("the DPoP proof lacks a numeric iat")
    if abs(iat - now) > DPOP_IAT_LEEWAY_S:
        raise ProofError("the DPoP proof iat is too far from the server time")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 256:
        raise ProofError("the DPoP proof lacks a jti")
    nonce = claims.get("nonce")
    ath = claims.get("ath")
    if nonce is not None and not isinstance(nonce, str):
        raise ProofError("the DPoP proof nonce must be a string")
    if ath is not None and not isinstance(ath, str):
        raise ProofError("the DPoP proof ath must be a string")
    return Proof(jkt=jkt, jti=jti, nonce=nonce, ath=ath)


def access_token_hash(token: str) -> str:
    return b64url_encode(hashlib.sha256(token.encode("ascii", "replace")).digest())
