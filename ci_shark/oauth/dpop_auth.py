"""DPoP on the wire (RFC 9449 §8, §9): a proof on every request, and one nonce retry.

Its rules:

- Every request gets a fresh proof (a new ``jti``), with the newest ``DPoP-Nonce`` the
  server (origin) sent on any response, and ``ath`` when a token goes along.
- A server that demands a nonce newer than the one sent gets exactly one retry, with a
  new proof. A resource says so in a 401's headers (§9: ``WWW-Authenticate: DPoP
  error="use_dpop_nonce"``, or a bare 401 that brings a fresh ``DPoP-Nonce``, as glewlwyd
  does). An authorization server says so in a JSON 400 (§8), read when no token goes
  along (the transport caps it), or, with a token (a call relayed by `proxy`), only when
  it has the shape of one: uncompressed JSON of at most ``MAX_CHALLENGE_BYTES``. Any other
  answer's body is never read: it may be anything, and the caller streams it on.
- A request whose body was streamed (not held in memory) cannot be sent twice: its
  challenge goes back to the caller, which must learn the server's nonce first. A form
  is made anew for the retry when its maker is given (``body``): a client assertion in it
  is single-use, and the server may have taken it before asking for the nonce.

:class:`DPoPAuth` is an ``httpx.Auth`` flow, like httpx's ``DigestAuth``: a generator with
no I/O of its own, driven by :meth:`ci_shark.oauth.http.HttpClient.send`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator

import httpx

from ci_shark.oauth.dpop import DPoPKey
from ci_shark.secret import Secret
from ci_shark.urls import origin

MAX_NONCE_CHARS = 1024
MAX_CHALLENGE_BYTES = 16 * 1024  # a 400 that says use_dpop_nonce is a few dozen bytes


class NonceMemory:
    """The newest ``DPoP-Nonce`` each server (origin) sent, learnt from every response."""

    def __init__(self) -> None:
        self._by_origin: dict[str, str] = {}

    def learn(self, response: httpx.Response) -> None:
        nonce = response.headers.get("dpop-nonce")
        if nonce and nonce.isprintable() and nonce.isascii() and len(nonce) <= MAX_NONCE_CHARS:
            self._by_origin[origin(str(response.request.url))] = nonce

    def get(self, url: str) -> str | None:
        return self._by_origin.get(origin(url))


class DPoPAuth(httpx.Auth):
    """A proof on each request, ``Authorization: DPoP`` when a token goes along, and the
    one retry the server's nonce demands (see the module's rules)."""

    def __init__(
        self,
        key: DPoPKey,
        nonces: NonceMemory,
        access_token: Secret | None = None,
        *,
        body: Callable[[], bytes] | None = None,
    ):
        self._key = key
        self._nonces = nonces  # learnt by the client from every response, before we see it
        self._access_token = access_token
        # The retry's body, made anew: a form whose client assertion is single-use.
        self._body = body

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        replayable = isinstance(request.stream, httpx.ByteStream)  # a body held in memory
        sent_nonce = self._sign(request)
        response = yield request
        fresh_nonce = self._nonces.get(str(request.url))
        if fresh_nonce is None or fresh_nonce == sent_nonce:
            return
        if not self._demands_nonce(response):
            return
        if not replayable:
            return  # a body streamed on is gone: the caller gets the challenge (learn first)
        # Once, a new request with a new proof carrying the server's nonce.
        content = request.read() if self._body is None else self._body()
        headers = httpx.Headers(request.headers)
        headers["Content-Length"] = str(len(content))
        retry = httpx.Request(
            request.method,
            request.url,
            headers=headers,
            content=content,
            extensions=request.extensions,
        )
        self._sign(retry)
        yield retry

    def _sign(self, request: httpx.Request) -> str | None:
        """Put a fresh proof (and the token) on ``request``; the nonce it carries."""
        nonce = self._nonces.get(str(request.url))
        request.headers["DPoP"] = self._key.proof(
            request.method, str(request.url), nonce=nonce, access_token=self._access_token
        )
        if self._access_token is not None:
            request.headers["Authorization"] = f"DPoP {self._access_token.reveal()}"
        return nonce

    def _demands_nonce(self, response: httpx.Response) -> bool:
        if response.status_code == 401:  # a resource (§9): its headers say it
            return _challenge_error(response.headers) in ("use_dpop_nonce", None)
        if response.status_code != 400:
            return False
        if self._access_token is not None and not _small_json(response):
            return False  # anything else is the caller's, unread (the module's rules)
        # The authorization server (§8) says it in the body of a 400: read under the cap.
        response.read()
        try:
            body = json.loads(response.content)
        except (ValueError, RecursionError):
            return False
        return isinstance(body, dict) and body.get("error") == "use_dpop_nonce"


def _small_json(response: httpx.Response) -> bool:
    """An answer shaped like §8's: uncompressed JSON whose declared length is small."""
    declared = response.headers.get("content-length", "")
    return (
        "json" in response.headers.get("content-type", "").lower()
        and not response.headers.get("content-encoding")
        and declared.isascii()
        and declared.isdigit()
        and int(declared) <= MAX_CHALLENGE_BYTES
    )


def _challenge_error(headers: httpx.Headers) -> str | None:
    """``error`` from a ``WWW-Authenticate: DPoP error="..."`` challenge (resource servers)."""
    challenge = headers.get("www-authenticate", "")
    marker = 'error="'
    start = challenge.find(marker)
    if start < 0:
        return None
    end = challenge.find('"', start + len(marker))
    return challenge[start + len(marker) : end] if end > 0 else None
