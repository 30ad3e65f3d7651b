"""The server's DPoP memory: the nonce it demands and the proof ids (jti) it has seen."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Final

from ci_shark.sandbox.jose import DPOP_IAT_LEEWAY_S, Proof, ProofError, parse_dpop_proof
from ci_shark.sandbox.wire import OAuthError, Request

# A replay must reuse the proof's iat, which we accept for at most 2 * leeway after first sight.
JTI_MEMORY_S: Final = 2 * DPOP_IAT_LEEWAY_S + 10


class ProofVerifier:
    """Checks DPoP proofs against the server's state: one use per jti, the current nonce."""

    def __init__(
        self, *, require_nonce: bool, nonce_ttl_s: float, clock: Callable[[], float]
    ) -> None:
        self._require_nonce = require_nonce
        self._nonce_ttl_s = nonce_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._nonce = secrets.token_urlsafe(16)
        self._nonce_issued_at = clock()
        self._seen_jtis: dict[str, float] = {}  # jti -> wall time first seen, insertion-ordered

    @property
    def nonce(self) -> str:
        """The DPoP nonce the server currently demands."""
        with self._lock:
            return self._current_nonce_locked()

    def response_nonce(self) -> str | None:
        """The DPoP-Nonce header value for every response, when nonces are in force."""
        return self.nonce if self._require_nonce else None

    def rotate_nonce(self) -> str:
        with self._lock:
            self._nonce = secrets.token_urlsafe(16)
            self._nonce_issued_at = self._clock()
            return self._nonce

    def verify(self, req: Request, url: str, *, required: bool) -> Proof | None:
        """Validate the request's DPoP proof for ``url``; None when absent and not required.

        Failures are token-endpoint errors (400 JSON, RFC 9449 §5); resource endpoints turn
        them into 401 challenges (§7.1, §9).
        """
        values = req.header_values("DPoP")
        if not values:
            if required:
                raise OAuthError("invalid_dpop_proof", "a DPoP proof is required")
            return None
        if len(values) > 1:
            raise OAuthError("invalid_dpop_proof", "exactly one DPoP header is allowed")
        try:
            proof = parse_dpop_proof(values[0], method=req.method, url=url, now=time.time())
        except ProofError as exc:
            raise OAuthError("invalid_dpop_proof", str(exc)) from exc
        with self._lock:
            self._forget_old_jtis_locked()
            # Every signed proof burns its jti, even one refused for its nonce: the retry
            # after use_dpop_nonce must be a fresh proof.
            if proof.jti in self._seen_jtis:
                raise OAuthError("invalid_dpop_proof", "the DPoP proof jti was already used")
            self._seen_jtis[proof.jti] = time.time()
            if self._require_nonce and proof.nonce != self._current_nonce_locked():
                description = (
                    "the DPoP proof must carry the nonce from the DPoP-Nonce header"
                    if proof.nonce is None
                    else "the DPoP proof nonce is stale: use the newest DPoP-Nonce"
                )
                raise OAuthError("use_dpop_nonce", description)
        return proof

    def _current_nonce_locked(self) -> str:
        if self._clock() - self._nonce_issued_at >= self._nonce_ttl_s:
            self._nonce = secrets.token_urlsafe(16)
            self._nonce_issued_at = self._clock()
        return self._nonce

    def _forget_old_jtis_locked(self) -> None:
        horizon = time.time() - JTI_MEMORY_S
        while self._seen_jtis:
            oldest = next(iter(self._seen_jtis))
            if self._seen_jtis[oldest] >= horizon:
                break
            del self._seen_jtis[oldest]
