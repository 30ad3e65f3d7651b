"""The proxy's parts without sockets: where a path goes, which headers cross, bodies in
pieces, the listening address (tests/integration/test_dpop_proxy.py runs it whole)."""

from __future__ import annotations

import io
import select
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from ci_shark.errors import CiSharkError, ConfigError
from ci_shark.issued import Issued
from ci_shark.oauth.http import HttpClient
from ci_shark.proxy.forms import parse_listen
from ci_shark.proxy.forward import (
    BUFFERED_BODY_BYTES,
    Answer,
    Forwarder,
    Incoming,
    buffered_or_streamed,
)
from ci_shark.proxy.server import MAX_CONNECTIONS, ProxyServer
from ci_shark.proxy.upstreams import Routes, Upstream, parse_upstreams
from ci_shark.proxy.wire import (
    MAX_CHUNK_LINE_BYTES,
    NOT_BACK,
    NOT_UPSTREAM,
    BadBody,
    chunked,
    crossing,
    dechunked,
    fixed_length,
    valid_headers,
)
from ci_shark.token_auth import LiveCredentials

BASE = "http://127.0.0.1:4000/CAPABILITY/"

# -- upstreams -----------------------------------------------------------------------------


def test_one_upstream_is_an_origin_at_the_root() -> None:
    assert parse_upstreams(["https://API.example.com:443/"]) == (
        Upstream(None, "https://api.example.com"),
    )
    routes = Routes(parse_upstreams(["https://api.example.com"]), BASE)
    upstream = routes.upstreams[0]
    assert routes.route("/v2/items?page=2") == (upstream, "/v2/items?page=2")
    assert routes.route("") == (upstream, "/")
    assert routes.route("?q=1") == (upstream, "/?q=1")


def test_named_upstreams_each_have_a_prefix() -> None:
    routes = Routes(
        parse_upstreams(["api=https://api.example.com", "files=http://127.0.0.1:9000"]), BASE
    )
    api, files = routes.upstreams
    assert files.origin == "http://127.0.0.1:9000"
    assert routes.route("/api/v2/items?x=1") == (api, "/v2/items?x=1")
    assert routes.route("/files") == (files, "/")
    assert routes.route("/files?x=1") == (files, "/?x=1")
    assert routes.route("/other/v2") is None
    assert routes.route("") is None


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ([], "needs an upstream"),
        (["http://api.example.com"], "plain http://"),
        (["api.example.com"], "api.example.com must be an absolute https:// URL"),
        (["https://api.example.com/v2"], "takes an origin"),
        (["https://api.example.com?x=1"], "takes an origin"),
        (["https://user:pw@api.example.com"], "credentials"),
        (["https://a.example.com", "https://b.example.com"], "each needs a name"),
        (["a=https://a.example.com", "a=https://b.example.com"], "same name"),
        (["A B=https://a.example.com"], "not lowercase letters"),
    ],
)
def test_a_bad_upstream_is_refused_with_the_fix(given: list[str], says: str) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        parse_upstreams(given)
    assert "--upstream" in (caught.value.hint or "") + caught.value.message


def test_a_location_on_the_upstream_comes_back_to_the_proxy() -> None:
    routes = Routes(parse_upstreams(["api=https://api.example.com"]), BASE)
    api = routes.upstreams[0]
    request = "https://api.example.com/v2/items?x=1"
    assert routes.location_back(api, "/v2/other?y=2#top", request) == (
        "http://127.0.0.1:4000/CAPABILITY/api/v2/other?y=2#top"
    )
    assert routes.location_back(api, "next", request) == (
        "http://127.0.0.1:4000/CAPABILITY/api/v2/next"
    )
    assert routes.location_back(api, "https://API.example.com:443/z", request) == (
        "http://127.0.0.1:4000/CAPABILITY/api/z"
    )
    for elsewhere in ("https://evil.example/z", "http://api.example.com/z", "//evil.example/"):
        assert routes.location_back(api, elsewhere, request) == elsewhere


# -- headers -------------------------------------------------------------------------------


def test_the_clients_credentials_and_hop_by_hop_headers_never_go_upstream() -> None:
    headers = [
        ("Authorization", "Bearer client-secret"),
        ("DPoP", "forged"),
        ("Cookie", "session=1"),
        ("Proxy-Authorization", "Basic eA=="),
        ("Host", "127.0.0.1:4000"),
        ("Connection", "keep-alive, X-Private"),
        ("X-Private", "hop"),
        ("Keep-Alive", "timeout=5"),
        ("Transfer-Encoding", "chunked"),
        ("Content-Length", "5"),
        ("Expect", "100-continue"),
        ("Accept", "application/json"),
        ("X-Trace", "caf\xe9"),  # obs-text passes on as it came
    ]
    assert crossing(headers, NOT_UPSTREAM) == [
        (b"Accept", b"application/json"),
        (b"X-Trace", b"caf\xe9"),
    ]


def test_cookies_and_the_nonce_do_not_come_back() -> None:
    headers = [("Set-Cookie", "s=1"), ("DPoP-Nonce", "n"), ("ETag", '"v1"')]
    assert crossing(headers, NOT_BACK) == [(b"ETag", b'"v1"')]


def test_a_header_must_be_a_token_and_a_line() -> None:
    assert valid_headers([("X-Ok", "a b\tc")])
    assert not valid_headers([("X Bad", "v")])
    assert not valid_headers([("X-Bad", "v\r\nInjected: 1")])


# -- bodies --------------------------------------------------------------------------------


def test_a_chunked_body_is_decoded_in_pieces_and_framed_again() -> None:
    wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\nNEXT"
    stream = io.BytesIO(wire)
    assert b"".join(dechunked(stream)) == b"hello world"
    assert stream.read() == b"NEXT"  # the next request starts right after the trailers
    assert (
        b"".join(chunked([b"hello", b"", b" world"])) == b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )


@pytest.mark.parametrize(
    "wire",
    [
        b"zz\r\nhello\r\n0\r\n\r\n",  # not hex
        b"5\r\nhelloXX0\r\n\r\n",  # a chunk longer than its size
        b"5\r\nhel",  # cut short
        b"1" * (MAX_CHUNK_LINE_BYTES + 1) + b"\r\n",  # an endless size line
        b"0\r\n" + b"X: y\r\n" * 5000,  # endless trailers
    ],
)
def test_a_malformed_chunked_body_is_refused(wire: bytes) -> None:
    with pytest.raises(BadBody):
        b"".join(dechunked(io.BytesIO(wire)))


def test_a_fixed_length_body_comes_in_bounded_pieces_and_must_be_whole() -> None:
    pieces = list(fixed_length(io.BytesIO(b"x" * 200_000), 200_000))
    assert sum(map(len, pieces)) == 200_000
    assert max(map(len, pieces)) <= 64 * 1024
    with pytest.raises(BadBody, match="ended 5 bytes before"):
        b"".join(fixed_length(io.BytesIO(b"12345"), 10))


def test_a_small_chunked_body_is_held_and_a_large_one_streams() -> None:
    assert buffered_or_streamed(iter([b"a", b"b"])) == b"ab"
    pieces = [b"x" * 65536] * (BUFFERED_BODY_BYTES // 65536 + 3)
    given = iter(pieces)
    streamed = buffered_or_streamed(given)
    assert not isinstance(streamed, bytes)
    assert next(given, None) is not None  # not all read yet: it streams on from there
    assert sum(map(len, streamed)) == len(pieces) * 65536 - 65536  # what was left


# -- the listening address -----------------------------------------------------------------


def test_it_listens_on_loopback_only() -> None:
    assert parse_listen("127.0.0.1:0")[:2] == ("127.0.0.1", 0)
    assert parse_listen("[::1]:8080")[:2] == ("::1", 8080)
    assert parse_listen("localhost:5000")[:2] == ("127.0.0.1", 5000)
    for wide in ("0.0.0.0:0", "[::]:0", "10.0.0.5:80"):
        with pytest.raises(ConfigError, match="not a loopback address"):
            parse_listen(wide)
    for bad in ("127.0.0.1", "example.com:80", "127.0.0.1:99999"):
        with pytest.raises(ConfigError, match="HOST:PORT"):
            parse_listen(bad)


# -- who holds a connection slot -------------------------------------------------------------

CAPABILITY = "c" * 32


@contextmanager
def serving(*, head_timeout_s: float) -> Iterator[tuple[ProxyServer, list[str]]]:
    """A proxy on a real loopback socket, in front of an API that answers "ok"."""
    lines: list[str] = []
    server = ProxyServer(
        "127.0.0.1", 0, CAPABILITY, log=lines.append, head_timeout_s=head_timeout_s
    )
    api = httpx.MockTransport(lambda request: httpx.Response(200, stream=OnTheWire(b"ok")))
    live = LiveCredentials(bearer_login(expires_in_s=3600), lambda due: due, log=lines.append)
    routes = Routes(parse_upstreams(["https://api.example.com"]), server.base_url)
    with HttpClient(transport=api, max_body_bytes=None) as http:
        server.serve(Forwarder(http, live, routes, max_time_s=10, log=lines.append))
        try:
            yield server, lines
        finally:
            server.stop(grace_s=1)


def trickle(port: int, head: bytes, *, every_s: float) -> tuple[bytes, float]:
    """``head`` a byte at a time, as a client that wants to hold a slot sends it (each gap
    far inside the per-read timeout); what came back, and when it came, from the first byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        started = time.monotonic()
        for byte in head:
            with suppress(OSError):  # the proxy may already have hung up
                client.sendall(bytes([byte]))
            if select.select([client], [], [], every_s)[0]:
                break
        answered_after_s = time.monotonic() - started
        answer = b""
        with suppress(OSError):
            while chunk := client.recv(65536):  # to the close
                answer += chunk
        return answer, answered_after_s


def test_a_head_trickled_a_byte_at_a_time_gets_408_at_its_deadline() -> None:
    """Anyone on the machine can connect: a head that never ends must not keep one of the
    run's MAX_CONNECTIONS slots (64 such clients would take the proxy)."""
    head = f"GET /{CAPABILITY}/items HTTP/1.1\r\nHost: x\r\n".encode() + b"X-Slow: " + b"a" * 400
    with serving(head_timeout_s=0.5) as (server, lines):
        answer, after_s = trickle(server.port, head, every_s=0.05)
        # The slot is free again: the run's own client is served.
        served = httpx.get(f"{server.base_url}items", headers={"Host": f"127.0.0.1:{server.port}"})
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"Connection: close" in answer  # and closed: recv saw the end
    # At its deadline: not before, and far from the 20 s that 400 bytes at 50 ms each take
    # (or the 30 s per-read timeout), with room for a busy machine.
    assert 0.5 <= after_s < 8
    assert served.text == "ok"
    assert lines[0] == (
        "ci_shark: proxy: a request head took over 0.5 s to arrive: 408, connection closed"
    )


def served_on(client: socket.socket, port: int) -> bytes:
    """A GET through the proxy on ``client``'s connection (kept alive); its status line."""
    client.sendall(f"GET /{CAPABILITY}/items HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    answer = b""
    while not answer.endswith(b"\r\n0\r\n\r\n"):  # chunked: its last chunk
        chunk = client.recv(65536)
        assert chunk, answer
        answer += chunk
    return answer.split(b"\r\n", 1)[0]


def test_the_head_deadline_starts_at_its_first_byte_not_while_a_connection_idles() -> None:
    with (
        serving(head_timeout_s=0.3) as (server, _),
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as client,
    ):
        answers = []
        for _ in range(2):  # keep-alive: one connection, idle longer than the deadline
            answers.append(served_on(client, server.port))
            time.sleep(0.5)
    assert answers == [b"HTTP/1.1 200 OK"] * 2


def test_connections_that_never_show_the_capability_cannot_hold_every_place() -> None:
    """Anyone on the machine may open MAX_CONNECTIONS connections that send nothing, and
    keep opening more: the run's own connection keeps its place, and a new one gets in
    at once, by closing the oldest that never showed the capability."""
    with serving(head_timeout_s=5) as (server, _):
        address, port = ("127.0.0.1", server.port), server.port
        with ExitStack() as held:
            own = held.enter_context(socket.create_connection(address, timeout=5))
            assert served_on(own, port) == b"HTTP/1.1 200 OK"
            silent = [
                held.enter_context(socket.create_connection(address, timeout=5))
                for _ in range(MAX_CONNECTIONS - 1 + 10)  # every place, then ten more
            ]
            started = time.monotonic()
            newcomer = held.enter_context(socket.create_connection(address, timeout=5))
            assert served_on(newcomer, port) == b"HTTP/1.1 200 OK"
            assert time.monotonic() - started < 10  # not after a silent one's 30 s
            # The run's connection kept its place.
            assert served_on(own, port) == b"HTTP/1.1 200 OK"
            silent[0].settimeout(2)
            assert silent[0].recv(1) == b""  # the oldest silent one was let go


# -- one exchange --------------------------------------------------------------------------


def bearer_login(*, expires_in_s: int) -> Issued:
    expires = datetime.now(timezone.utc) + timedelta(seconds=expires_in_s)
    return Issued(
        {
            "SHARK_ACCESS_TOKEN": "at-old",
            "SHARK_REFRESH_TOKEN": "rt-old",
            "SHARK_TOKEN_TYPE": "Bearer",
            "SHARK_EXPIRES_AT": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        None,
    )


class OnTheWire(httpx.SyncByteStream):
    """A body still to be read, as a real transport hands it over (MockTransport's own
    bodies come already read, and the proxy streams the raw bytes)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self._data


def test_a_failed_refresh_is_a_warning_and_the_request_goes_with_the_token_as_it_is() -> None:
    def refuse(due: Issued) -> Issued:
        raise CiSharkError("the authorization server answered invalid_grant")

    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, stream=OnTheWire(b"ok"))

    lines: list[str] = []
    live = LiveCredentials(bearer_login(expires_in_s=10), refuse, log=lines.append)
    routes = Routes(parse_upstreams(["https://api.example.com"]), BASE)
    with HttpClient(transport=httpx.MockTransport(api), max_body_bytes=None) as http:
        forwarder = Forwarder(http, live, routes, max_time_s=10, log=lines.append)
        incoming = Incoming("GET", routes.upstreams[0], "/items", [], None)
        for _ in range(2):
            answer = forwarder.forward(incoming)
            assert (answer.status, b"".join(answer.body)) == (200, b"ok")
            answer.release()
    assert seen == ["Bearer at-old"] * 2
    warnings = [line for line in lines if "warning" in line]
    assert warnings == [  # once: the next try waits
        "ci_shark: proxy: warning: the authorization server answered invalid_grant; the "
        "token goes as it is until the next try"
    ]


def forwarded_once(
    api: Callable[[httpx.Request], httpx.Response], upstream: str, target: str
) -> Answer:
    """One GET of ``target`` forwarded to ``upstream`` (answered by ``api``), released."""
    live = LiveCredentials(bearer_login(expires_in_s=3600), lambda due: due, log=print)
    routes = Routes(parse_upstreams([upstream]), BASE)
    with HttpClient(transport=httpx.MockTransport(api), max_body_bytes=None) as http:
        forwarder = Forwarder(http, live, routes, max_time_s=10, log=print)
        answer = forwarder.forward(Incoming("GET", routes.upstreams[0], target, [], None))
        answer.release()
    return answer


def test_a_location_on_the_upstream_is_rewritten_in_the_answer() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        headers = {"Location": "/next?x=1", "Set-Cookie": "s=1", "DPoP-Nonce": "n"}
        return httpx.Response(302, headers=headers)

    answer = forwarded_once(api, "https://api.example.com", "/here")
    assert answer.status == 302
    assert dict(answer.headers) == {b"Location": b"http://127.0.0.1:4000/CAPABILITY/next?x=1"}


def test_an_internationalised_upstream_is_reached_by_its_ascii_name() -> None:
    """The request goes to the name IDNA gives (the one DNS, TLS and the proof's ``htu``
    know); the proxy must recognise it as its upstream's, and the redirects it sends."""
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(
            302, headers={"Location": f"https://{request.url.raw_host.decode()}/next"}
        )

    answer = forwarded_once(api, "https://bücher.example", "/items")
    assert seen == ["https://xn--bcher-kva.example/items"]
    assert answer.status == 302
    assert dict(answer.headers)[b"Location"] == b"http://127.0.0.1:4000/CAPABILITY/next"
