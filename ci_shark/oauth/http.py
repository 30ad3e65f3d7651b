"""The one HTTP client of a run: timeouts, bounded retries, a body cap, the https rule, DPoP.

Everything the server sends back is reduced to a :class:`Reply`: the status, the headers
and the body parsed as a JSON object when it is one. Callers decide on ``body["error"]``,
never on the status alone (GitHub answers device-flow errors with HTTP 200).
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from ci_shark import __version__
from ci_shark.errors import ProtocolError, TransportError, untrusted
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.tls import context_for
from ci_shark.oauth.watchdog import Sockets, Watchdog
from ci_shark.secret import Secret
from ci_shark.urls import origin, url_problem, without_userinfo

MAX_BODY_BYTES = 1024 * 1024
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=30.0, write=10.0, pool=10.0)
# 500/502/503/504 are the outages worth waiting out; 501 means "not implemented" and is final.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSIENT_OAUTH_ERRORS = frozenset({"server_error", "temporarily_unavailable"})
_LOOPBACK_PATTERNS = ("all://127.0.0.1", "all://localhost", "all://[::1]")
BACKOFF_FIRST_S = 0.5
# httpx drops an idle connection after 5 s, and RFC 8628's default interval is 5 s: every
# poll would pay a new TCP (and TLS) handshake. 120 s outlasts the intervals servers use,
# slow_down included; a longer gap, or a server closing sooner, just means a new connection
# (a connection dropped in the very instant of a poll costs that poll: the next one is on
# a new connection, one interval later).
KEEPALIVE_S = 120.0
BACKOFF_MAX_S = 8.0

Form = Mapping[str, str | Secret | Sequence[str]]


@dataclass(frozen=True)
class Reply:
    status: int
    headers: httpx.Headers
    body: dict[str, Any] | None

    @property
    def error(self) -> str | None:
        """The RFC 6749 ``error`` code, when the body carries one."""
        if self.body is None:
            return None
        error = self.body.get("error")
        return error if isinstance(error, str) and error else None

    @property
    def error_description(self) -> str | None:
        if self.body is None:
            return None
        description = self.body.get("error_description")
        return description if isinstance(description, str) else None


@dataclass(frozen=True)
class _Call:
    method: str
    url: str
    deadline: float
    form: Form | None
    dpop: DPoPKey | None
    access_token: Secret | None
    basic_auth: tuple[str, Secret] | None


class TransientFailure(TransportError):
    """A failure worth trying again: network error, 5xx, 429, a body cut short."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ResponseTooLarge(Exception):
    pass


def _form_items(form: Form) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for name, value in form.items():
        if isinstance(value, Secret):
            items.append((name, value.reveal()))
        elif isinstance(value, str):
            items.append((name, value))
        else:
            items.extend((name, one) for one in value)
    return items


def _retry_after_s(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _www_authenticate_error(headers: httpx.Headers) -> str | None:
    """``error`` from a ``WWW-Authenticate: DPoP error="..."`` challenge (resource servers)."""
    challenge = headers.get("www-authenticate", "")
    marker = 'error="'
    start = challenge.find(marker)
    if start < 0:
        return None
    end = challenge.find('"', start + len(marker))
    return challenge[start + len(marker) : end] if end > 0 else None


class OAuthHttp:
    """One ``httpx.Client`` per run, so every request reuses the same connection."""

    def __init__(
        self,
        *,
        ca_bundle: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        max_body_bytes: int = MAX_BODY_BYTES,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        self._client = httpx.Client(
            transport=transport,
            limits=httpx.Limits(keepalive_expiry=keepalive_s),
            # An injected transport brings its own TLS: no CA bundle to load then.
            verify=context_for(ca_bundle) if transport is None else True,
            timeout=timeout,
            follow_redirects=False,  # a redirected POST could carry the device code elsewhere
            # Only for HTTPS_PROXY/NO_PROXY (self-hosted runners behind a proxy): the trust
            # is the context above, and httpx reads no .netrc by itself.
            trust_env=True,
            # ...but never for loopback: a local server's traffic stays off any proxy.
            mounts={pattern: None for pattern in _LOOPBACK_PATTERNS},
            headers={"Accept": "application/json", "User-Agent": f"ci_shark/{__version__}"},
        )
        self._timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._max_body_bytes = max_body_bytes
        self._nonces: dict[str, str] = {}
        self._sockets = Sockets()
        self.requests_sent = 0

    def __enter__(self) -> OAuthHttp:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def dpop_nonce(self, url: str) -> str | None:
        """The newest ``DPoP-Nonce`` this server (origin) sent us."""
        return self._nonces.get(origin(url))

    def request(
        self,
        method: str,
        url: str,
        *,
        deadline: float,
        form: Form | None = None,
        dpop: DPoPKey | None = None,
        access_token: Secret | None = None,
        basic_auth: tuple[str, Secret] | None = None,
        retry: bool = True,
    ) -> Reply:
        """Send until an answer that is not transient, or the deadline.

        With ``retry=False`` a transient failure raises :class:`TransientFailure` at once:
        the device-flow poller paces its own retries by the polling interval.
        """
        problem = url_problem(url)
        if problem:
            raise ProtocolError(
                f"refusing to send to {untrusted(without_userinfo(url))}: the URL {problem}"
            )
        call = _Call(method, url, deadline, form, dpop, access_token, basic_auth)
        backoff_s = BACKOFF_FIRST_S
        while True:
            try:
                return self._send_with_nonce_retry(call)
            except TransientFailure as failure:
                if not retry:
                    raise
                # Jitter spreads retries; the backoff is a floor under Retry-After, so a
                # server saying "retry now" (0, or a past date) is not hammered.
                wait_s = backoff_s * (0.5 + self._jitter() / 2)
                backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
                if failure.retry_after_s is not None:
                    wait_s = max(wait_s, failure.retry_after_s)
                if self._clock() + wait_s >= deadline:
                    raise TransportError(
                        f"{failure.message}; gave up at the deadline",
                        hint="check that the authorization server is up and reachable from CI",
                    ) from None
                self._sleep(wait_s)

    def _send_with_nonce_retry(self, call: _Call) -> Reply:
        sent_nonce = self.dpop_nonce(call.url)
        reply = self._send_once(call)
        if call.dpop is None or reply.status not in (400, 401):
            return reply
        error = reply.error or _www_authenticate_error(reply.headers)
        fresh_nonce = self.dpop_nonce(call.url)
        if error == "use_dpop_nonce" and fresh_nonce is not None and fresh_nonce != sent_nonce:
            # RFC 9449 §8: retry once, with a new proof carrying the server's nonce.
            return self._send_once(call)
        return reply

    def _send_once(self, call: _Call) -> Reply:
        method, url, form, dpop = call.method, call.url, call.form, call.dpop
        access_token, basic_auth = call.access_token, call.basic_auth
        remaining_s = call.deadline - self._clock()
        if remaining_s <= 0:
            raise TransportError("the deadline passed before the request could be sent")
        headers: dict[str, str] = {}
        if dpop is not None:
            headers["DPoP"] = dpop.proof(
                method, url, nonce=self.dpop_nonce(url), access_token=access_token
            )
            if access_token is not None:
                headers["Authorization"] = f"DPoP {access_token.reveal()}"
        elif access_token is not None:
            headers["Authorization"] = f"Bearer {access_token.reveal()}"
        if basic_auth is not None:
            headers["Authorization"] = _basic_authorization(basic_auth[0], basic_auth[1])
        content = None
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            content = urlencode(_form_items(form)).encode("ascii")
        timeout = httpx.Timeout(
            connect=min(self._timeout.connect or remaining_s, remaining_s),
            read=min(self._timeout.read or remaining_s, remaining_s),
            write=min(self._timeout.write or remaining_s, remaining_s),
            pool=min(self._timeout.pool or remaining_s, remaining_s),
        )
        request = self._client.build_request(
            method,
            url,
            content=content,
            headers=headers,
            timeout=timeout,
            extensions={"trace": self._sockets.trace},
        )
        self.requests_sent += 1
        where = untrusted(url)
        watchdog = Watchdog(self._sockets, remaining_s)
        try:
            response = self._client.send(request, stream=True)
            try:
                raw = self._read_capped(response, call.deadline)
            finally:
                response.close()
        except ResponseTooLarge:
            message = f"{where} sent a response larger than {self._max_body_bytes} bytes"
            if response.status_code >= 500 or response.status_code in TRANSIENT_STATUSES:
                raise TransientFailure(message) from None
            raise ProtocolError(message) from None
        except httpx.TransportError as exc:
            if watchdog.fired:
                raise TransientFailure(f"{where}: no complete answer by the deadline") from None
            # The exception text is httpx's own (no response data), but keep it short.
            detail = f"{type(exc).__name__}: {untrusted(exc, 120)}"
            raise TransientFailure(f"{where}: {detail}") from None
        finally:
            watchdog.disarm()

        nonce = response.headers.get("dpop-nonce")
        if nonce and nonce.isprintable() and len(nonce) <= 1024:
            self._nonces[origin(url)] = nonce
        reply = Reply(response.status_code, response.headers, _json_object(raw))
        if reply.status in TRANSIENT_STATUSES and (
            reply.error is None or reply.error in TRANSIENT_OAUTH_ERRORS
        ):
            raise TransientFailure(
                f"{where} answered HTTP {reply.status}",
                retry_after_s=_retry_after_s(response.headers),
            )
        return reply

    def _read_capped(self, response: httpx.Response, deadline: float) -> bytes:
        """The body, up to the size cap and the deadline: httpx's read timeout is per read,
        so a server sending a byte at a time would otherwise hold us past the deadline."""
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self._max_body_bytes:
            raise ResponseTooLarge
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self._max_body_bytes:
                raise ResponseTooLarge
            if self._clock() > deadline:
                raise httpx.ReadTimeout("the response was still arriving at the deadline")
            chunks.append(chunk)
        return b"".join(chunks)


def _basic_authorization(client_id: str, client_secret: Secret) -> str:
    # RFC 6749 §2.3.1: form-urlencode both parts before base64.
    pair = f"{quote(client_id, safe='')}:{quote(client_secret.reveal(), safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return parsed if isinstance(parsed, dict) else None
