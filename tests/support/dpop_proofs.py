"""DPoP (RFC 9449) by hand with joserfc, independent of ci_shark's own implementation, so a
bug in one cannot hide a bug in the other: the sandbox's tests and the interop suite's
peers check servers with these proofs, not with ``ci_shark.oauth.dpop``; and
:func:`verify_proof` checks ci_shark's proofs the way a resource server does."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.jwk import ECKey


def ath(access_token: str) -> str:
    """The proof's ``ath`` claim: base64url(SHA-256(token))."""
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def make_proof(
    key: ECKey,
    method: str,
    url: str,
    *,
    nonce: str | None = None,
    access_token: str | None = None,
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A proof for ``method url`` exactly as given (``htu`` is not trimmed); ``header`` and
    ``claims`` override or add to the well-formed ones, to build broken proofs."""
    payload: dict[str, Any] = {
        "htm": method,
        "htu": url,
        "iat": int(time.time()),
        "jti": str(uuid.uuid4()),
    }
    if nonce is not None:
        payload["nonce"] = nonce
    if access_token is not None:
        payload["ath"] = ath(access_token)
    payload.update(claims)
    jws_header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    jws_header.update(header or {})
    return jwt.encode(jws_header, payload, key)


class DpopKey:
    """A P-256 key that signs proofs and remembers the newest server nonce."""

    def __init__(self) -> None:
        self.key = ECKey.generate_key("P-256")
        self.nonce: str | None = None

    @property
    def jkt(self) -> str:
        return str(self.key.thumbprint())

    def proof(
        self,
        method: str,
        url: str,
        *,
        nonce: str | None = None,
        access_token: str | None = None,
    ) -> str:
        """A proof whose ``htu`` is ``url`` without its query and fragment."""
        htu = url.split("?", 1)[0].split("#", 1)[0]
        return make_proof(self.key, method, htu, nonce=nonce, access_token=access_token)

    def remember(self, response: httpx.Response) -> None:
        nonce = response.headers.get("DPoP-Nonce")
        if nonce:
            self.nonce = nonce

    def post(
        self, client: httpx.Client, url: str, data: dict[str, str], *, use_nonce: bool = True
    ) -> httpx.Response:
        """POST a form with a fresh proof (and the newest nonce, if any)."""
        proof = self.proof("POST", url, nonce=self.nonce if use_nonce else None)
        response = client.post(
            url, data=data, headers={"DPoP": proof, "Accept": "application/json"}
        )
        self.remember(response)
        return response

    def get_resource(
        self, client: httpx.Client, url: str, access_token: str, *, use_nonce: bool = True
    ) -> httpx.Response:
        proof = self.proof(
            "GET", url, nonce=self.nonce if use_nonce else None, access_token=access_token
        )
        response = client.get(url, headers={"Authorization": f"DPoP {access_token}", "DPoP": proof})
        self.remember(response)
        return response


class ProofRefused(Exception):
    """Why a server would refuse a proof (RFC 9449 §4.3); ``error`` is its OAuth code."""

    def __init__(self, error: str, reason: str) -> None:
        super().__init__(reason)
        self.error = error


def verify_proof(
    proof: str,
    *,
    method: str,
    url: str,
    access_token: str | None = None,
    nonce: str | None = None,
    max_age_s: float = 60.0,
) -> dict[str, Any]:
    """The claims of ``proof`` for ``method url``, checked as RFC 9449 §4.3 says (type,
    algorithm, a public key in the header and the signature by it, ``htm``, ``htu`` without
    query and fragment, ``iat``, ``ath`` for the token, the server's ``nonce``), plus the
    key's thumbprint as ``"jkt"``. A ``jti`` seen before is the caller's to refuse."""
    try:
        header = json.loads(base64.urlsafe_b64decode(proof.split(".", 1)[0] + "=="))
        key = ECKey.import_key(header["jwk"])
        verified = jws.deserialize_compact(proof, key)
        claims: dict[str, Any] = json.loads(verified.payload)
    except Exception as bad:  # any malformed proof is refused, whatever broke
        raise ProofRefused("invalid_dpop_proof", f"unreadable ({type(bad).__name__})") from None
    if header.get("typ") != "dpop+jwt" or header.get("alg") != "ES256":
        raise ProofRefused("invalid_dpop_proof", "typ/alg")
    if "d" in header["jwk"]:
        raise ProofRefused("invalid_dpop_proof", "a private key in the header")
    htu = url.split("?", 1)[0].split("#", 1)[0]
    if claims.get("htm") != method or claims.get("htu") != htu:
        raise ProofRefused("invalid_dpop_proof", f"htm/htu {claims.get('htm')} {claims.get('htu')}")
    if not isinstance(claims.get("iat"), int) or abs(time.time() - claims["iat"]) > max_age_s:
        raise ProofRefused("invalid_dpop_proof", "iat")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise ProofRefused("invalid_dpop_proof", "jti")
    if access_token is not None and claims.get("ath") != ath(access_token):
        raise ProofRefused("invalid_dpop_proof", "ath")
    if nonce is not None and claims.get("nonce") != nonce:
        raise ProofRefused("use_dpop_nonce", "nonce")
    claims["jkt"] = str(key.thumbprint())
    return claims
