"""DPoP (RFC 9449) by hand, independent of ci_shark's own implementation.

Built on joserfc so that the tests in test_provider.py prove the peer and the
approver work without relying on the client under test.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey


def ath(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class DpopKey:
    """A P-256 key that signs proofs and remembers the newest server nonce."""

    def __init__(self) -> None:
        self.key = ECKey.generate_key("P-256")
        self.nonce: str | None = None

    @property
    def jkt(self) -> str:
        return str(self.key.thumbprint())

    def public_jwk(self) -> dict[str, Any]:
        return dict(self.key.as_dict(private=False))

    def proof(
        self,
        method: str,
        url: str,
        *,
        nonce: str | None = None,
        access_token: str | None = None,
    ) -> str:
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.public_jwk()}
        claims: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "htm": method,
            "htu": url.split("?", 1)[0].split("#", 1)[0],
            "iat": int(time.time()),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if access_token is not None:
            claims["ath"] = ath(access_token)
        return jwt.encode(header, claims, self.key)

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
