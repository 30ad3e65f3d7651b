"""The HTTP base of ci_shark, and the OAuth client on it.

Every HTTP request ci_shark sends (the OAuth endpoints, `request`, `proxy`, the CI APIs,
the webhook) goes through one :class:`HttpClient` (:func:`ci_shark.session` hands its
caller the ``httpx.Client`` itself). Its rules, once:

- One factory, :func:`new_client`: the run's trust (``oauth/tls.py``; none when a
  transport is injected), ``HTTPS_PROXY``/``NO_PROXY`` honoured but loopback always direct,
  our User-Agent, ``Accept-Encoding: identity``, the byte cap under every connection
  (``oauth/transport.py``), and no redirect followed: a redirect must not carry a token,
  a device code or a webhook's message elsewhere.
- One bounded send, :meth:`HttpClient.send`: the whole exchange ends by its deadline.
  httpx's timeouts are per read, so the watchdog shuts the socket when headers drip, and
  the :class:`Exchange` reads the body against the deadline, whole (``body()``) or as it
  streams (``chunks()``, for a caller that passes it on) (``oauth/watchdog.py``).
- Every failure below HTTP is a :class:`SendFailed` in our words, from one description
  (``oauth/transport.py``'s ``describe``): never a URL, never what the server sent.

:class:`OAuthHttp` is the OAuth client on this base: retries with backoff for transient
failures, DPoP (``oauth/dpop_auth.py``), and every answer reduced to a :class:`Reply`: the
status, the headers and the body parsed as a JSON object when it is one. Callers decide on
``body["error"]``, never on the status alone (GitHub answers device-flow errors with 200).
A form value that must differ on every send (a single-use client assertion) is a
:class:`PerRequest`: made for each send, every retry (transient or DPoP nonce) included.
"""

from __future__ import annotations

import base64
import json
import random
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar
from urllib.parse import quote, urlencode

import httpx

from ci_shark import __version__
from ci_shark.errors import CiSharkError, ProtocolError, TransportError
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.dpop_auth import DPoPAuth, NonceMemory
from ci_shark.oauth.tls import context_for
from ci_shark.oauth.transport import (
    NoAnswer,
    ResponseTooLarge,
    SendFailed,
    UnwantedEncoding,
    route_and_cap,
)
from ci_shark.oauth.watchdog import Exchange, Sockets, Watchdog
from ci_shark.safe_text import untrusted
from ci_shark.secret import Secret
from ci_shark.urls import url_problem, without_userinfo

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing's own from Python 3.11

USER_AGENT = f"ci_shark/{__version__}"
MAX_BODY_BYTES = 1024 * 1024
FIRST_LINE_BYTES = 400  # what a message quotes of a body that is not JSON, at most
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=30.0, write=10.0, pool=10.0)
# 500/502/503/504 are the outages worth waiting out; 501 means "not implemented" and is final.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSIENT_OAUTH_ERRORS = frozenset({"server_error", "temporarily_unavailable"})
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 8.0
# httpx drops an idle connection after 5 s, and RFC 8628's default interval is 5 s: every
# poll would pay a new TCP (and TLS) handshake. 120 s outlasts the intervals servers use,
# slow_down included; a longer gap, or a server closing sooner, just means a new connection
# (a connection dropped in the very instant of a poll costs that poll: the next one is on
# a new connection, one interval later).
KEEPALIVE_S = 120.0

# No domain is allowed to set a cookie.
_NO_COOKIES = DefaultCookiePolicy(allowed_domains=[])

_Client = TypeVar("_Client", bound="HttpClient")


class PerRequest:
    """A form value made anew for each send, every retry included: an RFC 7523 client
    assertion from a token source, whose ``jti`` a server takes only once."""

    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Secret]) -> None:
        self.make = make


Form = Mapping[str, str | Secret | PerRequest | Sequence[str]]


# -- the base: one factory, one bounded send ---------------------------------------------


class ClientOptions(TypedDict, total=False):
    """What a caller may choose of a client from :func:`new_client` (the rest is the rule).

    ``trust`` builds the TLS context when the run's (``ca_bundle``, else the system's) is
    not the one; it is not called when a transport is injected (tests bring their own).
    ``max_body_bytes=None`` is for a caller that streams the body raw, unbounded and
    undecoded (`request`, as curl without ``--compressed``). ``keep_cookies=False`` keeps
    none of what servers set (a client shared by several callers: the proxy)."""

    ca_bundle: str | None
    trust: Callable[[], ssl.SSLContext] | None
    transport: httpx.BaseTransport | None
    timeout: httpx.Timeout
    max_body_bytes: int | None
    keepalive_s: float
    headers: Mapping[str, str] | None
    keep_cookies: bool


def new_client(
    *,
    nonces: NonceMemory | None = None,
    auth: httpx.Auth | None = None,
    **options: Unpack[ClientOptions],
) -> httpx.Client:
    """The one ``httpx.Client`` maker (see the module's rules). ``nonces`` learns every
    server's newest ``DPoP-Nonce``; ``auth`` is the flow every request goes through when
    httpx drives it (:func:`ci_shark.session`)."""
    transport = options.get("transport")
    ca_bundle, trust = options.get("ca_bundle"), options.get("trust")
    client = httpx.Client(
        transport=transport,
        auth=auth,
        limits=httpx.Limits(keepalive_expiry=options.get("keepalive_s", KEEPALIVE_S)),
        verify=(trust or (lambda: context_for(ca_bundle)))() if transport is None else True,
        timeout=options.get("timeout", DEFAULT_TIMEOUT),
        follow_redirects=False,
        # Only for HTTPS_PROXY/NO_PROXY (self-hosted runners behind a proxy): the trust
        # is the context above, and httpx reads no .netrc by itself.
        trust_env=True,
        headers={
            "Accept-Encoding": "identity",
            "User-Agent": USER_AGENT,
            **(options.get("headers") or {}),
        },
        event_hooks={"response": [nonces.learn] if nonces is not None else []},
        cookies=None
        if options.get("keep_cookies", True)
        else httpx.Cookies(CookieJar(_NO_COOKIES)),
    )
    route_and_cap(client, options.get("max_body_bytes", MAX_BODY_BYTES))
    return client


class HttpClient:
    """A client from :func:`new_client` (``options``: :class:`ClientOptions`), and the
    bounded send on it. It remembers every server's newest ``DPoP-Nonce``
    (:attr:`nonces`) for DPoP. ``clock`` times deadlines."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, **options: Unpack[ClientOptions]
    ) -> None:
        self.nonces = NonceMemory()
        self._client = new_client(nonces=self.nonces, **options)
        self._timeout = options.get("timeout", DEFAULT_TIMEOUT)
        self._clock = clock
        self._sockets = Sockets()

    def __enter__(self: _Client) -> _Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def build(
        self, method: str, url: str | httpx.URL, *, deadline: float, **options: Any
    ) -> httpx.Request:
        """A request whose timeouts never exceed the time left, and whose sockets the
        watchdog can find. ``options``: httpx's (``content``, ``json``, ``params``...)."""
        left_s = max(deadline - self._clock(), 0.001)
        timeout = httpx.Timeout(
            connect=min(self._timeout.connect or left_s, left_s),
            read=min(self._timeout.read or left_s, left_s),
            write=min(self._timeout.write or left_s, left_s),
            pool=min(self._timeout.pool or left_s, left_s),
        )
        extensions = {"trace": self._sockets.trace}
        return self._client.build_request(
            method, url, timeout=timeout, extensions=extensions, **options
        )

    def send(
        self, request: httpx.Request, *, deadline: float, auth: httpx.Auth | None = None
    ) -> Exchange:
        """Send ``request`` (through ``auth``'s flow: a DPoP nonce retry) and return the
        answer once its headers are in. Raises :class:`SendFailed` (our words)."""
        left_s = deadline - self._clock()
        if left_s <= 0:
            raise NoAnswer("the deadline passed before the request could be sent", timed_out=True)
        watchdog = Watchdog(self._sockets, left_s)
        try:
            response = self._through(request, auth)
        except BaseException as failure:
            watchdog.disarm()
            if isinstance(failure, httpx.RequestError):
                raise watchdog.explain(failure) from None
            raise
        return Exchange(response, watchdog, deadline, self._clock)

    def _through(self, request: httpx.Request, auth: httpx.Auth | None) -> httpx.Response:
        """The auth flow driven here, not by httpx, which reads the whole body of every
        answer it retries: a resource's challenge may be anything, and is closed unread."""
        if auth is None:
            return self._client.send(request, stream=True)
        flow = auth.sync_auth_flow(request)
        try:
            response = self._client.send(next(flow), stream=True)
            while True:
                try:
                    retry = flow.send(response)
                except StopIteration:
                    return response
                except BaseException:
                    response.close()
                    raise
                response.close()  # a challenge the retry answers: its body is not needed
                response = self._client.send(retry, stream=True)
        finally:
            flow.close()


# -- the OAuth client ------------------------------------------------------------------------


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


@dataclass(frozen=True)
class _Call:
    method: str
    url: str
    deadline: float
    form: Form | None
    dpop: DPoPKey | None
    access_token: Secret | None
    basic_auth: tuple[str, Secret] | None


class OAuthHttp(HttpClient):
    """The OAuth client: the base's client with retries and :class:`Reply`; one per run,
    so every request reuses the same connection.

    ``report`` (optional) hears a line when a request failed and will be tried again: what
    failed, where, and until when it keeps trying. A user waiting for a server that is
    down, or mistyped, sees it at once instead of silence until the deadline; the same
    failure again is retried quietly, and only a different one is said.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
        report: Callable[[str], None] | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        options["headers"] = {"Accept": "application/json", **(options.get("headers") or {})}
        super().__init__(clock=clock, **options)
        self._sleep = sleep
        self._jitter = jitter
        self._max_body_bytes = options.get("max_body_bytes", MAX_BODY_BYTES)
        self._report = report

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
        said: set[str] = set()
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
                        hint="check that the server is up and reachable from this machine",
                    ) from None
                if self._report is not None and failure.message not in said:
                    said.add(failure.message)
                    self._report(f"{failure.message}; trying again until {self._until(deadline)}")
                self._sleep(wait_s)

    def _until(self, deadline: float) -> str:
        until = time.time() + (deadline - self._clock())
        return datetime.fromtimestamp(until, timezone.utc).strftime("%H:%M:%S UTC")

    def _send(self, call: _Call) -> Reply:
        if call.deadline - self._clock() <= 0:
            raise TransportError("the deadline passed before the request could be sent")
        request, auth = self._prepare(call)
        where = untrusted(call.url)
        try:
            with self.send(request, deadline=call.deadline, auth=auth) as answer:
                raw = answer.body()
        except SendFailed as failure:
            raise self._failure(failure, where) from None
        headers = answer.response.headers
        body = json_object(raw, None)
        reply = Reply(answer.response.status_code, headers, body, _text_start(raw, body))
        if reply.status in TRANSIENT_STATUSES and (
            reply.error is None or reply.error in TRANSIENT_OAUTH_ERRORS
        ):
            raise TransientFailure(
                f"{where} answered HTTP {reply.status}", retry_after_s=_retry_after_s(headers)
            )
        return reply

    def _prepare(self, call: _Call) -> tuple[httpx.Request, httpx.Auth | None]:
        headers: dict[str, str] = {}
        auth: httpx.Auth | None = None
        if call.dpop is not None:
            # A nonce retry sends the form again, made anew (a fresh client assertion).
            form = call.form
            body = (lambda: _encoded(form)) if form is not None else None
            auth = DPoPAuth(call.dpop, self.nonces, call.access_token, body=body)
        elif call.access_token is not None:
            headers["Authorization"] = f"Bearer {call.access_token.reveal()}"
        if call.basic_auth is not None:
            headers["Authorization"] = _basic_authorization(*call.basic_auth)
        content = None
        if call.form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            content = _encoded(call.form)
        request = self.build(
            call.method, call.url, deadline=call.deadline, content=content, headers=headers
        )
        return request, auth

    def _failure(self, failure: SendFailed, where: str) -> CiSharkError:
        if isinstance(failure, ResponseTooLarge):
            message = f"{where} sent a response larger than {self._max_body_bytes} bytes"
            status = failure.status_code
            if status in TRANSIENT_STATUSES or status >= 500:
                return TransientFailure(message)
            return ProtocolError(message)
        if isinstance(failure, UnwantedEncoding):
            return ProtocolError(
                f"{where} sent a body encoded {untrusted(failure.encoding, 60)}, which ci_shark "
                "did not ask for (Accept-Encoding: identity) and does not decode"
            )
        return TransientFailure(f"{where}: {failure}")


def _encoded(form: Form) -> bytes:
    """The form's body for one send: each :class:`PerRequest` value made now."""
    return urlencode(_form_items(form)).encode("ascii")


def _form_items(form: Form) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for name, value in form.items():
        if isinstance(value, PerRequest):
            items.append((name, value.make().reveal()))
        elif isinstance(value, Secret):
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


def _basic_authorization(client_id: str, client_secret: Secret) -> str:
    # RFC 6749 §2.3.1: form-urlencode both parts before base64.
    pair = f"{quote(client_id, safe='')}:{quote(client_secret.reveal(), safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def json_object(raw: bytes, default: Any) -> Any:
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


__all__ = [
    "DEFAULT_TIMEOUT",
    "FIRST_LINE_BYTES",
    "MAX_BODY_BYTES",
    "USER_AGENT",
    "Exchange",
    "Form",
    "HttpClient",
    "OAuthHttp",
    "PerRequest",
    "Reply",
    "SendFailed",
    "TransientFailure",
    "first_line",
    "json_object",
    "new_client",
]
