"""The protected-resource side: userinfo, and ``/api/*`` for clients that use the token.

A request presents ``Authorization: DPoP <token>`` with a proof (RFC 9449 §7: htm, htu
without query, ath, a fresh jti, the current nonce when nonces are on) or
``Authorization: Bearer <token>`` for an unbound token (RFC 6750). Errors are 401 challenges
in ``WWW-Authenticate``; with ``bare_nonce_challenge`` a missing or stale nonce gets a bare
401 carrying only ``DPoP-Nonce``, as glewlwyd answers. One nonce serves the token endpoint
and the resource alike, and ``htu`` must name ``server.url`` (the ``localhost`` origin below
is served, but proofs for it are refused).

- ``/api/echo`` (any method, credentials required) answers JSON: the method, the path and
  query, the body as text, the Content-Type, the other headers, and who the token is.
- ``/api/redirect?to=URL&status=302`` redirects to a path or a loopback http(s) URL
  (``localhost`` vs ``127.0.0.1`` is another origin on the same server).
- ``/api/bytes?n=N`` streams N bytes, byte i being ``i % 256``.

Credentials are optional on the last two; when present they are checked all the same.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

from ci_shark.sandbox.endpoints import EndpointGroup
from ci_shark.sandbox.jose import access_token_hash
from ci_shark.sandbox.state import Token
from ci_shark.sandbox.wire import (
    ANY_METHOD,
    BYTES_PATH,
    ECHO_PATH,
    NO_STORE,
    REDIRECT_PATH,
    USERINFO_PATH,
    OAuthError,
    Reply,
    Request,
    Routes,
    is_loopback,
    json_reply,
    resource_error,
    text_reply,
)

MAX_BYTES_N: Final = 256 * 1024 * 1024
REDIRECT_STATUSES: Final = ("301", "302", "303", "307", "308")
# Credentials are never echoed back: a test's stdout must not carry them.
_UNECHOED_HEADERS: Final = frozenset({"authorization", "dpop", "cookie", "proxy-authorization"})
_CHUNK: Final = bytes(range(256)) * 256  # 64 KiB of the pattern, a whole number of periods


@dataclass(frozen=True)
class Caller:
    scheme: Literal["DPoP", "Bearer"]
    token: Token


class BareNonceChallenge(OAuthError):
    """glewlwyd's answer to a missing or stale nonce: 401, no body, only ``DPoP-Nonce``."""

    def reply(self) -> Reply:
        return Reply(401, b"", None, list(NO_STORE), "use_dpop_nonce", self.description)


def byte_pattern(n: int) -> Iterator[bytes]:
    """N bytes, byte i being ``i % 256``, in chunks."""
    while n > 0:
        chunk = _CHUNK[:n]
        n -= len(chunk)
        yield chunk


def _redirect_target_allowed(target: str) -> bool:
    # A header value: printable ASCII, no spaces (a CR LF would split the response).
    if not target.isascii() or not target.isprintable() or " " in target:
        return False
    if target.startswith("/") and not target.startswith("//"):
        return True
    split = urllib.parse.urlsplit(target)
    return split.scheme in ("http", "https") and is_loopback(split.hostname or "")


class ResourceEndpoints(EndpointGroup):
    def routes(self) -> Routes:
        return {
            USERINFO_PATH: {"GET": self.userinfo, "POST": self.userinfo},
            ECHO_PATH: {ANY_METHOD: self.echo},
            REDIRECT_PATH: {ANY_METHOD: self.redirect},
            BYTES_PATH: {"GET": self.byte_stream, "HEAD": self.byte_stream},
        }

    # ----------------------------------------------------------------- endpoints

    def userinfo(self, req: Request) -> Reply:
        self.authenticate(req)
        subject = self._options.subject
        return json_reply(200, {"sub": subject, "preferred_username": subject}, "userinfo")

    def echo(self, req: Request) -> Reply:
        caller = self.authenticate(req)
        headers: dict[str, str] = {}
        for name, value in req.headers:
            key = name.lower()
            if key not in _UNECHOED_HEADERS:
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        payload: dict[str, Any] = {
            "method": req.method,
            "path": req.target,
            "content_type": req.header("Content-Type"),
            "body": req.body.decode("utf-8", "replace"),
            "headers": headers,
            "scheme": caller.scheme,
            "sub": self._options.subject,
            "scope": caller.token.scope,
            "client_id": caller.token.client_id,
            "jkt": caller.token.jkt,
        }
        reply = json_reply(200, payload, "echo")
        reply.detail = caller.scheme
        return reply

    def redirect(self, req: Request) -> Reply:
        who = self._optional_caller(req)
        target = req.query_value("to")
        if target is None or not _redirect_target_allowed(target):
            raise OAuthError(
                "invalid_request", "to must be a path (/...) or an http(s) URL on a loopback host"
            )
        status = req.query_value("status") or "302"
        if status not in REDIRECT_STATUSES:
            raise OAuthError(
                "invalid_request", f"status must be one of {', '.join(REDIRECT_STATUSES)}"
            )
        reply = text_reply(int(status), f"redirecting to {target}\n", "redirect")
        reply.headers.append(("Location", target))
        reply.detail = who
        return reply

    def byte_stream(self, req: Request) -> Reply:
        who = self._optional_caller(req)
        raw = req.query_value("n") or ""
        if not raw.isdigit() or int(raw) > MAX_BYTES_N:
            raise OAuthError("invalid_request", f"n must be a whole number from 0 to {MAX_BYTES_N}")
        n = int(raw)
        return Reply(
            200,
            content_type="application/octet-stream",
            headers=list(NO_STORE),
            outcome="bytes",
            detail=who,
            declared_length=n,
            stream=byte_pattern(n),
        )

    # ----------------------------------------------------------------- authentication

    def authenticate(self, req: Request) -> Caller:
        authorizations = req.header_values("Authorization")
        if len(authorizations) != 1:
            # RFC 6750 §3.1: no error code in the challenge when credentials are simply absent.
            raise OAuthError(
                "invalid_request",
                "exactly one Authorization header (DPoP or Bearer) is required",
                status=401,
                headers=[("WWW-Authenticate", 'DPoP algs="ES256", Bearer')],
            )
        scheme, _, value = authorizations[0].partition(" ")
        value = value.strip()
        if scheme.lower() == "dpop":
            return Caller("DPoP", self._dpop_token(req, value))
        if scheme.lower() == "bearer":
            return Caller("Bearer", self._bearer_token(value))
        raise resource_error("invalid_request", "use the DPoP or Bearer scheme")

    def _optional_caller(self, req: Request) -> str:
        """Check credentials when presented; say who called, for the request log."""
        if not req.header_values("Authorization"):
            return "anonymous"
        return self.authenticate(req).scheme

    def _dpop_token(self, req: Request, value: str) -> Token:
        try:
            proof = self._proofs.verify(req, self._issuer() + req.path, required=True)
        except OAuthError as error:
            raise self._challenge(error) from error
        assert proof is not None  # required=True never yields None
        if proof.ath != access_token_hash(value):
            raise resource_error("invalid_dpop_proof", "the DPoP proof ath does not match")
        with self._state.lock:
            token = self._state.active_token_locked(value)
        if token is None or token.kind != "access":
            raise resource_error("invalid_token", "the access token is not active")
        if token.jkt is None:
            raise resource_error("invalid_token", "the access token is not DPoP-bound")
        if token.jkt != proof.jkt:
            raise resource_error(
                "invalid_dpop_proof", "the DPoP key is not the one the token is bound to"
            )
        return token

    def _bearer_token(self, value: str) -> Token:
        with self._state.lock:
            token = self._state.active_token_locked(value)
        if token is None or token.kind != "access":
            raise resource_error("invalid_token", "the access token is not active", scheme="Bearer")
        if token.jkt is not None:
            # RFC 9449 §7.2: a bound token used as a bearer token is refused.
            raise resource_error("invalid_token", "a DPoP-bound token needs the DPoP scheme")
        return token

    def _challenge(self, error: OAuthError) -> OAuthError:
        """A proof refused as at the token endpoint, re-said the way a resource says it."""
        if error.error == "use_dpop_nonce" and self._options.bare_nonce_challenge:
            return BareNonceChallenge(error.error, error.description, status=401)
        return resource_error(error.error, error.description)
