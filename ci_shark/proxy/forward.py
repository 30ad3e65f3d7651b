"""One forwarded exchange: the client's request as the upstream gets it, with the login's
token, and the upstream's answer as the client gets it.

Its rules:

- The request goes to the upstream's origin and nowhere else, its path and query as the
  client sent them; the headers cross as ``wire.py`` says (the client's credentials
  dropped), and :class:`~ci_shark.token_auth.LoginTokenAuth` adds the login's token and a
  fresh proof for the upstream URL (``htu`` without the query, ``htm``, ``ath``), answers
  ``use_dpop_nonce`` once and refreshes the token before it expires.
- A body up to ``BUFFERED_BODY_BYTES`` is held in memory, so a nonce challenge (or an
  expired token) can be answered by sending it again. A larger one, or a chunked one that
  grows past it, streams through and cannot be sent twice: the proxy first learns the
  origin's nonce with a ``HEAD`` of the same URL (a DPoP-bound token only), and a
  challenge that still comes (a nonce that changed in between, a server that answers
  ``HEAD`` without asking for one) goes back to the client as the server sent it.
- The answer streams back as it comes off the wire, undecoded, never read whole;
  redirects are passed back, never followed, a ``Location`` on the upstream origin
  rewritten to the proxy (``upstreams.py``).
- The token is refreshed before it expires (:mod:`ci_shark.token_auth`); a refresh that
  fails is a warning in the log, and the request goes with the token as it is.
- Each exchange ends by ``max_time_s``, dripping headers included. What fails before the
  answer's headers is a ``502`` (``504`` for the deadline) whose text is ours: it names
  no URL and quotes no server.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus

import httpx

from ci_shark.errors import CiSharkError
from ci_shark.oauth.http import Exchange, HttpClient, SendFailed
from ci_shark.proxy.upstreams import Routes, Upstream, canonical_origin
from ci_shark.proxy.wire import NOT_BACK, NOT_UPSTREAM, BadBody, Header, crossing
from ci_shark.safe_text import one_line
from ci_shark.token_auth import LiveCredentials, LoginTokenAuth

BUFFERED_BODY_BYTES = 256 * 1024
NO_BODY_STATUSES = frozenset({204, 304})
MAX_PHRASE_CHARS = 80

Body = bytes | Iterable[bytes] | None


@dataclass(frozen=True)
class Incoming:
    """A client's request, checked and routed by the server."""

    method: str
    upstream: Upstream
    target: str  # the path and query on the upstream
    headers: list[Header]
    body: Body  # bytes: held in memory; an iterator: streamed; None: none
    length: int | None = None  # a streamed body's Content-Length, when it has one


@dataclass
class Answer:
    """What goes back to the client: the upstream's answer, or the proxy's own."""

    status: int
    phrase: str
    headers: list[tuple[bytes, bytes]]
    length: int | None  # Content-Length; None: the body's end is not known in advance
    body: Iterator[bytes]
    has_body: bool
    release: Callable[[], None] = field(default=lambda: None)
    close_connection: bool = False

    @classmethod
    def ours(cls, status: int, text: str, *, close_connection: bool = False) -> Answer:
        """An answer of the proxy itself: a line of our text."""
        data = f"ci_shark proxy: {text}\n".encode()
        return cls(
            status,
            HTTPStatus(status).phrase,
            [(b"Content-Type", b"text/plain; charset=utf-8"), (b"Cache-Control", b"no-store")],
            len(data),
            iter([data]),
            has_body=True,
            close_connection=close_connection,
        )


class Forwarder:
    """Forwards each request on one client (one keep-alive pool) with the login's token."""

    def __init__(
        self,
        http: HttpClient,
        live: LiveCredentials,
        routes: Routes,
        *,
        max_time_s: float,
        log: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._log = log
        self._live = live
        self._auth = LoginTokenAuth(live, http.nonces)
        self.routes = routes
        self._max_time_s = max_time_s
        self._clock = clock

    def forward(self, incoming: Incoming) -> Answer:
        """The upstream's answer to ``incoming``, its body still on the wire, or the
        proxy's own answer when there is none."""
        url = httpx.URL(incoming.upstream.origin).copy_with(
            raw_path=incoming.target.encode("latin-1")
        )
        if canonical_origin(str(url)) != incoming.upstream.origin:  # never anywhere else
            return Answer.ours(400, "the request target leaves the upstream")
        deadline = self._clock() + self._max_time_s
        self._fresh_token()
        try:
            if _streamed(incoming.body) and self._live.issued.is_dpop_bound:
                self._learn_nonce(url, deadline)
            exchange = self._send(incoming, url, deadline)
        except SendFailed as failure:
            status = 504 if failure.timed_out else 502
            return Answer.ours(status, f"the upstream did not answer: {failure}")
        except CiSharkError as failure:
            return Answer.ours(502, one_line(failure.message, 300))
        except BadBody as bad:
            return Answer.ours(400, str(bad), close_connection=True)
        return self._answer(incoming, exchange)

    def _fresh_token(self) -> None:
        """A refresh that is due happens here; one that fails is said, and the request
        goes with the token as it is (the API says what it thinks of it): the next try
        is a few seconds later (``token_auth.REFRESH_RETRY_S``), not one per request."""
        try:
            self._live.current()
        except CiSharkError as failure:
            self._log(
                f"ci_shark: proxy: warning: {one_line(failure.message, 300)}; the token goes "
                "as it is until the next try"
            )

    def _send(self, incoming: Incoming, url: httpx.URL, deadline: float) -> Exchange:
        headers = crossing(incoming.headers, NOT_UPSTREAM)
        if incoming.length is not None:
            headers.append((b"Content-Length", str(incoming.length).encode()))
        request = self._http.build(
            incoming.method, url, deadline=deadline, headers=headers, content=incoming.body
        )
        return self._http.send(request, deadline=deadline, auth=self._auth)

    def _learn_nonce(self, url: httpx.URL, deadline: float) -> None:
        """A ``HEAD`` of the URL with the token: its answer brings the origin's newest
        nonce (a challenge is answered once, as for any request), and is dropped."""
        probe = self._http.build("HEAD", url, deadline=deadline)
        self._http.send(probe, deadline=deadline, auth=self._auth).close()

    def _answer(self, incoming: Incoming, exchange: Exchange) -> Answer:
        response = exchange.response
        headers = []
        for name, value in crossing(_text_headers(response), NOT_BACK):
            if name.lower() != b"location":
                headers.append((name, value))
                continue
            back = self.routes.location_back(
                incoming.upstream, value.decode("latin-1"), str(response.request.url)
            )
            headers.append((name, back.encode("latin-1", "replace")))
        has_body = incoming.method != "HEAD" and response.status_code not in NO_BODY_STATUSES
        return Answer(
            response.status_code,
            _phrase(response),
            headers,
            _content_length(response),
            exchange.chunks() if has_body else iter(()),
            has_body=has_body,
            release=exchange.close,
        )


def _streamed(body: Body) -> bool:
    return body is not None and not isinstance(body, bytes)


def _text_headers(response: httpx.Response) -> list[Header]:
    return [
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in response.headers.raw
    ]


def _content_length(response: httpx.Response) -> int | None:
    if "transfer-encoding" in response.headers:
        return None
    declared = response.headers.get_list("content-length")
    if len(set(declared)) != 1 or not declared[0].isascii() or not declared[0].isdigit():
        return None
    return int(declared[0])


def _phrase(response: httpx.Response) -> str:
    """The upstream's reason phrase when it is plain text, else the standard one."""
    phrase = response.reason_phrase
    if phrase.isascii() and phrase.isprintable() and len(phrase) <= MAX_PHRASE_CHARS:
        return phrase
    try:
        return HTTPStatus(response.status_code).phrase
    except ValueError:
        return ""


def buffered_or_streamed(pieces: Iterator[bytes]) -> bytes | Iterator[bytes]:
    """A body of unknown length (chunked): held in memory when it ends within
    ``BUFFERED_BODY_BYTES``, else streamed on from where it is."""
    head: list[bytes] = []
    held = 0
    for piece in pieces:
        head.append(piece)
        held += len(piece)
        if held > BUFFERED_BODY_BYTES:
            return itertools.chain(head, pieces)
    return b"".join(head)
