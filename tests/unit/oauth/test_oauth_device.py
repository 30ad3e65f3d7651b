"""RFC 8628 polling decisions (Poller, no I/O) and the device flow end to end over MockTransport.

Time is a fake clock; "sleeping" advances it. Nothing here really waits.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from joserfc import jws
from joserfc.jwk import ECKey
from support.clock import START, FakeClock

from ci_shark.errors import (
    AccessDenied,
    CiSharkError,
    ClientRejected,
    ConfigError,
    DeviceFlowError,
    DeviceFlowUnsupported,
    ExitCode,
    ExpiredToken,
    InvalidGrant,
    ProtocolError,
    TimedOut,
)
from ci_shark.oauth.device import (
    DEFAULT_INTERVAL_S,
    DEVICE_CODE_GRANT,
    MAX_DEVICE_CODE_CHARS,
    MAX_EXPIRES_IN_S,
    MAX_USER_CODE_CHARS,
    POLL_MARGIN_S,
    SLOW_DOWN_STEP_S,
    DeviceAuthorization,
    DeviceFlow,
    Poller,
    parse_device_authorization,
    raise_for_device_authorization,
)
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import OAuthHttp, Reply, TransientFailure
from ci_shark.oauth.providers import PROVIDERS
from ci_shark.secret import Secret

ISSUED_AT = START  # codes are issued when the fake clock starts
AS = "https://as.example"
DEVICE_URL = f"{AS}/oauth/device"
TOKEN_URL = f"{AS}/oauth/token"


def device_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "device_code": "dc-" + "x" * 40,
        "user_code": "WDJB-MJHT",
        "verification_uri": "https://as.example/device",
        "verification_uri_complete": "https://as.example/device?user_code=WDJB-MJHT",
        "expires_in": 900,
        "interval": 5,
    }
    body.update(overrides)
    return {name: value for name, value in body.items() if value is not None}


def authorization(**overrides: Any) -> DeviceAuthorization:
    return parse_device_authorization(device_body(**overrides), now=ISSUED_AT)


def reply(status: int, body: dict[str, Any] | None, **headers: str) -> Reply:
    return Reply(status, httpx.Headers(headers), body)


def pending(status: int = 400) -> Reply:
    return reply(status, {"error": "authorization_pending"})


def slow_down(status: int = 400) -> Reply:
    return reply(status, {"error": "slow_down"})


TOKEN_BODY = {"access_token": "at-123", "token_type": "DPoP", "expires_in": 3600}


# -- parse_device_authorization -----------------------------------------------------------


def test_parse_keeps_the_fields_and_wraps_the_device_code() -> None:
    parsed = authorization()

    assert isinstance(parsed.device_code, Secret)
    assert parsed.device_code.reveal() == "dc-" + "x" * 40
    assert "dc-" not in repr(parsed)  # the dataclass repr cannot leak it
    assert parsed.user_code == "WDJB-MJHT"
    assert parsed.link == "https://as.example/device?user_code=WDJB-MJHT"
    assert parsed.expires_in == 900
    assert parsed.interval == 5
    assert parsed.issued_at == ISSUED_AT


def test_parse_link_falls_back_to_verification_uri() -> None:
    parsed = authorization(verification_uri_complete=None)
    assert parsed.link == "https://as.example/device"


def test_parse_defaults_interval_to_5_when_absent() -> None:
    parsed = authorization(interval=None)
    assert parsed.interval == DEFAULT_INTERVAL_S == 5


def test_parse_accepts_googles_verification_url() -> None:
    body = device_body(verification_uri=None, verification_uri_complete=None)
    body["verification_url"] = "https://www.google.com/device"
    parsed = parse_device_authorization(body, now=ISSUED_AT)
    assert parsed.verification_uri == "https://www.google.com/device"
    assert parsed.link == "https://www.google.com/device"


def test_parse_accepts_numeric_strings_and_loopback_http() -> None:
    parsed = authorization(
        expires_in="600",
        interval="3",
        verification_uri="http://127.0.0.1:8080/device",
        verification_uri_complete="http://localhost:8080/device?code=wdjb-mjht",
    )
    assert (parsed.expires_in, parsed.interval) == (600, 3)
    assert parsed.verification_uri == "http://127.0.0.1:8080/device"


@pytest.mark.parametrize(
    "complete",
    [
        pytest.param("https://as.example/device?user_code=wdjb-mjht", id="query"),
        pytest.param("https://as.example/device?code=WDJBMJHT", id="code-parameter"),
        pytest.param("https://as.example/device/WDJB-MJHT", id="path-segment"),
        pytest.param("https://as.example/device/WDJB%2DMJHT", id="path-segment-encoded"),
        pytest.param("https://as.example/device/verify/WDJB-MJHT", id="deeper-path"),
        pytest.param("https://as.example/activate?user_code=WDJB-MJHT", id="other-path-query"),
        pytest.param("https://as.example/device?t=opaque", id="nothing-to-compare"),
    ],
)
def test_a_complete_link_that_carries_our_code_is_shown(complete: str) -> None:
    parsed = authorization(verification_uri_complete=complete)
    assert parsed.link == parsed.verification_uri_complete == complete
    assert parsed.link_warning is None


@pytest.mark.parametrize(
    ("complete", "other"),
    [
        pytest.param("https://as.example/device?user_code=EVIL-CODE", "EVIL-CODE", id="query"),
        pytest.param(
            "https://as.example/device?user_code=WDJB-MJHT&code=EVIL-CODE", "EVIL-CODE", id="two"
        ),
        pytest.param("https://as.example/device/EVIL-CODE", "EVIL-CODE", id="path-segment"),
        pytest.param("https://as.example/device/EVIL%2DCODE", "EVIL-CODE", id="path-encoded"),
        pytest.param("https://as.example/activate/EVIL-CODE", "activate/EVIL-CODE", id="path"),
    ],
)
def test_a_complete_link_with_another_code_is_not_shown(complete: str, other: str) -> None:
    parsed = authorization(verification_uri_complete=complete)

    assert parsed.verification_uri_complete is None
    assert parsed.link == "https://as.example/device"  # the plain page, where the code is typed
    assert parsed.user_code == "WDJB-MJHT"
    assert parsed.link_warning is not None
    assert f"({other} vs WDJB-MJHT)" in parsed.link_warning
    assert complete not in parsed.link_warning


def test_parse_caps_an_absurd_expires_in() -> None:
    assert authorization(expires_in=10**9).expires_in == MAX_EXPIRES_IN_S


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"verification_uri": "http://evil.example/device"}, id="http-non-loopback"),
        pytest.param({"verification_uri_complete": "http://evil.example/d?c=1"}, id="http-compl"),
        pytest.param({"verification_uri": "javascript:alert(1)"}, id="javascript"),
        pytest.param({"verification_uri_complete": "javascript:alert(1)//"}, id="javascript-c"),
        pytest.param({"verification_uri": "https://user:pw@as.example/d"}, id="credentials"),
        pytest.param({"verification_uri": "https://as.example/d\nInjected"}, id="newline-in-uri"),
        pytest.param({"verification_uri": "/device"}, id="relative"),
        pytest.param({"verification_uri": 42}, id="uri-not-string"),
        pytest.param({"verification_uri": None}, id="no-uri"),
        pytest.param({"device_code": None}, id="no-device-code"),
        pytest.param({"device_code": ""}, id="empty-device-code"),
        pytest.param({"device_code": 12345}, id="device-code-not-string"),
        pytest.param({"device_code": "d" * (MAX_DEVICE_CODE_CHARS + 1)}, id="huge-device-code"),
        pytest.param({"user_code": None}, id="no-user-code"),
        pytest.param({"user_code": ""}, id="empty-user-code"),
        pytest.param({"user_code": "A" * (MAX_USER_CODE_CHARS + 1)}, id="huge-user-code"),
        pytest.param({"user_code": "WDJB\nMJHT"}, id="newline-in-user-code"),
        pytest.param({"user_code": "WDJB\x1b[31mMJHT"}, id="escape-in-user-code"),
        pytest.param({"user_code": "WDJB\u202eMJHT"}, id="bidi-override-in-user-code"),
        pytest.param({"expires_in": None}, id="no-expires-in"),
        pytest.param({"expires_in": "ten minutes"}, id="expires-in-words"),
        pytest.param({"expires_in": 899.5}, id="expires-in-float"),
        pytest.param({"expires_in": True}, id="expires-in-bool"),
        pytest.param({"expires_in": -5}, id="expires-in-negative"),
        pytest.param({"expires_in": 0}, id="expires-in-zero"),
        pytest.param({"interval": "fast"}, id="interval-words"),
        pytest.param({"interval": "\u00b2"}, id="interval-superscript-digit"),
        pytest.param({"expires_in": "9" * 5000}, id="expires-in-5000-digits"),
        pytest.param({"expires_in": 1}, id="expires-in-one-second"),
    ],
)
def test_parse_rejects(overrides: dict[str, Any]) -> None:
    body = device_body()
    body.update(overrides)
    body = {name: value for name, value in body.items() if value is not None}

    with pytest.raises(ProtocolError) as caught:
        parse_device_authorization(body, now=ISSUED_AT)

    assert caught.value.exit_code == ExitCode.PROTOCOL == 5
    assert "\n" not in caught.value.message
    # The device code is a secret: no rejection message may quote it.
    device_code = body.get("device_code")
    if isinstance(device_code, str) and device_code:
        assert device_code not in caught.value.diagnostics()


# -- raise_for_device_authorization ------------------------------------------------------


@pytest.mark.parametrize(
    "refusal",
    [
        reply(404, None),
        reply(405, None),
        reply(501, {"error": "unsupported_grant_type"}),  # SharkAuth's current release
        reply(400, {"error": "unsupported_grant_type"}),
        reply(400, {"error": "device_flow_disabled"}),  # GitHub, when the app has it off
        reply(200, {"error": "device_flow_disabled"}),
    ],
)
def test_device_endpoint_without_device_flow_is_exit_5(refusal: Reply) -> None:
    with pytest.raises(DeviceFlowUnsupported) as caught:
        raise_for_device_authorization(refusal, DEVICE_URL, "the metadata at x")
    assert caught.value.exit_code == 5
    assert "does not offer the device flow" in caught.value.message


def test_device_endpoint_404_says_where_it_asked_and_how_it_found_the_url() -> None:
    source = "shark default paths (no metadata at https://as.example/.well-known/x)"
    with pytest.raises(DeviceFlowUnsupported) as caught:
        raise_for_device_authorization(reply(404, None), DEVICE_URL, source)
    assert DEVICE_URL in caught.value.message
    assert "no metadata at https://as.example/.well-known/x" in caught.value.message
    assert "`auth-url`" in caught.value.diagnostics()


@pytest.mark.parametrize("error", ["invalid_client", "unauthorized_client"])
def test_device_endpoint_refusing_the_client_is_a_config_error(error: str) -> None:
    with pytest.raises(ClientRejected) as caught:
        raise_for_device_authorization(reply(401, {"error": error}), DEVICE_URL, "x")
    assert caught.value.exit_code == 2
    assert "client-id" in caught.value.diagnostics()


def test_device_endpoint_invalid_scope_names_the_scope_input() -> None:
    with pytest.raises(DeviceFlowError) as caught:
        raise_for_device_authorization(
            reply(400, {"error": "invalid_scope", "error_description": "no such\nscope"}),
            DEVICE_URL,
            "x",
        )
    assert caught.value.error == "invalid_scope"
    assert caught.value.exit_code == 2
    assert "`scope`" in caught.value.diagnostics()
    assert "\n" not in caught.value.message


def test_device_endpoint_unknown_error_is_the_server_outside_the_protocol() -> None:
    with pytest.raises(DeviceFlowError) as caught:
        raise_for_device_authorization(
            reply(404, {"error": "device_not_found", "error_description": "no such device"}),
            DEVICE_URL,
            "x",
        )
    assert caught.value.exit_code == 5
    assert "no such device" in caught.value.message


def test_device_endpoint_non_oauth_answer_carries_the_servers_words() -> None:
    answer = Reply(415, httpx.Headers(), None, "expected application/json")
    with pytest.raises(DeviceFlowError) as caught:
        raise_for_device_authorization(answer, DEVICE_URL, "x")
    assert caught.value.exit_code == 5
    assert "HTTP 415" in caught.value.message
    assert "expected application/json" in caught.value.message


# -- Poller: timing ------------------------------------------------------------------------


def test_first_poll_not_before_issued_at_plus_interval() -> None:
    clock = FakeClock(ISSUED_AT + 0.3)  # begin() returned a little after the code was issued
    poller = Poller(authorization(interval=7), timeout_s=600, clock=clock)

    assert poller.next_poll_at() == pytest.approx(ISSUED_AT + 7 + POLL_MARGIN_S)
    assert 0 < POLL_MARGIN_S <= 0.5


def test_default_interval_5_when_absent() -> None:
    poller = Poller(authorization(interval=None), timeout_s=600, clock=FakeClock())
    assert poller.interval_s == 5
    assert poller.next_poll_at() == pytest.approx(ISSUED_AT + 5 + POLL_MARGIN_S)


def test_next_poll_is_timed_from_the_previous_send_not_the_response() -> None:
    clock = FakeClock()
    poller = Poller(authorization(), timeout_s=600, clock=clock)
    poller.sent(1005.1)
    clock.now = 1009.0  # the response took 3.9 s to arrive

    assert poller.decide(pending()) is None
    assert poller.next_poll_at() == pytest.approx(1005.1 + 5 + POLL_MARGIN_S)
    assert poller.polls == 1


def test_authorization_pending_keeps_waiting_at_the_same_interval() -> None:
    clock = FakeClock()
    poller = Poller(authorization(), timeout_s=600, clock=clock)
    for n in range(1, 6):
        sent_at = ISSUED_AT + n * 5.1
        poller.sent(sent_at)
        assert poller.decide(pending()) is None
        assert poller.interval_s == 5
        assert poller.next_poll_at() == pytest.approx(sent_at + 5 + POLL_MARGIN_S)
    assert poller.polls == 5


def test_slow_down_adds_5_seconds_accumulates_and_stays() -> None:
    poller = Poller(authorization(interval=5), timeout_s=3600, clock=FakeClock())

    poller.sent(1005.1)
    assert poller.decide(slow_down()) is None
    assert poller.interval_s == 5 + SLOW_DOWN_STEP_S == 10
    assert poller.next_poll_at() == pytest.approx(1005.1 + 10 + POLL_MARGIN_S)

    poller.sent(1015.2)
    assert poller.decide(slow_down()) is None
    assert poller.interval_s == 15
    assert poller.next_poll_at() == pytest.approx(1015.2 + 15 + POLL_MARGIN_S)

    # authorization_pending afterwards does not give the added time back.
    for sent_at in (1030.3, 1045.4):
        poller.sent(sent_at)
        assert poller.decide(pending()) is None
        assert poller.interval_s == 15
        assert poller.next_poll_at() == pytest.approx(sent_at + 15 + POLL_MARGIN_S)


@pytest.mark.parametrize(
    ("named", "expected"),
    [
        (None, 10),
        (7, 10),  # never less than +5
        (20, 20),  # GitHub names the new interval
        (10**9, 60),  # a hostile server cannot park the job
        ("30", 30),  # a numeric string, as servers send numbers elsewhere
        ("thirty", 10),  # not a number: the RFC's +5
        (True, 10),
    ],
)
def test_slow_down_with_a_named_interval(named: object, expected: int) -> None:
    poller = Poller(authorization(interval=5), timeout_s=3600, clock=FakeClock())
    poller.sent(1005.1)
    body = {"error": "slow_down"} if named is None else {"error": "slow_down", "interval": named}

    assert poller.decide(reply(200, body)) is None

    assert poller.interval_s == expected
    assert poller.next_poll_at() == pytest.approx(1005.1 + expected + POLL_MARGIN_S)


def test_transient_failure_with_retry_after_pushes_the_next_poll() -> None:
    clock = FakeClock()
    poller = Poller(authorization(), timeout_s=600, clock=clock)
    poller.sent(1005.1)
    clock.now = 1006.0

    poller.failed(TransientFailure("HTTP 503", retry_after_s=30))

    assert poller.next_poll_at() == pytest.approx(1036.0)


def test_transient_failure_never_polls_sooner_than_the_interval() -> None:
    clock = FakeClock()
    poller = Poller(authorization(), timeout_s=600, clock=clock)
    poller.sent(1005.1)
    clock.now = 1005.5

    poller.failed(TransientFailure("HTTP 503", retry_after_s=1))
    assert poller.next_poll_at() == pytest.approx(1005.1 + 5 + POLL_MARGIN_S)
    poller.failed(TransientFailure("connection reset"))
    assert poller.next_poll_at() == pytest.approx(1005.1 + 5 + POLL_MARGIN_S)


# -- Poller: deadline ----------------------------------------------------------------------


def test_deadline_is_the_timeout_when_it_comes_first() -> None:
    clock = FakeClock(ISSUED_AT + 2)
    poller = Poller(authorization(expires_in=900), timeout_s=60, clock=clock)

    assert poller.deadline == pytest.approx(ISSUED_AT + 2 + 60)
    error = poller.out_of_time()
    assert isinstance(error, TimedOut)
    assert (error.status, error.exit_code) == ("timeout", 4)
    assert "timeout" in error.diagnostics()


def test_deadline_is_the_code_expiry_when_it_comes_first() -> None:
    clock = FakeClock(ISSUED_AT + 2)
    poller = Poller(authorization(expires_in=30), timeout_s=600, clock=clock)

    assert poller.deadline == pytest.approx(ISSUED_AT + 30)
    error = poller.out_of_time()
    assert isinstance(error, ExpiredToken)
    assert not isinstance(error, TimedOut)
    assert (error.status, error.exit_code) == ("expired", 4)


# -- Poller: the answers -------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 400])  # GitHub answers every error with HTTP 200
@pytest.mark.parametrize(
    ("error", "expected", "exit_code", "outcome"),
    [
        ("access_denied", AccessDenied, 3, "denied"),
        ("authorization_declined", AccessDenied, 3, "denied"),  # Entra ID
        ("expired_token", ExpiredToken, 4, "expired"),
        ("code_expired", ExpiredToken, 4, "expired"),
        ("unsupported_grant_type", DeviceFlowUnsupported, 5, "error"),
        ("device_flow_disabled", DeviceFlowUnsupported, 5, "error"),  # GitHub
        ("invalid_client", ClientRejected, 2, "error"),
        ("unauthorized_client", ClientRejected, 2, "error"),
        ("incorrect_device_code", DeviceFlowError, 5, "error"),  # outside the protocol
        ("invalid_grant", InvalidGrant, 5, "error"),
    ],
)
def test_error_table(
    status: int,
    error: str,
    expected: type[CiSharkError],
    exit_code: int,
    outcome: str,
) -> None:
    poller = Poller(authorization(), timeout_s=600, clock=FakeClock())
    poller.sent(1005.1)

    with pytest.raises(expected) as caught:
        poller.decide(reply(status, {"error": error}))

    assert type(caught.value) is expected
    assert caught.value.exit_code == exit_code
    assert caught.value.status == outcome


@pytest.mark.parametrize("status", [200, 400])
def test_pending_and_slow_down_decided_by_the_body_even_with_http_200(status: int) -> None:
    poller = Poller(authorization(), timeout_s=600, clock=FakeClock())
    poller.sent(1005.1)
    assert poller.decide(pending(status)) is None
    poller.sent(1010.2)
    assert poller.decide(slow_down(status)) is None
    assert poller.interval_s == 10


def test_unknown_error_is_a_device_flow_error_with_sanitised_description() -> None:
    poller = Poller(authorization(), timeout_s=600, clock=FakeClock())
    poller.sent(1005.1)
    hostile = {"error": "weird_error", "error_description": "line one\n::error::injected"}

    with pytest.raises(DeviceFlowError) as caught:
        poller.decide(reply(400, hostile))

    assert type(caught.value) is DeviceFlowError
    assert caught.value.error == "weird_error"
    assert "\n" not in caught.value.message
    assert "line one" in caught.value.message


def test_access_denied_keeps_the_description_on_one_line() -> None:
    poller = Poller(authorization(), timeout_s=600, clock=FakeClock())
    poller.sent(1005.1)
    with pytest.raises(AccessDenied) as caught:
        poller.decide(reply(400, {"error": "access_denied", "error_description": "no\r\nway"}))
    assert caught.value.error_description == "no way"


def test_200_with_a_token_is_granted() -> None:
    poller = Poller(authorization(), timeout_s=600, clock=FakeClock())
    poller.sent(1005.1)
    token = poller.decide(reply(200, dict(TOKEN_BODY)))
    assert token is not None
    assert token.access_token.reveal() == "at-123"
    assert token.token_type == "DPoP"


@pytest.mark.parametrize(
    "body",
    [
        {"token_type": "Bearer"},
        {"access_token": "", "token_type": "Bearer"},
        {"access_token": 5, "token_type": "Bearer"},
        None,  # HTML or other non-JSON
    ],
)
def test_200_without_an_access_token_is_a_protocol_error(body: dict[str, Any] | None) -> None:
    poller = Poller(authorization(), timeout_s=600, clock=FakeClock())
    poller.sent(1005.1)
    with pytest.raises(ProtocolError) as caught:
        poller.decide(reply(200, body))
    assert caught.value.exit_code == 5


def test_error_status_without_an_oauth_error_is_a_protocol_error() -> None:
    poller = Poller(authorization(), timeout_s=600, clock=FakeClock())
    poller.sent(1005.1)
    with pytest.raises(ProtocolError):
        poller.decide(reply(400, {"message": "Bad Request"}))


# -- DeviceFlow end to end over MockTransport ------------------------------------------------


@dataclass
class Seen:
    at: float
    method: str
    url: str
    form: dict[str, list[str]]
    headers: httpx.Headers


@dataclass
class FakeServer:
    """A device endpoint and a token endpoint that answer from a script."""

    clock: FakeClock
    token_script: list[httpx.Response | Exception]
    device_response: httpx.Response | None = None
    response_delay_s: float = 0.0
    metadata: dict[str, Any] | None = None  # served at the RFC 8414 URL when given
    seen: list[Seen] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode()) if request.content else {}
        self.seen.append(
            Seen(self.clock(), request.method, str(request.url), form, request.headers)
        )
        self.clock.now += self.response_delay_s
        if str(request.url) == f"{AS}/.well-known/oauth-authorization-server" and self.metadata:
            return httpx.Response(200, json=self.metadata)
        if str(request.url) == DEVICE_URL:
            return self.device_response or httpx.Response(200, json=device_body())
        if str(request.url) == TOKEN_URL:
            assert self.token_script, "polled again after the flow should have ended"
            answer = self.token_script.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return httpx.Response(404)

    def polls(self) -> list[Seen]:
        return [seen for seen in self.seen if seen.url == TOKEN_URL]


def oauth_error(error: str, status: int = 400, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"error": error}, headers=headers)


def granted() -> httpx.Response:
    return httpx.Response(200, json=TOKEN_BODY)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


FlowFactory = Callable[..., DeviceFlow]


@pytest.fixture
def flow_for() -> Iterator[FlowFactory]:
    """A DeviceFlow wired to a FakeServer's handler, clock and sleep; closed after the test."""
    opened: list[OAuthHttp] = []

    def factory(server: FakeServer, **kwargs: Any) -> DeviceFlow:
        http = OAuthHttp(
            transport=httpx.MockTransport(server.handler),
            clock=server.clock,
            sleep=server.clock.sleep,
            jitter=lambda: 0.5,
        )
        opened.append(http)
        return DeviceFlow(
            AS,
            "ci-client",
            "deploy",
            device_authorization_endpoint=DEVICE_URL,
            token_endpoint=TOKEN_URL,
            http=http,
            clock=server.clock,
            sleep=server.clock.sleep,
            **kwargs,
        )

    yield factory
    for http in opened:
        http.close()


def test_wait_for_approval_polls_on_schedule_and_stops_after_the_200(
    clock: FakeClock, flow_for: FlowFactory
) -> None:
    server = FakeServer(
        clock,
        [
            oauth_error("authorization_pending"),
            oauth_error("slow_down"),
            oauth_error("authorization_pending"),
            granted(),
        ],
    )
    key = DPoPKey.generate()
    flow = flow_for(server, dpop_prover=key)

    started = flow.begin()
    token = flow.wait_for_approval(timeout_s=600)

    assert started.user_code == "WDJB-MJHT"
    assert token.access_token.reveal() == "at-123"
    assert f"DPoP {token.access_token}" == "DPoP at-123"  # the SDK's header f-string
    assert "at-123" not in repr(token)
    assert token.token_type == "DPoP"
    assert token.cnf_jkt == key.jkt
    margin = POLL_MARGIN_S
    expected = [1005 + margin, 1010 + 2 * margin, 1020 + 3 * margin, 1030 + 4 * margin]
    assert [poll.at for poll in server.polls()] == pytest.approx(expected)
    # Nothing after the 200: some servers revoke a token redeemed twice.
    assert server.seen[-1].url == TOKEN_URL
    assert len(server.polls()) == 4
    assert server.token_script == []

    first = server.polls()[0]
    assert first.form["grant_type"] == [DEVICE_CODE_GRANT]
    assert first.form["device_code"] == ["dc-" + "x" * 40]
    assert first.form["client_id"] == ["ci-client"]
    # A fresh, valid DPoP proof on every poll.
    public = ECKey.import_key(key.public_jwk)
    jtis = set()
    for poll in server.polls():
        proof = jws.deserialize_compact(poll.headers["DPoP"], public, algorithms=["ES256"])
        claims = json.loads(proof.payload)
        assert (claims["htm"], claims["htu"]) == ("POST", TOKEN_URL)
        jtis.add(claims["jti"])
    assert len(jtis) == 4


def test_slow_responses_do_not_slow_the_schedule(clock: FakeClock, flow_for: FlowFactory) -> None:
    server = FakeServer(clock, [oauth_error("authorization_pending"), granted()])
    server.response_delay_s = 2.0
    flow = flow_for(server)
    flow.begin()  # takes 2 s: issued_at is when the answer arrived
    flow.wait_for_approval(timeout_s=600)

    first, second = (poll.at for poll in server.polls())
    assert first == pytest.approx(1002 + 5 + POLL_MARGIN_S)
    # Timed from the previous send, not from the response 2 s later.
    assert second == pytest.approx(first + 5 + POLL_MARGIN_S)


def test_wait_for_approval_times_out_and_never_polls_past_the_deadline(
    clock: FakeClock, flow_for: FlowFactory
) -> None:
    server = FakeServer(clock, [oauth_error("authorization_pending") for _ in range(20)])
    flow = flow_for(server)
    flow.begin()

    with pytest.raises(TimedOut) as caught:
        flow.wait_for_approval(timeout_s=20)

    assert caught.value.status == "timeout"
    assert caught.value.exit_code == 4
    poll_times = [poll.at for poll in server.polls()]
    assert poll_times == pytest.approx([1005.1, 1010.2, 1015.3])
    assert clock.now <= ISSUED_AT + 20


def test_wait_for_approval_ends_with_expired_when_the_code_expires_first(
    clock: FakeClock, flow_for: FlowFactory
) -> None:
    server = FakeServer(clock, [oauth_error("authorization_pending") for _ in range(20)])
    server.device_response = httpx.Response(200, json=device_body(expires_in=12))
    flow = flow_for(server)
    flow.begin()

    with pytest.raises(ExpiredToken) as caught:
        flow.wait_for_approval(timeout_s=600)

    assert caught.value.status == "expired"
    assert len(server.polls()) == 2  # at 1005.1 and 1010.2; 1015.3 is past 1012


def test_wait_for_approval_stops_on_denial(clock: FakeClock, flow_for: FlowFactory) -> None:
    server = FakeServer(clock, [oauth_error("authorization_pending"), oauth_error("access_denied")])
    flow = flow_for(server)
    flow.begin()

    with pytest.raises(AccessDenied) as caught:
        flow.wait_for_approval(timeout_s=600)

    assert caught.value.exit_code == 3
    assert len(server.polls()) == 2
    assert server.token_script == []


def test_github_style_200_errors_end_to_end(clock: FakeClock, flow_for: FlowFactory) -> None:
    server = FakeServer(
        clock,
        [oauth_error("authorization_pending", 200), oauth_error("slow_down", 200), granted()],
    )
    flow = flow_for(server)
    flow.begin()
    flow.wait_for_approval(timeout_s=600)

    assert [poll.at for poll in server.polls()] == pytest.approx([1005.1, 1010.2, 1020.3])


def test_transient_failures_while_polling_keep_polling_and_honour_retry_after(
    clock: FakeClock, flow_for: FlowFactory
) -> None:
    server = FakeServer(
        clock,
        [
            httpx.Response(503, text="<html>down</html>", headers={"Retry-After": "30"}),
            httpx.ConnectError("connection refused"),
            granted(),
        ],
    )
    flow = flow_for(server)
    flow.begin()
    token = flow.wait_for_approval(timeout_s=600)

    assert token.access_token.reveal() == "at-123"
    first, second, third = (poll.at for poll in server.polls())
    assert first == pytest.approx(1005.1)
    assert second == pytest.approx(1035.1)  # Retry-After: 30, counted from the failure
    assert third == pytest.approx(second + 5 + POLL_MARGIN_S)


def test_wait_for_approval_reports_progress_before_each_wait(
    clock: FakeClock, flow_for: FlowFactory
) -> None:
    server = FakeServer(clock, [oauth_error("authorization_pending"), granted()])
    flow = flow_for(server)
    flow.begin()
    seconds_left: list[float] = []
    flow.wait_for_approval(timeout_s=100, on_wait=seconds_left.append)

    assert seconds_left == pytest.approx([100, 100 - 5.1])


def test_wait_for_approval_needs_begin(clock: FakeClock, flow_for: FlowFactory) -> None:
    flow = flow_for(FakeServer(clock, []))
    with pytest.raises(RuntimeError, match="begin"):
        flow.wait_for_approval()


def test_begin_sends_scope_resource_extra_params_and_client_secret(
    clock: FakeClock, flow_for: FlowFactory
) -> None:
    server = FakeServer(clock, [])
    flow = flow_for(
        server,
        client_secret="s3cret",
        resource=["https://api.example/a", "https://api.example/b"],
        extra_params={"audience": "deploy-api"},
    )
    flow.begin()

    (request,) = server.seen
    assert request.method == "POST"
    assert request.form == {
        "audience": ["deploy-api"],
        "scope": ["deploy"],
        "resource": ["https://api.example/a", "https://api.example/b"],
    }
    # RFC 6749 §2.3.1: Basic, which every server must take, unless the metadata says not.
    expected = "Basic " + base64.b64encode(b"ci-client:s3cret").decode()
    assert request.headers["Authorization"] == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (httpx.Response(404, text="not found"), DeviceFlowUnsupported),
        (httpx.Response(501, json={"error": "unsupported_grant_type"}), DeviceFlowUnsupported),
        (httpx.Response(401, json={"error": "invalid_client"}), ClientRejected),
        (httpx.Response(200, json={"error": "device_flow_disabled"}), DeviceFlowUnsupported),
        (
            httpx.Response(200, json=device_body(verification_uri="http://evil.example")),
            ProtocolError,
        ),
    ],
)
def test_begin_refusals(
    clock: FakeClock,
    flow_for: FlowFactory,
    answer: httpx.Response,
    expected: type[CiSharkError],
) -> None:
    server = FakeServer(clock, [])
    server.device_response = answer
    flow = flow_for(server)
    with pytest.raises(expected):
        flow.begin()
    assert flow.authorization is None


def test_device_flow_refuses_an_http_auth_url() -> None:
    with pytest.raises(ConfigError) as caught:
        DeviceFlow("http://as.example", "ci-client")
    assert caught.value.exit_code == 2


def confidential_client_login(clock: FakeClock, auth_methods: list[str]) -> FakeServer:
    """A client with a secret, approved at once, against metadata that lists ``auth_methods``
    (no scope asked); the server, with what it saw."""
    server = FakeServer(clock, [granted()])
    server.metadata = {
        "issuer": AS,
        "device_authorization_endpoint": DEVICE_URL,
        "token_endpoint": TOKEN_URL,
        "token_endpoint_auth_methods_supported": auth_methods,
    }
    http = OAuthHttp(transport=httpx.MockTransport(server.handler), clock=clock, sleep=clock.sleep)
    with (
        http,
        DeviceFlow(
            AS, "ci-client", client_secret="s3cret", http=http, clock=clock, sleep=clock.sleep
        ) as flow,
    ):
        flow.begin()
        flow.wait_for_approval(timeout_s=600)
    return server


def test_client_secret_basic_when_the_metadata_offers_it(clock: FakeClock) -> None:
    server = confidential_client_login(clock, ["client_secret_basic"])

    metadata_request, device_request, poll = server.seen
    assert metadata_request.method == "GET"
    expected = "Basic " + base64.b64encode(b"ci-client:s3cret").decode()
    for request in (device_request, poll):
        assert request.headers["Authorization"] == expected
        assert "client_secret" not in request.form
        assert "client_id" not in request.form
    assert device_request.form == {}  # no scope asked, client in the header


def test_client_secret_in_the_form_when_the_metadata_lists_only_that(clock: FakeClock) -> None:
    server = confidential_client_login(clock, ["client_secret_post", "private_key_jwt"])

    for request in server.seen[1:]:
        assert "Authorization" not in request.headers
        assert request.form["client_id"] == ["ci-client"]
        assert request.form["client_secret"] == ["s3cret"]


def test_auth0_invalid_grant_at_the_codes_end_is_its_expiry() -> None:
    clock = FakeClock(ISSUED_AT)
    poller = Poller(
        authorization(expires_in=60), timeout_s=600, clock=clock, provider=PROVIDERS["auth0"]
    )
    clock.now = ISSUED_AT + 58  # its expired_token answer was lost in transit
    poller.sent(clock.now)
    with pytest.raises(ExpiredToken) as caught:
        poller.decide(reply(400, {"error": "invalid_grant"}))
    assert caught.value.exit_code == 4
    early = Poller(authorization(expires_in=600), timeout_s=600, clock=FakeClock(ISSUED_AT))
    with pytest.raises(InvalidGrant):
        early.decide(reply(400, {"error": "invalid_grant"}))


def test_an_interval_longer_than_the_time_left_says_so() -> None:
    clock = FakeClock(ISSUED_AT)
    poller = Poller(authorization(interval=120), timeout_s=60, clock=clock)
    failure = poller.out_of_time()
    assert failure.exit_code == 4
    assert "120s between polls" in failure.message
    assert "60s left" in failure.message
