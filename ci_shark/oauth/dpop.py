"""RFC 9449 DPoP: a P-256 key, its RFC 7638 thumbprint, and ES256 proofs."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ci_shark.errors import ConfigError
from ci_shark.safe_text import untrusted
from ci_shark.secret import Secret, SecretBytes

_COORDINATE_BYTES = 32  # P-256


def htu_of(url: str) -> str:
    """The ``htu`` of a request to ``url`` (RFC 9449 §4.2): its target URI as it goes on the
    wire, without query and fragment. The one rule for every proof (`request`, the proxy,
    `session()`, the token endpoint, `proof --url`, the SDK's ``make_proof``): httpx's normal
    form, as it sends the request — scheme and host lowercased (the host IDNA-encoded), the
    default port dropped, dot segments removed, an empty path as ``/`` (RFC 9110 §4.2.3),
    no ``user:password@`` (not part of a target URI, RFC 9110 §7.1; httpx sends it as a
    header, and a proof must not carry a password). A server that compares ``htu`` as a
    string (§4.3 only asks it to normalise) then sees what it would compute from the
    request itself."""
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL:
        raise ConfigError(
            f"{untrusted(url, 200)} is not a valid URL", hint="pass the request's full URL"
        ) from None
    path = target.raw_path.partition(b"?")[0] or b"/"
    return str(target.copy_with(raw_path=path, fragment=None, userinfo=b""))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def access_token_hash(access_token: str) -> str:
    """The ``ath`` claim: base64url(SHA-256(access token))."""
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest())


class DPoPKey:
    """An ES256 key pair that signs DPoP proofs. Known to SharkAuth SDK users as ``DPoPProver``."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key.curve, ec.SECP256R1):
            raise ConfigError(
                f"the DPoP key uses curve {private_key.curve.name}, not P-256",
                hint="provide an EC P-256 private key (openssl ecparam -name prime256v1 -genkey)",
            )
        self._private_key = private_key
        numbers = private_key.public_key().public_numbers()
        self.public_jwk: dict[str, str] = {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(_COORDINATE_BYTES, "big")),
            "y": b64url(numbers.y.to_bytes(_COORDINATE_BYTES, "big")),
        }
        # RFC 7638: the required members, lexicographic order, no whitespace.
        canonical = json.dumps(self.public_jwk, sort_keys=True, separators=(",", ":"))
        self.jkt = b64url(hashlib.sha256(canonical.encode()).digest())

    @classmethod
    def generate(cls) -> DPoPKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, pem: str | bytes, password: bytes | None = None) -> DPoPKey:
        """A PKCS#8 or SEC1 PEM; ``password`` for an encrypted one (the SDK's signature)."""
        data = pem.encode() if isinstance(pem, str) else bytes(pem)
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError):
            # `from None`: the parser's message could quote key material.
            problem = (
                "an encrypted PEM that this password does not open"
                if password is not None
                else "not a readable unencrypted PEM private key"
            )
            raise ConfigError(
                f"the DPoP private key is {problem}",
                hint="provide a PKCS#8 or SEC1 PEM (BEGIN PRIVATE KEY / BEGIN EC PRIVATE KEY); "
                "an encrypted one needs its password",
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(
                "the DPoP private key is not an EC key",
                hint="provide an EC P-256 private key",
            )
        return cls(key)

    @classmethod
    def from_jwk(cls, jwk: str | Mapping[str, Any]) -> DPoPKey:
        try:
            fields = json.loads(jwk) if isinstance(jwk, str) else dict(jwk)
            if fields.get("kty") != "EC" or fields.get("crv") != "P-256":
                raise ValueError("not an EC P-256 JWK")
            d, x, y = (int.from_bytes(_b64url_decode(fields[k]), "big") for k in ("d", "x", "y"))
            numbers = ec.EllipticCurvePrivateNumbers(
                d, ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1())
            )
            key = numbers.private_key()
        except (ValueError, KeyError, TypeError, AttributeError):
            # The message must not echo the input: it is private key material.
            raise ConfigError(
                "the DPoP private key is not a valid private EC P-256 JWK",
                hint='provide {"kty":"EC","crv":"P-256","x":…,"y":…,"d":…} or a PEM',
            ) from None
        return cls(key)

    @classmethod
    def load(cls, text: str) -> DPoPKey:
        """A PEM or a JWK, whichever ``text`` is."""
        return cls.from_jwk(text) if text.lstrip().startswith("{") else cls.from_pem(text)

    def private_pem(self) -> Secret:
        return Secret(self._pkcs8_pem().decode("ascii"))

    def private_key_pem(self) -> SecretBytes:
        """The SharkAuth SDK's spelling: unencrypted PKCS#8 PEM bytes, which
        :meth:`from_pem` loads back (``repr`` shows ``***``)."""
        return SecretBytes(self._pkcs8_pem())

    def _pkcs8_pem(self) -> bytes:
        return self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def private_jwk(self) -> Secret:
        d = self._private_key.private_numbers().private_value.to_bytes(_COORDINATE_BYTES, "big")
        jwk = {**self.public_jwk, "d": b64url(d)}
        return Secret(json.dumps(jwk, separators=(",", ":")))

    def proof(
        self,
        htm: str,
        htu: str,
        *,
        nonce: str | None = None,
        access_token: str | Secret | None = None,
        now: float | None = None,
        jti: str | None = None,
    ) -> str:
        """A DPoP proof JWT for one request. Every call has a fresh ``jti`` unless a test
        names one."""
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.public_jwk}
        claims: dict[str, Any] = {
            "jti": jti or secrets.token_urlsafe(18),
            "htm": htm.upper(),
            "htu": htu_of(htu),
            "iat": int(time.time() if now is None else now),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if access_token is not None:
            token = access_token.reveal() if isinstance(access_token, Secret) else access_token
            claims["ath"] = access_token_hash(token)
        signing_input = ".".join(
            b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        der = self._private_key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        raw = r.to_bytes(_COORDINATE_BYTES, "big") + s.to_bytes(_COORDINATE_BYTES, "big")
        return f"{signing_input}.{b64url(raw)}"

    def make_proof(
        self,
        htm: str,
        htu: str,
        *,
        nonce: str | None = None,
        access_token: str | Secret | None = None,
        iat: int | None = None,
        jti: str | None = None,
    ) -> str:
        """SharkAuth SDK spelling of :meth:`proof`, with its signature: ``make_proof("POST",
        url)`` or ``make_proof(htm=…, htu=…, access_token=…)``; ``iat`` and ``jti`` are
        its overrides for tests."""
        return self.proof(htm, htu, nonce=nonce, access_token=access_token, now=iat, jti=jti)

    def __repr__(self) -> str:
        return f"DPoPKey(jkt={self.jkt!r})"


DPoPProver = DPoPKey
