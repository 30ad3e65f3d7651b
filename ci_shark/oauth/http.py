"""The one HTTP client of a run: timeouts, bounded retries, a body cap, the https rule, DPoP.

Everything the server sends back is reduced to a :class:`Reply`: the status, the headers
and the body parsed as a JSON object when it is one. Callers decide on ``body["error"]``,
never on the status alone (GitHub answers device-flow errors with HTTP 200).

Three layers, each with one job:

- :class:`CappedTransport` (under every connection, proxied or not) counts what comes off
  the wire and what it decodes to, and refuses anything past the cap: a 300-byte answer
  layered ``gzip, gzip, gzip`` must not cost gigabytes.
- :class:`DPoPAuth`, an ``httpx.Auth`` flow like httpx's ``DigestAuth``: a fresh proof on
  every request with the newest nonce of that server, and exactly one retry when the server
  demands a nonce (RFC 9449 §8 at a token endpoint, §9 at a resource).
- :class:`OAuthHttp`: the deadline, retries with backoff for transient failures, the
  watchdog for servers that drip, and the :class:`Reply`.
"""

from __future__ import annotations

import base64
import json
import random
import time
import zlib
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from ci_shark import __version__
from ci_shark.errors import ProtocolError, TransportError
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.tls import context_for
from ci_shark.oauth.watchdog import Sockets, Watchdog
from ci_shark.safe_text import untrusted
from ci_shark.secret import Secret
from ci_shark.urls import origin, url_problem, without_userinfo

USER_AGENT = f"ci_shark/{__version__}"
MAX_BODY_BYTES = 1024 * 1024
FIRST_LINE_BYTES = 400  # what a message quotes of a body that is not JSON, at most
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=30.0, write=10.0, pool=10.0)
# 500/502/503/504 are the outages worth waiting out; 501 means "not implemented" and is final.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSIENT_OAUTH_ERRORS = frozenset({"server_error", "temporarily_unavailable"})
LOOPBACK_PATTERNS = ("all://127.0.0.1", "all://localhost", "all://[::1]")
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 8.0
# httpx drops an idle connection after 5 s, and RFC 8628's default interval is 5 s: every
# poll would pay a new TCP (and TLS) handshake. 120 s outlasts the intervals servers use,
# slow_down included; a longer gap, or a server closing sooner, just means a new connection
# (a connection dropped in the very instant of a poll costs that poll: the next one is on
# a new connection, one interval later).
KEEPALIVE_S = 120.0
MAX_NONCE_CHARS = 1024

Form = Mapping[str, str | Secret | Sequence[str]]


@dataclass(frozen=True)
class Reply:
    status: int
    headers: httpx.Headers
    body: dict[str, Any] | None
    text: str = ""  # the start of a body that is not a JSON object, sanitised: for messages

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


class TransientFailure(TransportError):
    """A failure worth trying again: network error, 5xx, 429, a body cut short."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ResponseTooLarge(Exception):
    """More bytes came (or would come) off the wire, or out of a decoder, than the cap."""

    def __init__(self, status_code: int) -> None:
        super().__init__(status_code)
        self.status_code = status_code


class UnwantedEncoding(Exception):
    """A ``Content-Encoding`` we neither asked for nor decode with a bound."""


# -- the transport: a byte cap on what comes off the wire ---------------------------------


class _CappedStream(httpx.SyncByteStream):
    def __init__(
        self, inner: httpx.SyncByteStream, max_bytes: int, encoding: str | None, status: int
    ) -> None:
        self._inner = inner
        self._max_bytes = max_bytes
        self._status = status
        # gzip, or deflate with or without its zlib wrapper: one layer, decoded with a bound.
        self._decoder = (
            zlib.decompressobj(47 if encoding == "gzip" else zlib.MAX_WBITS) if encoding else None
        )

    def __iter__(self) -> Iterator[bytes]:
        received = produced = 0
        for chunk in self._inner:
            received += len(chunk)
            if received > self._max_bytes:
                raise ResponseTooLarge(self._status)
            if self._decoder is None:
                produced = received
                yield chunk
                continue
            try:
                # max_length: never more than the cap out of one chunk, whatever it holds.
                data = self._decoder.decompress(chunk, self._max_bytes - produced + 1)
            except zlib.error:
                raise httpx.DecodingError("the compressed body is damaged") from None
            produced += len(data)
            if produced > self._max_bytes or self._decoder.unconsumed_tail:
                raise ResponseTooLarge(self._status)
            yield data

    def close(self) -> None:
        self._inner.close()


class CappedTransport(httpx.BaseTransport):
    """Wraps a transport: at most ``max_bytes`` off the wire and out of decompression; one
    layer of gzip/deflate at most (we ask for none: ``Accept-Encoding: identity``)."""

    def __init__(self, inner: httpx.BaseTransport, max_bytes: int) -> None:
        self._inner = inner
        self._max_bytes = max_bytes

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        layers = [
            name.strip().lower()
            for name in response.headers.get("content-encoding", "").split(",")
            if name.strip() and name.strip().lower() != "identity"
        ]
        if len(layers) > 1 or (layers and layers[0] not in ("gzip", "x-gzip", "deflate")):
            response.close()
            raise UnwantedEncoding(", ".join(layers))
        declared = response.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self._max_bytes:
            response.close()
            raise ResponseTooLarge(response.status_code)
        headers = [
            (name, value)
            for name, value in response.headers.raw
            if not layers or name.lower() not in (b"content-encoding", b"content-length")
        ]
        assert isinstance(response.stream, httpx.SyncByteStream)
        encoding = "gzip" if layers and layers[0] != "deflate" else (layers or [None])[0]
        return httpx.Response(
            response.status_code,
            headers=headers,
            stream=_CappedStream(response.stream, self._max_bytes, encoding, response.status_code),
            extensions=response.extensions,
            request=request,
        )

    def close(self) -> None:
        self._inner.close()


# -- DPoP as an auth flow -----------------------------------------------------------------


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


def _challenge_error(headers: httpx.Headers) -> str | None:
    """``error`` from a ``WWW-Authenticate: DPoP error="..."`` challenge (resource servers)."""
    challenge = headers.get("www-authenticate", "")
    marker = 'error="'
    start = challenge.find(marker)
    if start < 0:
        return None
    end = challenge.find('"', start + len(marker))
    return challenge[start + len(marker) : end] if end > 0 else None


class DPoPAuth(httpx.Auth):
    """A DPoP proof on every request (a fresh ``jti``, the newest nonce, ``ath`` when a
    token goes along), and one retry when the server answers with a new nonce it demands:
    ``use_dpop_nonce`` in a JSON 400 (token endpoints: its body is capped by the
    transport), in ``WWW-Authenticate`` of a 401 (resources), or a bare 401 that brings a
    fresh ``DPoP-Nonce`` (glewlwyd does this). :meth:`sign` and :meth:`challenged` serve a
    caller that streams what it gets and so answers the challenge itself."""

    def __init__(self, key: DPoPKey, nonces: NonceMemory, access_token: Secret | None = None):
        self._key = key
        self._nonces = nonces
        self._access_token = access_token

    def sign(self, request: httpx.Request) -> str | None:
        """Put a fresh proof (and the token) on ``request``; the nonce it carries."""
        nonce = self._nonces.get(str(request.url))
        request.headers["DPoP"] = self._key.proof(
            request.method, str(request.url), nonce=nonce, access_token=self._access_token
        )
        if self._access_token is not None:
            request.headers["Authorization"] = f"DPoP {self._access_token.reveal()}"
        return nonce

    def challenged(self, response: httpx.Response, sent_nonce: str | None) -> bool:
        """A 401 that demands a nonce newer than the one sent (headers only, RFC 9449 §9)."""
        fresh_nonce = self._nonces.get(str(response.request.url))
        return (
            response.status_code == 401
            and fresh_nonce is not None
            and fresh_nonce != sent_nonce
            and _challenge_error(response.headers) in ("use_dpop_nonce", None)
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sent_nonce = self.sign(request)
        response = yield request
        if not self.challenged(response, sent_nonce):
            fresh_nonce = self._nonces.get(str(request.url))
            if response.status_code != 400 or fresh_nonce in (None, sent_nonce):
                return
            response.read()  # RFC 9449 §8: the token endpoint says it in its (capped) body
            if _json_object(response.content, {}).get("error") != "use_dpop_nonce":
                return
        # Once, a new request with a new proof carrying the server's nonce.
        retry = httpx.Request(
            request.method,
            request.url,
            headers=request.headers,
            content=request.read(),
            extensions=request.extensions,
        )
        self.sign(retry)
        yield retry


# -- the client ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    method: str
    url: str
    deadline: float
    form: Form | None
    dpop: DPoPKey | None
    access_token: Secret | None
    basic_auth: tuple[str, Secret] | None


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


class OAuthHttp:
    """One ``httpx.Client`` per run, so every request reuses the same connection.

    ``report`` (optional) hears one line per failed attempt that will be retried: what
    failed, where, and until when it keeps trying — a user waiting for a server that is
    down, or mistyped, sees it at once instead of silence until the deadline.
    """

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
        report: Callable[[str], None] | None = None,
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
            mounts={pattern: None for pattern in LOOPBACK_PATTERNS},
            headers={
                "Accept": "application/json",
                "Accept-Encoding": "identity",
                "User-Agent": USER_AGENT,
            },
            event_hooks={"request": [self._counted], "response": [self._learn_nonce]},
        )
        # Every connection the client may use, proxied ones included (httpx keeps them in
        # these two attributes and offers no public way in), gets the byte cap under it.
        self._client._transport = CappedTransport(self._client._transport, max_body_bytes)
        self._client._mounts = {
            pattern: CappedTransport(mounted, max_body_bytes) if mounted else None
            for pattern, mounted in self._client._mounts.items()
        }
        self._timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._max_body_bytes = max_body_bytes
        self._report = report
        self.nonces = NonceMemory()
        self._sockets = Sockets()
        self.requests_sent = 0

    def __enter__(self) -> OAuthHttp:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _counted(self, request: httpx.Request) -> None:
        self.requests_sent += 1

    def _learn_nonce(self, response: httpx.Response) -> None:
        self.nonces.learn(response)

    def dpop_nonce(self, url: str) -> str | None:
        """The newest ``DPoP-Nonce`` this server (origin) sent us."""
        return self.nonces.get(url)

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
                return self._send(call)
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
                if self._report is not None:
                    until = time.time() + (deadline - self._clock())
                    moment = datetime.fromtimestamp(until, timezone.utc).strftime("%H:%M:%S")
                    self._report(f"{failure.message}; trying again until {moment} UTC")
                self._sleep(wait_s)

    def _send(self, call: _Call) -> Reply:
        remaining_s = call.deadline - self._clock()
        if remaining_s <= 0:
            raise TransportError("the deadline passed before the request could be sent")
        headers: dict[str, str] = {}
        auth: httpx.Auth | None = None
        if call.dpop is not None:
            auth = DPoPAuth(call.dpop, self.nonces, call.access_token)
        elif call.access_token is not None:
            headers["Authorization"] = f"Bearer {call.access_token.reveal()}"
        if call.basic_auth is not None:
            headers["Authorization"] = _basic_authorization(*call.basic_auth)
        content = None
        if call.form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            content = urlencode(_form_items(call.form)).encode("ascii")
        timeout = httpx.Timeout(
            connect=min(self._timeout.connect or remaining_s, remaining_s),
            read=min(self._timeout.read or remaining_s, remaining_s),
            write=min(self._timeout.write or remaining_s, remaining_s),
            pool=min(self._timeout.pool or remaining_s, remaining_s),
        )
        request = self._client.build_request(
            call.method,
            call.url,
            content=content,
            headers=headers,
            timeout=timeout,
            extensions={"trace": self._sockets.trace},
        )
        where = untrusted(call.url)
        watchdog = Watchdog(self._sockets, remaining_s)
        try:
            response = self._client.send(request, stream=True, auth=auth)
            try:
                raw = self._read(response, call.deadline)
            finally:
                response.close()
        except ResponseTooLarge as too_large:
            message = f"{where} sent a response larger than {self._max_body_bytes} bytes"
            status = too_large.status_code
            if status in TRANSIENT_STATUSES or status >= 500:
                raise TransientFailure(message) from None
            raise ProtocolError(message) from None
        except UnwantedEncoding as encoding:
            raise ProtocolError(
                f"{where} sent a body encoded {untrusted(encoding, 60)}, which ci_shark did not "
                "ask for (Accept-Encoding: identity) and does not decode"
            ) from None
        except httpx.TransportError as exc:
            if watchdog.fired:
                raise TransientFailure(f"{where}: no complete answer by the deadline") from None
            raise TransientFailure(f"{where}: {_describe(exc)}") from None
        finally:
            watchdog.disarm()

        body = _json_object(raw, None)
        reply = Reply(response.status_code, response.headers, body, _text_start(raw, body))
        if reply.status in TRANSIENT_STATUSES and (
            reply.error is None or reply.error in TRANSIENT_OAUTH_ERRORS
        ):
            raise TransientFailure(
                f"{where} answered HTTP {reply.status}",
                retry_after_s=_retry_after_s(response.headers),
            )
        return reply

    def _read(self, response: httpx.Response, deadline: float) -> bytes:
        """The body by the deadline: httpx's read timeout is per read, so a server sending
        a byte at a time would otherwise hold us past it. (The size cap is the transport's.)"""
        chunks: list[bytes] = []
        for chunk in response.iter_bytes():
            if self._clock() > deadline:
                raise httpx.ReadTimeout("the response was still arriving at the deadline")
            chunks.append(chunk)
        return b"".join(chunks)


def _describe(failure: httpx.TransportError) -> str:
    """What failed, in the words a user needs (never response data: httpx's own text)."""
    text = str(failure).lower()
    if isinstance(failure, httpx.ConnectError):
        if any(word in text for word in ("name or service", "name resolution", "nodename")):
            return "the host name does not resolve (DNS)"
        if "certificate" in text or "ssl" in text or "tls" in text:
            return f"TLS failed: {untrusted(failure, 160)}"
        if "refused" in text:
            return "connection refused"
    if isinstance(failure, httpx.TimeoutException):
        return f"timed out ({type(failure).__name__})"
    return f"{type(failure).__name__}: {untrusted(failure, 120)}"


def _basic_authorization(client_id: str, client_secret: Secret) -> str:
    # RFC 6749 §2.3.1: form-urlencode both parts before base64.
    pair = f"{quote(client_id, safe='')}:{quote(client_secret.reveal(), safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def _json_object(raw: bytes, default: Any) -> Any:
    """The body as a JSON object, else ``default``. Deep nesting is a refusal, not a crash."""
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return default
    return parsed if isinstance(parsed, dict) else default


def _text_start(raw: bytes, body: dict[str, Any] | None) -> str:
    return "" if body is not None else first_line(raw, 160)


def first_line(raw: bytes, limit: int) -> str:
    """The first line of a body that is not JSON, for a message: server text, so made one
    safe line, the run's secrets taken out."""
    return untrusted(
        raw[:FIRST_LINE_BYTES].decode("utf-8", "replace").strip().split("\n", 1)[0], limit
    )
