"""The HTTP base every request goes through: the loopback route under a proxy, the words
for a failure, and the bounded send (a streamed body, a nonce challenge left unread).

Routes and failures are real: loopback servers, a loopback proxy, real TLS handshakes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.clock import FakeClock
from support.loopback_http import JsonHandler, LoopbackServer, free_port
from support.loopback_tls import loopback_certificate
from support.recording_proxy import RecordingProxy

from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.dpop_auth import DPoPAuth
from ci_shark.oauth.http import Exchange, HttpClient, SendFailed
from ci_shark.oauth.transport import LoopbackDirect, describe
from ci_shark.secret import Secret
from ci_shark.urls import url_problem

SECRET_PATH = "/services/T0/B0/hook-secret-path"

# -- one loopback rule: the URL rule's ------------------------------------------------------

LOOPBACK = ["127.0.0.1", "127.0.0.2", "127.255.255.254", "localhost", "[::1]"]
NOT_LOOPBACK = ["10.0.0.1", "192.168.1.1", "example.com", "localhost.example.com", "[::2]"]


@pytest.mark.parametrize("host", LOOPBACK + NOT_LOOPBACK)
def test_a_host_goes_direct_exactly_when_plain_http_to_it_is_allowed(host: str) -> None:
    routes: list[str] = []

    def route(name: str) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            routes.append(name)
            return httpx.Response(200)

        return httpx.MockTransport(handler)

    router = LoopbackDirect(proxied=route("proxy"), direct=route("direct"))
    url = f"http://{host}:8080/token"
    router.handle_request(httpx.Request("GET", url))

    assert routes == ["direct" if host in LOOPBACK else "proxy"]
    assert (routes == ["direct"]) == (url_problem(url) is None)


class Hello(JsonHandler):
    def do_GET(self) -> None:
        self.send_json(200, {"path": self.path})


@pytest.fixture
def on_127_0_0_2() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.2", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.2:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_under_an_environment_proxy_loopback_goes_direct_and_the_rest_through_it(
    on_127_0_0_2: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = RecordingProxy().start()
    answers: list[tuple[int, bytes]] = []
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, proxy.url)
    try:
        with HttpClient() as http:
            deadline = time.monotonic() + 10
            for url in (f"{on_127_0_0_2}/api", "http://ci-shark.example/api"):
                with http.send(
                    http.build("GET", url, deadline=deadline), deadline=deadline
                ) as answer:
                    answers.append((answer.response.status_code, answer.body()))
    finally:
        proxy.stop()

    assert answers == [(200, b'{"path": "/api"}'), (502, b"")]  # 502: the recording proxy's
    assert proxy.request_lines == ["GET http://ci-shark.example/api HTTP/1.1"]


# -- one description of a failure, our words only ------------------------------------------


def failure_of(url: str, **client: Any) -> SendFailed:
    deadline = time.monotonic() + 5
    with HttpClient(**client) as http, pytest.raises(SendFailed) as caught:
        http.send(http.build("GET", url, deadline=deadline), deadline=deadline)
    return caught.value


def test_a_refused_connection() -> None:
    assert str(failure_of(f"http://127.0.0.1:{free_port()}{SECRET_PATH}")) == "connection refused"


def test_a_name_that_does_not_resolve() -> None:
    failure = failure_of(f"https://ci-shark.invalid{SECRET_PATH}")
    assert str(failure) == "the host name does not resolve (DNS)"


def test_an_untrusted_certificate(tmp_path: Path) -> None:
    certificate = loopback_certificate(tmp_path)
    server = LoopbackServer(Hello, tls=certificate.server_context())
    try:
        failure = failure_of(server.url + SECRET_PATH)
    finally:
        server.stop()
    assert str(failure) == "TLS failed, the certificate is not trusted: self-signed certificate"


def test_a_certificate_for_another_name_does_not_say_the_name(tmp_path: Path) -> None:
    certificate = loopback_certificate(tmp_path)  # for 127.0.0.1, asked as localhost
    server = LoopbackServer(Hello, tls=certificate.server_context())
    try:
        url = server.url.replace("127.0.0.1", "localhost") + SECRET_PATH
        failure = failure_of(url, ca_bundle=str(certificate.cert_file))
    finally:
        server.stop()
    assert str(failure) == "TLS failed, the certificate is for another host name"


def test_tls_spoken_to_a_plain_http_server() -> None:
    server = LoopbackServer(Hello)
    try:
        failure = failure_of(server.url.replace("http:", "https:") + SECRET_PATH)
    finally:
        server.stop()
    assert str(failure).startswith("TLS failed: ")
    assert "127.0.0.1" not in str(failure)


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        (
            httpx.ConnectError(f"cannot reach https://hooks.example{SECRET_PATH}"),
            "could not connect",
        ),
        (httpx.ConnectTimeout(f"https://hooks.example{SECRET_PATH}"), "no connection in time"),
        (httpx.ReadTimeout(f"https://hooks.example{SECRET_PATH}"), "no answer in time"),
        (httpx.RemoteProtocolError(f"bad {SECRET_PATH}"), "the server closed the connection"),
        (httpx.ProxyError(f"https://hooks.example{SECRET_PATH}"), "the proxy refused"),
    ],
)
def test_the_words_never_quote_the_failure(failure: Exception, words: str) -> None:
    described = describe(failure)
    assert described.startswith(words)
    assert "hook-secret-path" not in described
    assert "hooks.example" not in described


# -- the bounded send -----------------------------------------------------------------------


class Watched(httpx.SyncByteStream):
    """A body that says whether anyone read it, dripping one chunk a tick of ``clock``."""

    def __init__(self, clock: FakeClock | None = None, chunks: int = 3) -> None:
        self.read = False
        self.closed = False
        self._clock = clock
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        self.read = True
        for _ in range(self._chunks):
            if self._clock is not None:
                self._clock.advance(1.0)
            yield b"chunk "

    def close(self) -> None:
        self.closed = True


class Answers:
    """A server that gives ``answers`` in turn, and keeps what it was sent."""

    def __init__(self, *answers: httpx.Response) -> None:
        self._answers = iter(answers)
        self.sent: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return next(self._answers)


@contextmanager
def sent_with_a_token(
    server: Answers, method: str = "GET", url: str = "https://api.example/x", **options: Any
) -> Iterator[Exchange]:
    """One request with an access token and a DPoP proof through the bounded send, answered
    by ``server``: the exchange the caller gets (``options``: httpx's, e.g. ``content``)."""
    deadline = time.monotonic() + 10
    with HttpClient(transport=httpx.MockTransport(server), max_body_bytes=None) as http:
        auth = DPoPAuth(DPoPKey.generate(), http.nonces, Secret("at-1"))
        request = http.build(method, url, deadline=deadline, **options)
        with http.send(request, deadline=deadline, auth=auth) as answer:
            yield answer


def test_a_resource_nonce_challenge_is_answered_without_reading_its_body() -> None:
    # `request` streams what it gets: a 401's body may be anything, and is never read.
    challenge_body = Watched()
    server = Answers(
        httpx.Response(401, headers={"DPoP-Nonce": "n-1"}, stream=challenge_body),
        httpx.Response(200, stream=Watched()),
    )

    with sent_with_a_token(server) as answer:
        assert answer.response.status_code == 200
        assert b"".join(answer.chunks()) == b"chunk chunk chunk "

    assert len(server.sent) == 2
    assert server.sent[0].headers["DPoP"] != server.sent[1].headers["DPoP"]
    assert (challenge_body.read, challenge_body.closed) == (False, True)


def test_an_authorization_servers_400_is_answered_when_a_token_goes_along_too() -> None:
    # A call relayed by `proxy` to an authorization server: §8's JSON 400, small and plain,
    # is read and answered once; the answer after it streams as usual.
    demand = b'{"error": "use_dpop_nonce"}'
    server = Answers(
        httpx.Response(
            400, headers={"DPoP-Nonce": "n-1", "Content-Type": "application/json"}, content=demand
        ),
        httpx.Response(200, stream=Watched()),
    )

    with sent_with_a_token(server, "POST", "https://as.example/token", content=b"x") as answer:
        assert answer.response.status_code == 200
        assert b"".join(answer.chunks()) == b"chunk chunk chunk "
    assert len(server.sent) == 2


def test_a_small_json_400_that_demands_nothing_is_passed_on_as_it_came() -> None:
    # Read to see whether it demands a nonce (it does not): the caller still gets it whole.
    said = b'{"error": "invalid_request"}'

    class Unread(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield said

    headers = {"DPoP-Nonce": "n-1", "Content-Type": "application/json"}
    headers["Content-Length"] = str(len(said))
    server = Answers(httpx.Response(400, headers=headers, stream=Unread()))

    with sent_with_a_token(server) as answer:
        assert answer.response.is_stream_consumed  # the flow looked
        assert b"".join(answer.chunks()) == said
    assert len(server.sent) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json", "Content-Length": str(64 * 1024)},  # too large
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},  # compressed
        {"Content-Type": "text/html"},  # not the shape of §8's answer
    ],
    ids=["large", "compressed", "html"],
)
def test_any_other_400_with_a_token_goes_back_unread(headers: dict[str, str]) -> None:
    body = Watched()
    server = Answers(httpx.Response(400, headers={"DPoP-Nonce": "n-1", **headers}, stream=body))

    with sent_with_a_token(server) as answer:
        assert body.read is False  # nothing read before the caller streams it
        assert b"".join(answer.chunks()) == b"chunk chunk chunk "
    assert len(server.sent) == 1


def test_a_streamed_request_body_is_not_sent_twice() -> None:
    # It is gone once sent: the challenge goes back to the caller, who learnt the nonce.
    sent: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.read())
        return httpx.Response(401, headers={"DPoP-Nonce": "n-1"})

    deadline = time.monotonic() + 10
    with HttpClient(transport=httpx.MockTransport(handler), max_body_bytes=None) as http:
        auth = DPoPAuth(DPoPKey.generate(), http.nonces, Secret("at-1"))
        body = iter([b"part 1, ", b"part 2"])
        request = http.build("POST", "https://api.example/x", deadline=deadline, content=body)
        with http.send(request, deadline=deadline, auth=auth) as answer:
            assert answer.response.status_code == 401
        assert http.nonces.get("https://api.example/y") == "n-1"
    assert sent == [b"part 1, part 2"]


def test_a_streamed_body_stops_at_the_deadline() -> None:
    clock = FakeClock(0.0)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Watched(clock, chunks=100))

    http = HttpClient(transport=httpx.MockTransport(handler), clock=clock, max_body_bytes=None)
    request = http.build("GET", "https://api.example/x", deadline=5.0)
    with http, http.send(request, deadline=5.0) as answer, pytest.raises(SendFailed) as caught:
        for _ in answer.chunks():
            pass
    assert caught.value.timed_out
    assert clock.now < 10
