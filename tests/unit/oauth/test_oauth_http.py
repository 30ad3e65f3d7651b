"""OAuthHttp over httpx.MockTransport with a fake clock: retries, caps, the https rule, DPoP.

The header watchdog needs a real socket, so its test runs a loopback server.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import httpx
import pytest
from joserfc import jws
from joserfc.jwk import ECKey
from support.clock import START, FakeClock
from support.loopback_tls import loopback_certificate

from ci_shark import __version__
from ci_shark.errors import ProtocolError, TransportError
from ci_shark.oauth.dpop import DPoPKey, access_token_hash
from ci_shark.oauth.http import (
    BACKOFF_MAX_S,
    MAX_BODY_BYTES,
    OAuthHttp,
    PerRequest,
    TransientFailure,
)
from ci_shark.sandbox import SandboxServer
from ci_shark.secret import Secret

TOKEN_URL = "https://as.example/oauth/token"
API_URL = "https://api.example/deploy"

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """Answers from a script (responses or exceptions) and records each request."""

    def __init__(self, clock: FakeClock, *answers: httpx.Response | Exception | Handler):
        self.clock = clock
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(self.clock())
        assert self.answers, f"unexpected extra request {request.method} {request.url}"
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


HttpFactory = Callable[..., tuple[OAuthHttp, Recorder]]


@pytest.fixture
def http_for(clock: FakeClock) -> Iterator[HttpFactory]:
    opened: list[OAuthHttp] = []

    def factory(
        *answers: httpx.Response | Exception | Handler, jitter: float = 1.0, **kwargs: Any
    ) -> tuple[OAuthHttp, Recorder]:
        recorder = Recorder(clock, *answers)
        http = OAuthHttp(
            transport=httpx.MockTransport(recorder),
            clock=clock,
            sleep=clock.sleep,
            jitter=lambda: jitter,
            **kwargs,
        )
        opened.append(http)
        return http, recorder

    yield factory
    for http in opened:
        http.close()


def ok(**body: Any) -> httpx.Response:
    return httpx.Response(200, json=body or {"ok": True})


def claims_of(proof: str, key: DPoPKey) -> dict[str, Any]:
    verified = jws.deserialize_compact(proof, ECKey.import_key(key.public_jwk), ["ES256"])
    claims: dict[str, Any] = json.loads(verified.payload)
    return claims


# -- headers -------------------------------------------------------------------------------


def test_accept_json_and_user_agent_with_version(http_for: HttpFactory) -> None:
    http, server = http_for(ok())
    reply = http.request("GET", TOKEN_URL, deadline=START + 60)

    (request,) = server.requests
    assert request.headers["Accept"] == "application/json"
    assert request.headers["User-Agent"] == f"ci_shark/{__version__}"
    assert reply.status == 200
    assert reply.body == {"ok": True}


def test_form_is_urlencoded_with_secrets_revealed_and_repeated_names(
    http_for: HttpFactory,
) -> None:
    http, server = http_for(ok())
    http.request(
        "POST",
        TOKEN_URL,
        deadline=START + 60,
        form={"device_code": Secret("dc&=1"), "resource": ["https://a/1", "https://b/2"]},
    )
    (request,) = server.requests
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert httpx.QueryParams(request.content.decode()).multi_items() == [
        ("device_code", "dc&=1"),
        ("resource", "https://a/1"),
        ("resource", "https://b/2"),
    ]


def test_per_request_timeouts_never_exceed_the_time_left(http_for: HttpFactory) -> None:
    http, server = http_for(ok())
    http.request("GET", TOKEN_URL, deadline=START + 3)
    timeouts = server.requests[0].extensions["timeout"]
    assert all(0 < value <= 3 for value in timeouts.values())


# -- retries -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_transient_statuses_are_retried_with_growing_backoff(
    http_for: HttpFactory, clock: FakeClock, status: int
) -> None:
    http, server = http_for(
        httpx.Response(status, text="<html>busy</html>"),
        httpx.Response(status),
        httpx.Response(status),
        ok(),
    )
    reply = http.request("GET", TOKEN_URL, deadline=START + 60)

    assert reply.status == 200
    assert len(server.requests) == 4
    assert clock.sleeps == pytest.approx([0.5, 1.0, 2.0])  # jitter 1.0: the full backoff


def test_backoff_has_jitter_and_a_cap(http_for: HttpFactory, clock: FakeClock) -> None:
    http, _ = http_for(*[httpx.Response(503)] * 8, ok(), jitter=0.0)
    http.request("GET", TOKEN_URL, deadline=START + 600)

    assert clock.sleeps[:3] == pytest.approx([0.25, 0.5, 1.0])  # jitter 0: half the backoff
    assert max(clock.sleeps) == pytest.approx(BACKOFF_MAX_S / 2)


def test_retry_after_is_honoured(http_for: HttpFactory, clock: FakeClock) -> None:
    http, server = http_for(
        httpx.Response(429, text="slow down!", headers={"Retry-After": "7"}), ok()
    )
    http.request("POST", TOKEN_URL, deadline=START + 60, form={"a": "b"})

    assert clock.sleeps == [7.0]
    assert server.times == [START, START + 7]


@pytest.mark.parametrize("retry_after", ["0", "-3", "Thu, 01 Jan 1970 00:00:00 GMT"])
def test_a_zero_or_past_retry_after_still_backs_off(
    http_for: HttpFactory, clock: FakeClock, retry_after: str
) -> None:
    # A server saying "retry now" during an outage must not be hammered until the deadline.
    busy = httpx.Response(503, headers={"Retry-After": retry_after})
    http, server = http_for(busy, busy, busy, busy, ok())
    http.request("GET", TOKEN_URL, deadline=START + 60)

    assert len(server.requests) == 5
    assert clock.sleeps == pytest.approx([0.5, 1.0, 2.0, 4.0])


def test_retry_after_as_an_http_date(http_for: HttpFactory, clock: FakeClock) -> None:
    when = formatdate(time.time() + 20, usegmt=True)
    http, _ = http_for(httpx.Response(503, headers={"Retry-After": when}), ok())
    http.request("GET", TOKEN_URL, deadline=START + 60)

    (slept,) = clock.sleeps
    assert 17 <= slept <= 21


def test_oauth_server_error_in_a_5xx_is_transient(http_for: HttpFactory) -> None:
    http, server = http_for(httpx.Response(503, json={"error": "temporarily_unavailable"}), ok())
    assert http.request("GET", TOKEN_URL, deadline=START + 60).status == 200
    assert len(server.requests) == 2


def test_oauth_error_in_a_429_is_returned_for_the_caller_to_decide(
    http_for: HttpFactory,
) -> None:
    http, server = http_for(httpx.Response(429, json={"error": "slow_down"}))
    reply = http.request("POST", TOKEN_URL, deadline=START + 60, retry=False)
    assert (reply.status, reply.error) == (429, "slow_down")
    assert len(server.requests) == 1


def test_retries_stop_before_the_deadline(http_for: HttpFactory, clock: FakeClock) -> None:
    http, server = http_for(httpx.Response(503))

    with pytest.raises(TransportError) as caught:
        http.request("GET", TOKEN_URL, deadline=START + 10)

    assert not isinstance(caught.value, TransientFailure)
    assert caught.value.exit_code == 1
    assert "deadline" in caught.value.message
    assert clock.now < START + 10
    assert all(at < START + 10 for at in server.times)
    assert len(server.requests) >= 3


def test_a_retry_after_beyond_the_deadline_is_not_waited_for(
    http_for: HttpFactory, clock: FakeClock
) -> None:
    http, server = http_for(httpx.Response(503, headers={"Retry-After": "3600"}))

    with pytest.raises(TransportError):
        http.request("GET", TOKEN_URL, deadline=START + 60)

    assert clock.sleeps == []
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(501, json={"error": "unsupported_grant_type"}), "unsupported_grant_type"),
        (httpx.Response(501, text="<html>Not Implemented</html>"), None),
    ],
)
def test_501_is_final_not_retried(
    http_for: HttpFactory, clock: FakeClock, answer: httpx.Response, error: str | None
) -> None:
    http, server = http_for(answer)
    reply = http.request("POST", TOKEN_URL, deadline=START + 60)

    assert (reply.status, reply.error) == (501, error)
    assert len(server.requests) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadError("connection reset by peer"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("server disconnected"),
    ],
)
def test_network_errors_are_retried(
    http_for: HttpFactory, clock: FakeClock, failure: Exception
) -> None:
    http, server = http_for(failure, failure, ok())
    assert http.request("GET", TOKEN_URL, deadline=START + 60).status == 200
    assert len(server.requests) == 3
    assert len(clock.sleeps) == 2


def test_a_body_cut_short_is_retried(http_for: HttpFactory) -> None:
    def broken_body() -> Iterator[bytes]:
        yield b'{"access_'
        raise httpx.ReadError("connection reset by peer")

    http, server = http_for(httpx.Response(200, content=broken_body()), ok())
    assert http.request("GET", TOKEN_URL, deadline=START + 60).body == {"ok": True}
    assert len(server.requests) == 2


def test_retry_false_raises_transient_failure_at_once(
    http_for: HttpFactory, clock: FakeClock
) -> None:
    http, server = http_for(httpx.Response(503, headers={"Retry-After": "12"}))

    with pytest.raises(TransientFailure) as caught:
        http.request("POST", TOKEN_URL, deadline=START + 60, retry=False)

    assert caught.value.retry_after_s == 12
    assert caught.value.exit_code == 1
    assert len(server.requests) == 1
    assert clock.sleeps == []


def test_retry_false_network_error(http_for: HttpFactory) -> None:
    http, server = http_for(httpx.ConnectError("refused"))
    with pytest.raises(TransientFailure) as caught:
        http.request("POST", TOKEN_URL, deadline=START + 60, retry=False)
    assert caught.value.retry_after_s is None
    assert len(server.requests) == 1


def test_error_messages_do_not_carry_server_text(http_for: HttpFactory) -> None:
    http, _ = http_for(httpx.Response(503, text="::error::pwned\n##[error]pwned"))
    with pytest.raises(TransientFailure) as caught:
        http.request("GET", TOKEN_URL, deadline=START + 60, retry=False)
    assert "pwned" not in caught.value.diagnostics()


# -- body cap ------------------------------------------------------------------------------


def chunks(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    while total > 0:
        yield b" " * min(size, total)
        total -= size


def test_default_cap_is_one_mebibyte(http_for: HttpFactory) -> None:
    assert MAX_BODY_BYTES == 1024 * 1024
    body = b'{"ok": true}' + b" " * (MAX_BODY_BYTES - 12)
    http, _ = http_for(httpx.Response(200, content=body), httpx.Response(200, content=body + b" "))
    assert http.request("GET", TOKEN_URL, deadline=START + 60).body == {"ok": True}
    with pytest.raises(ProtocolError):
        http.request("GET", TOKEN_URL, deadline=START + 60)


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "streamed"])
@pytest.mark.parametrize("status", [500, 503, 429])
def test_oversized_error_page_is_transient(
    http_for: HttpFactory, status: int, *, streamed: bool
) -> None:
    content = chunks(5000) if streamed else b" " * 5000
    response = httpx.Response(status, content=content)
    assert ("content-length" in response.headers) is not streamed
    http, server = http_for(response, max_body_bytes=1000)

    with pytest.raises(TransientFailure) as caught:
        http.request("GET", TOKEN_URL, deadline=START + 60, retry=False)

    assert "larger than 1000 bytes" in caught.value.message
    assert len(server.requests) == 1


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "streamed"])
def test_oversized_200_is_a_protocol_error(http_for: HttpFactory, *, streamed: bool) -> None:
    content = chunks(5000) if streamed else b" " * 5000
    response = httpx.Response(200, content=content)
    assert ("content-length" in response.headers) is not streamed
    http, server = http_for(response, max_body_bytes=1000)

    with pytest.raises(ProtocolError) as caught:
        http.request("GET", TOKEN_URL, deadline=START + 60)

    assert caught.value.exit_code == 5
    assert len(server.requests) == 1


def test_a_lying_content_length_is_refused_before_reading(http_for: HttpFactory) -> None:
    http, _ = http_for(
        httpx.Response(200, headers={"Content-Length": str(10**12)}, content=b"{}"),
        max_body_bytes=1000,
    )
    with pytest.raises(ProtocolError):
        http.request("GET", TOKEN_URL, deadline=START + 60)


def test_non_json_and_non_object_bodies_have_no_body(http_for: HttpFactory) -> None:
    http, _ = http_for(
        httpx.Response(400, text="<html>Bad Request</html>"),
        httpx.Response(400, json=["error", "x"]),
        httpx.Response(400, json={"error": 42}),
    )
    first = http.request("GET", TOKEN_URL, deadline=START + 60)
    second = http.request("GET", TOKEN_URL, deadline=START + 60)
    third = http.request("GET", TOKEN_URL, deadline=START + 60)
    assert (first.body, first.error) == (None, None)
    assert (second.body, second.error) == (None, None)
    assert third.error is None


# -- https rule, redirects, client auth ----------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://as.example/oauth/token",
        "http://10.0.0.1/token",
        "ftp://as.example/token",
        "https://user:pw@as.example/token",
        "/oauth/token",
    ],
)
def test_refuses_unsafe_urls_before_sending(http_for: HttpFactory, url: str) -> None:
    http, server = http_for(ok())
    with pytest.raises(ProtocolError) as caught:
        http.request("POST", url, deadline=START + 60, form={"device_code": Secret("dc")})
    assert caught.value.exit_code == 5
    assert server.requests == []
    assert ":pw@" not in caught.value.diagnostics()  # a password is never echoed


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/token", "http://localhost/token", "http://[::1]:9/token"]
)
def test_allows_loopback_http(http_for: HttpFactory, url: str) -> None:
    http, server = http_for(ok())
    assert http.request("GET", url, deadline=START + 60).status == 200
    assert len(server.requests) == 1


def test_redirects_are_not_followed(http_for: HttpFactory) -> None:
    http, server = http_for(
        httpx.Response(302, headers={"Location": "https://elsewhere.example/steal"})
    )
    reply = http.request("POST", TOKEN_URL, deadline=START + 60, form={"device_code": "dc"})
    assert reply.status == 302
    assert len(server.requests) == 1


def test_basic_client_auth_is_form_encoded_then_base64(http_for: HttpFactory) -> None:
    http, server = http_for(ok())
    client_id, client_secret = "ci shark:1", "p@ss w:rd/é%+"
    http.request(
        "POST",
        TOKEN_URL,
        deadline=START + 60,
        form={"grant_type": "x"},
        basic_auth=(client_id, Secret(client_secret)),
    )
    scheme, encoded = server.requests[0].headers["Authorization"].split(" ")
    raw_id, raw_secret = base64.b64decode(encoded).decode("ascii").split(":")
    assert scheme == "Basic"
    assert (unquote_plus(raw_id), unquote_plus(raw_secret)) == (client_id, client_secret)


def test_bearer_access_token_without_dpop(http_for: HttpFactory) -> None:
    http, server = http_for(ok())
    http.request("GET", API_URL, deadline=START + 60, access_token=Secret("at-1"))
    assert server.requests[0].headers["Authorization"] == "Bearer at-1"
    assert "DPoP" not in server.requests[0].headers


# -- DPoP ----------------------------------------------------------------------------------


def use_dpop_nonce(nonce: str | None, **extra: str) -> httpx.Response:
    headers = {"DPoP-Nonce": nonce} if nonce else {}
    return httpx.Response(400, json={"error": "use_dpop_nonce"}, headers={**headers, **extra})


def test_use_dpop_nonce_is_retried_once_with_a_new_proof(http_for: HttpFactory) -> None:
    key = DPoPKey.generate()
    http, server = http_for(use_dpop_nonce("n-1"), ok(access_token="at"))

    reply = http.request("POST", TOKEN_URL, deadline=START + 60, form={"a": "b"}, dpop=key)

    assert reply.status == 200
    first, second = (claims_of(r.headers["DPoP"], key) for r in server.requests)
    assert "nonce" not in first
    assert second["nonce"] == "n-1"
    assert first["jti"] != second["jti"]
    assert server.requests[1].content == server.requests[0].content
    assert http.dpop_nonce(TOKEN_URL) == "n-1"


def test_use_dpop_nonce_is_retried_only_once(http_for: HttpFactory) -> None:
    key = DPoPKey.generate()
    http, server = http_for(use_dpop_nonce("n-1"), use_dpop_nonce("n-2"), ok())

    reply = http.request("POST", TOKEN_URL, deadline=START + 60, dpop=key)

    assert (reply.status, reply.error) == (400, "use_dpop_nonce")
    assert len(server.requests) == 2
    assert http.dpop_nonce(TOKEN_URL) == "n-2"  # remembered for the next request


def test_use_dpop_nonce_without_a_new_nonce_is_not_retried(http_for: HttpFactory) -> None:
    key = DPoPKey.generate()
    http, server = http_for(use_dpop_nonce(None))
    reply = http.request("POST", TOKEN_URL, deadline=START + 60, dpop=key)
    assert reply.error == "use_dpop_nonce"
    assert len(server.requests) == 1


def test_use_dpop_nonce_without_dpop_is_not_retried(http_for: HttpFactory) -> None:
    http, server = http_for(use_dpop_nonce("n-1"))
    http.request("POST", TOKEN_URL, deadline=START + 60)
    assert len(server.requests) == 1


def test_the_newest_nonce_is_remembered_per_origin_from_every_response(
    http_for: HttpFactory,
) -> None:
    key = DPoPKey.generate()
    http, server = http_for(
        httpx.Response(200, json={}, headers={"DPoP-Nonce": "as-1"}),
        httpx.Response(
            400, json={"error": "authorization_pending"}, headers={"DPoP-Nonce": "as-2"}
        ),
        httpx.Response(503, headers={"DPoP-Nonce": "as-3"}),
        ok(),
        ok(),
    )
    http.request("POST", TOKEN_URL, deadline=START + 60, dpop=key)
    http.request("POST", TOKEN_URL, deadline=START + 60, dpop=key)
    http.request("POST", TOKEN_URL, deadline=START + 60, dpop=key)  # 503, retried, 200
    http.request("GET", API_URL, deadline=START + 60, dpop=key)

    nonces = [claims_of(r.headers["DPoP"], key).get("nonce") for r in server.requests]
    assert nonces == [None, "as-1", "as-2", "as-3", None]  # api.example has its own nonces
    assert http.dpop_nonce("https://AS.example/other/path") == "as-3"
    assert http.dpop_nonce(API_URL) is None


def test_resource_401_challenge_is_retried_with_nonce_and_ath(http_for: HttpFactory) -> None:
    key = DPoPKey.generate()
    challenge = httpx.Response(
        401,
        headers={
            "WWW-Authenticate": 'DPoP error="use_dpop_nonce", error_description="fresh nonce"',
            "DPoP-Nonce": "rs-1",
        },
    )
    http, server = http_for(challenge, ok())

    reply = http.request(
        "GET", API_URL + "?env=prod", deadline=START + 60, dpop=key, access_token=Secret("at-9")
    )

    assert reply.status == 200
    first, second = server.requests
    for request in (first, second):
        assert request.headers["Authorization"] == "DPoP at-9"
    claims = [claims_of(r.headers["DPoP"], key) for r in (first, second)]
    assert claims[1]["nonce"] == "rs-1"
    assert claims[0]["jti"] != claims[1]["jti"]
    assert all(c["ath"] == access_token_hash("at-9") for c in claims)
    assert all(c["htu"] == API_URL and c["htm"] == "GET" for c in claims)


def test_other_401s_are_not_retried(http_for: HttpFactory) -> None:
    key = DPoPKey.generate()
    http, server = http_for(
        httpx.Response(
            401,
            headers={"WWW-Authenticate": 'DPoP error="invalid_token"', "DPoP-Nonce": "rs-1"},
        )
    )
    reply = http.request("GET", API_URL, deadline=START + 60, dpop=key, access_token=Secret("a"))
    assert reply.status == 401
    assert len(server.requests) == 1


def test_unprintable_or_huge_nonces_are_ignored(http_for: HttpFactory) -> None:
    key = DPoPKey.generate()
    http, _ = http_for(
        httpx.Response(200, headers={"DPoP-Nonce": "ok-1"}),
        httpx.Response(200, headers={"DPoP-Nonce": "x" * 2000}),
    )
    http.request("POST", TOKEN_URL, deadline=START + 60, dpop=key)
    http.request("POST", TOKEN_URL, deadline=START + 60, dpop=key)
    assert http.dpop_nonce(TOKEN_URL) == "ok-1"


def test_every_attempt_is_sent_a_retry_and_a_nonce_retry_included(http_for: HttpFactory) -> None:
    key = DPoPKey.generate()
    http, server = http_for(httpx.Response(502), use_dpop_nonce("n"), ok())
    assert http.request("POST", TOKEN_URL, deadline=START + 60, dpop=key).status == 200
    assert len(server.requests) == 3


# -- a form value made per send (a single-use client assertion) ----------------------------


class Assertions:
    """A token source as a CI's: a different token for each call, every one counted."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def __call__(self) -> Secret:
        self.made.append(f"eyJ.assertion-{len(self.made) + 1}.sig")
        return Secret(self.made[-1])


def assertions_sent(server: Recorder) -> list[str]:
    return [httpx.QueryParams(r.content.decode())["client_assertion"] for r in server.requests]


def test_a_per_request_value_is_made_for_each_nonce_retry(http_for: HttpFactory) -> None:
    key, made = DPoPKey.generate(), Assertions()
    http, server = http_for(use_dpop_nonce("n-1"), ok(access_token="at"))
    form = {"grant_type": "refresh_token", "client_assertion": PerRequest(made)}

    assert http.request("POST", TOKEN_URL, deadline=START + 60, form=form, dpop=key).status == 200

    assert assertions_sent(server) == made.made == ["eyJ.assertion-1.sig", "eyJ.assertion-2.sig"]
    # The retry's body is another length: its Content-Length says so, not the first one's.
    for request in server.requests:
        assert int(request.headers["Content-Length"]) == len(request.content)
    assert [httpx.QueryParams(r.content.decode())["grant_type"] for r in server.requests] == [
        "refresh_token"
    ] * 2


def test_a_per_request_value_is_made_for_each_transient_retry(http_for: HttpFactory) -> None:
    made = Assertions()
    http, server = http_for(httpx.Response(503), httpx.ConnectError("reset"), ok())
    form = {"client_assertion": PerRequest(made)}

    assert http.request("POST", TOKEN_URL, deadline=START + 60, form=form).status == 200

    assert assertions_sent(server) == made.made
    assert len(set(made.made)) == 3


def test_a_per_request_value_that_fails_in_transit_is_a_transient_failure(
    http_for: HttpFactory,
) -> None:
    """A token service that is down fails the send as the server being down would: a poll
    (retry=False) tries again at its next interval."""
    http, server = http_for(ok())

    def down() -> Secret:
        raise TransientFailure("the token service answered HTTP 503")

    form = {"client_assertion": PerRequest(down)}
    with pytest.raises(TransientFailure, match="token service answered HTTP 503"):
        http.request("POST", TOKEN_URL, deadline=START + 60, form=form, retry=False)
    assert server.requests == []


def test_a_body_dripping_past_the_deadline_is_cut_off() -> None:
    clock = FakeClock(0.0)

    class Drip(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            for _ in range(100):
                clock.advance(1.0)  # one byte a second, forever as far as the client knows
                yield b" "

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Drip())

    http = OAuthHttp(transport=httpx.MockTransport(handler), clock=clock, sleep=clock.sleep)
    with pytest.raises(TransientFailure):
        http.request("POST", "https://as.example.com/token", form={}, deadline=5.0, retry=False)
    assert clock.now < 10


@contextmanager
def header_drip(tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """A loopback server that answers a status line, then one header byte every 0.2 s
    (a header name that never ends) for at most 10 s; yields the URL to call."""
    stop = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def drip() -> None:
            raw, _ = listener.accept()
            with suppress(OSError), tls.wrap_socket(raw, server_side=True) if tls else raw as peer:
                peer.recv(65536)  # the request
                peer.sendall(b"HTTP/1.1 200 OK\r\n")
                for _ in range(50):
                    if stop.wait(0.2):
                        return
                    peer.sendall(b"X")

        server = threading.Thread(target=drip, daemon=True)
        server.start()
        scheme = "https" if tls else "http"
        try:
            yield f"{scheme}://127.0.0.1:{listener.getsockname()[1]}/token"
        finally:
            stop.set()
            server.join(5)


def test_headers_dripping_past_the_deadline_are_cut_off() -> None:
    # Headers are read inside httpcore, where only the socket watchdog can stop a drip.
    started = time.monotonic()
    with (
        header_drip() as url,
        OAuthHttp() as http,
        pytest.raises(TransientFailure, match="by the deadline"),
    ):
        http.request("POST", url, form={}, deadline=started + 1.0, retry=False)
    assert time.monotonic() - started < 6  # not the drip's 10 s


def test_tls_headers_dripping_past_the_deadline_are_cut_off(tmp_path: Path) -> None:
    # Same drip over TLS, trusted through ca_bundle: the watchdog shuts the TLS socket.
    certificate = loopback_certificate(tmp_path)
    started = time.monotonic()
    with (
        header_drip(certificate.server_context()) as url,
        OAuthHttp(ca_bundle=str(certificate.cert_file)) as http,
        pytest.raises(TransientFailure, match="by the deadline"),
    ):
        http.request("POST", url, form={}, deadline=started + 1.5, retry=False)
    assert time.monotonic() - started < 6


@contextmanager
def connect_proxy() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP proxy that answers one CONNECT and then relays bytes both ways;
    yields its URL and the targets it was asked for."""
    asked: list[str] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def relay(source: socket.socket, sink: socket.socket) -> None:
            with suppress(OSError):
                while data := source.recv(65536):
                    sink.sendall(data)
            with suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

        def serve() -> None:
            client, _ = listener.accept()
            with client:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += client.recv(4096)
                target = head.split()[1].decode()
                asked.append(target)
                host, port = target.rsplit(":", 1)
                with socket.create_connection((host, int(port)), timeout=15) as upstream:
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    back = threading.Thread(target=relay, args=(upstream, client), daemon=True)
                    back.start()
                    relay(client, upstream)
                    back.join(15)

        proxy = threading.Thread(target=serve, daemon=True)
        proxy.start()
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", asked
        proxy.join(15)


def test_tls_through_a_proxy_dripping_past_the_deadline_is_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Behind HTTPS_PROXY the TLS runs inside a CONNECT tunnel: that socket is shut too.
    monkeypatch.setattr("ci_shark.oauth.transport.is_loopback_host", lambda host: False)
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    certificate = loopback_certificate(tmp_path)
    started = time.monotonic()
    with header_drip(certificate.server_context()) as url, connect_proxy() as (proxy, asked):
        monkeypatch.setenv("HTTPS_PROXY", proxy)
        with (
            OAuthHttp(ca_bundle=str(certificate.cert_file)) as http,
            pytest.raises(TransientFailure, match="by the deadline"),
        ):
            http.request("POST", url, form={}, deadline=started + 1.5, retry=False)
    assert asked == [url.removeprefix("https://").removesuffix("/token")]
    assert time.monotonic() - started < 6


@pytest.mark.parametrize(("keepalive_s", "connections"), [(0.2, 2), (5.0, 1)])
def test_an_idle_connection_is_kept_for_keepalive_s(keepalive_s: float, connections: int) -> None:
    # Polls sit idle for the whole interval between requests: the connection must outlive
    # it, or each poll pays a new handshake.
    with SandboxServer() as server, OAuthHttp(keepalive_s=keepalive_s) as http:
        metadata = f"{server.url}/.well-known/oauth-authorization-server"
        for _ in range(2):
            http.request("GET", metadata, deadline=time.monotonic() + 10)
            time.sleep(0.5)
        assert server.stats.connections == connections


# -- the byte cap counts the wire and the decoder ------------------------------------------


def test_identity_is_asked_for(http_for: HttpFactory) -> None:
    http, server = http_for(ok())
    http.request("GET", TOKEN_URL, deadline=START + 60)
    assert server.requests[0].headers["Accept-Encoding"] == "identity"


def test_one_gzip_layer_is_decoded(http_for: HttpFactory) -> None:
    body = gzip.compress(json.dumps({"ok": True}).encode())
    http, _ = http_for(httpx.Response(200, content=body, headers={"Content-Encoding": "gzip"}))
    assert http.request("GET", TOKEN_URL, deadline=START + 60).body == {"ok": True}


def test_a_gzip_bomb_is_refused_at_the_cap_not_inflated(http_for: HttpFactory) -> None:
    bomb = gzip.compress(b" " * (50 * 1024 * 1024))  # ~50 kB on the wire
    assert len(bomb) < 100_000
    http, _ = http_for(httpx.Response(200, content=bomb, headers={"Content-Encoding": "gzip"}))
    with pytest.raises(ProtocolError, match="larger than"):
        http.request("GET", TOKEN_URL, deadline=START + 60)


@pytest.mark.parametrize("encoding", ["gzip, gzip", "gzip,gzip,gzip", "br", "zstd"])
def test_layered_or_unknown_encodings_are_refused(http_for: HttpFactory, encoding: str) -> None:
    http, _ = http_for(httpx.Response(200, content=b"x", headers={"Content-Encoding": encoding}))
    with pytest.raises(ProtocolError, match="did not ask for"):
        http.request("GET", TOKEN_URL, deadline=START + 60)


def test_a_bare_401_with_a_fresh_nonce_is_retried_once(http_for: HttpFactory) -> None:
    # glewlwyd: no WWW-Authenticate error, only a new DPoP-Nonce.
    key = DPoPKey.generate()
    http, server = http_for(httpx.Response(401, headers={"DPoP-Nonce": "rs-9"}), ok())
    reply = http.request("GET", API_URL, deadline=START + 60, dpop=key, access_token=Secret("a"))
    assert reply.status == 200
    assert claims_of(server.requests[1].headers["DPoP"], key)["nonce"] == "rs-9"


def test_each_different_failure_is_reported_once_with_its_deadline(
    http_for: HttpFactory,
) -> None:
    # Issue 23: a server down for a minute is one line, not one line per try.
    lines: list[str] = []
    refused = httpx.ConnectError("connection refused")
    http, server = http_for(
        *[httpx.Response(503)] * 3, refused, refused, httpx.Response(503), ok(), report=lines.append
    )
    http.request("GET", TOKEN_URL, deadline=START + 60)
    assert len(server.requests) == 7
    assert len(lines) == 2
    assert lines[0].startswith(f"{TOKEN_URL} answered HTTP 503; trying again until ")
    assert lines[1].startswith(f"{TOKEN_URL}: could not connect; trying again until ")
    assert all(line.endswith(" UTC") for line in lines)


@pytest.mark.parametrize("depth", [10_000, 200_000])
def test_deeply_nested_json_is_no_body_not_a_crash(http_for: HttpFactory, depth: int) -> None:
    nested = b'{"a":' * depth + b"1" + b"}" * depth
    http, _ = http_for(httpx.Response(200, content=nested), max_body_bytes=8 * 1024 * 1024)
    assert http.request("GET", TOKEN_URL, deadline=START + 60).body is None
