"""The login's token on a later command's requests (token_auth.py): refreshed before it
expires, one nonce retry, one retry with a refreshed token, never a streamed body twice.
Proofs are checked with joserfc (support/dpop_proofs.py), not with ci_shark's code."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from support.clock import FakeClock
from support.dpop_proofs import ProofRefused, verify_proof

from ci_shark.errors import CiSharkError, ProtocolError
from ci_shark.issued import Issued
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import HttpClient
from ci_shark.token_auth import EXPIRY_MARGIN_S, REFRESH_RETRY_S, LiveCredentials, LoginTokenAuth

API = "https://api.example.com"
EPOCH = datetime(2030, 1, 1, tzinfo=timezone.utc)
KEY = DPoPKey.generate()


def issued(token: str, *, lives_s: int = 3600, at: float = 0.0, dpop: bool = True) -> Issued:
    expires = EPOCH + timedelta(seconds=at + lives_s)
    return Issued(
        {
            "SHARK_ACCESS_TOKEN": token,
            "SHARK_REFRESH_TOKEN": f"rt-for-{token}",
            "SHARK_TOKEN_TYPE": "DPoP" if dpop else "Bearer",
            "SHARK_DPOP_JWK": KEY.private_jwk().reveal() if dpop else "",
            "SHARK_EXPIRES_AT": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "SHARK_EXPIRES_IN": str(lives_s),
        },
        None,
    )


class Refresher:
    """The refresh grant as a test sees it: each call brings the next token."""

    def __init__(self, clock: FakeClock, *, lives_s: int = 3600, fail: bool = False) -> None:
        self.clock = clock
        self.lives_s = lives_s
        self.fail = fail
        self.calls = 0
        self.made = 1  # at-1 is the login's

    def __call__(self, due: Issued) -> Issued:
        self.calls += 1
        if self.fail:
            raise CiSharkError("the authorization server is down")
        self.made += 1
        return issued(f"at-{self.made}", lives_s=self.lives_s, at=self.clock.now)


def live_of(
    first: Issued, refresher: Refresher, clock: FakeClock, lines: list[str] | None = None
) -> LiveCredentials:
    return LiveCredentials(
        first,
        refresher,
        log=(lines if lines is not None else []).append,
        now=lambda: EPOCH + timedelta(seconds=clock.now),
        clock=clock,
    )


def token_of(live: LiveCredentials) -> str:
    token = live.current().secret("SHARK_ACCESS_TOKEN")
    assert token is not None
    return token.reveal()


# -- refresh before expiry ----------------------------------------------------------------


def test_the_token_is_refreshed_within_the_margin_before_it_expires() -> None:
    clock = FakeClock(0.0)
    refresher = Refresher(clock)
    lines: list[str] = []
    live = live_of(issued("at-1", lives_s=3600), refresher, clock, lines)
    clock.advance(3600 - EXPIRY_MARGIN_S - 1)
    assert token_of(live) == "at-1"  # not yet due
    clock.advance(1)
    assert token_of(live) == "at-2"  # due: still valid for the margin, refreshed first
    assert refresher.calls == 1
    assert lines == [
        "ci_shark: the access token in the SHARK_* variables expires soon; refreshing it"
    ]
    clock.advance(60)
    assert token_of(live) == "at-2"  # the new one lives an hour from when it came
    assert refresher.calls == 1


def test_a_short_lived_token_is_refreshed_at_half_its_life_not_on_every_request() -> None:
    clock = FakeClock(0.0)
    refresher = Refresher(clock, lives_s=20)
    live = live_of(issued("at-1", lives_s=20), refresher, clock)
    assert token_of(live) == "at-1"
    clock.advance(10)
    assert token_of(live) == "at-2"
    for _ in range(9):
        clock.advance(1)
        assert token_of(live) == "at-2"
    clock.advance(1)
    assert token_of(live) == "at-3"
    assert refresher.calls == 2


def test_tokens_another_process_refreshed_earlier_are_due_by_their_own_expiry() -> None:
    """`refresh` hands back the file's tokens when another process (a `ci-shark refresh`
    step) refreshed them meanwhile: they came from the server then, not now, and must be
    refreshed before *they* expire, not a whole lifetime after they were picked up (the
    API would get an expired token, and 401s, for most of an hour)."""
    clock = FakeClock(0.0)

    class RefreshedEarlier(Refresher):
        def __call__(self, due: Issued) -> Issued:
            self.calls += 1
            if self.calls == 1:  # the file's: refreshed by another process at t=100
                return issued("at-other", lives_s=3600, at=100)
            return issued(f"at-{self.calls + 1}", lives_s=3600, at=self.clock.now)

    refresher = RefreshedEarlier(clock)
    live = live_of(issued("at-1", lives_s=3600), refresher, clock)
    clock.advance(3600 - EXPIRY_MARGIN_S)
    assert token_of(live) == "at-other"
    clock.advance(100)  # 30 s before at-other expires
    assert token_of(live) == "at-3"
    assert refresher.calls == 2


def test_an_expired_token_is_refreshed_and_said_so() -> None:
    clock = FakeClock(0.0)
    lines: list[str] = []
    live = live_of(issued("at-1", lives_s=60, at=-120), Refresher(clock), clock, lines)
    assert token_of(live) == "at-2"
    assert "has expired; refreshing it" in lines[0]


def test_threads_that_find_it_due_share_one_refresh() -> None:
    clock = FakeClock(0.0)
    entered = threading.Event()

    class Slow(Refresher):
        def __call__(self, due: Issued) -> Issued:
            entered.set()
            time.sleep(0.05)
            return super().__call__(due)

    refresher = Slow(clock)
    live = live_of(issued("at-1", lives_s=10), refresher, clock)
    clock.advance(9)
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(token_of(live))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert entered.is_set()
    assert got == ["at-2"] * 8
    assert refresher.calls == 1


def test_a_failed_refresh_raises_once_then_waits_before_trying_again() -> None:
    clock = FakeClock(0.0)
    refresher = Refresher(clock, fail=True)
    live = live_of(issued("at-1", lives_s=60), refresher, clock)
    clock.advance(45)
    with pytest.raises(CiSharkError, match="down"):
        live.current()
    assert token_of(live) == "at-1"  # the API says what it thinks of it
    clock.advance(REFRESH_RETRY_S)
    refresher.fail = False
    assert token_of(live) == "at-2"
    assert refresher.calls == 2


def test_without_a_refresh_token_the_credentials_are_used_as_they_are() -> None:
    clock = FakeClock(0.0)
    first = issued("at-1", lives_s=60, at=-120)
    bare = Issued({k: v for k, v in first.values.items() if k != "SHARK_REFRESH_TOKEN"}, None)
    refresher = Refresher(clock)
    assert token_of(live_of(bare, refresher, clock)) == "at-1"
    assert refresher.calls == 0


# -- on the wire ---------------------------------------------------------------------------


class Api:
    """A DPoP resource server: checks every proof as RFC 9449 asks; demands ``nonce``
    when set; calls ``revoked`` tokens invalid."""

    def __init__(self, *, nonce: str | None = None) -> None:
        self.nonce = nonce
        self.revoked: set[str] = set()
        self.seen: list[tuple[str, str, dict[str, object] | None]] = []
        self.jtis: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        request.read()
        if scheme == "Bearer":
            self.seen.append((scheme, token, None))
            return self._answer(token)
        try:
            claims = verify_proof(
                request.headers["dpop"],
                method=request.method,
                url=str(request.url),
                access_token=token,
                nonce=self.nonce,
            )
        except ProofRefused as refused:
            self.seen.append((scheme, token, None))
            challenge = f'DPoP error="{refused.error}"'
            return httpx.Response(401, headers=self._nonce({"WWW-Authenticate": challenge}))
        assert claims["jti"] not in self.jtis, "a proof was sent twice"
        self.jtis.add(str(claims["jti"]))
        assert claims["jkt"] == KEY.jkt
        self.seen.append((scheme, token, claims))
        return self._answer(token)

    def _answer(self, token: str) -> httpx.Response:
        if token in self.revoked:
            challenge = 'DPoP error="invalid_token"'
            return httpx.Response(401, headers=self._nonce({"WWW-Authenticate": challenge}))
        return httpx.Response(200, headers=self._nonce({}), text="ok")

    def _nonce(self, headers: dict[str, str]) -> dict[str, str]:
        return {**headers, "DPoP-Nonce": self.nonce} if self.nonce else headers


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(0.0)


def send(
    api: Api,
    live: LiveCredentials,
    *,
    method: str = "GET",
    url: str = f"{API}/items?page=2",
    content: bytes | Iterator[bytes] | None = None,
) -> httpx.Response:
    with HttpClient(transport=httpx.MockTransport(api)) as http:
        deadline = time.monotonic() + 10
        request = http.build(method, url, deadline=deadline, content=content)
        with http.send(request, deadline=deadline, auth=LoginTokenAuth(live, http.nonces)) as got:
            got.body()
            return got.response


def test_a_dpop_token_goes_with_a_fresh_proof_for_the_url_without_its_query(
    clock: FakeClock,
) -> None:
    api = Api()
    response = send(api, live_of(issued("at-1"), Refresher(clock), clock), method="PATCH")
    assert response.status_code == 200
    [(scheme, token, claims)] = api.seen
    assert (scheme, token) == ("DPoP", "at-1")
    assert claims is not None
    assert (claims["htm"], claims["htu"]) == ("PATCH", f"{API}/items")


def test_a_nonce_demand_is_answered_once_with_a_new_proof(clock: FakeClock) -> None:
    api = Api(nonce="n-1")
    response = send(api, live_of(issued("at-1"), Refresher(clock), clock), content=b"{}")
    assert response.status_code == 200
    assert [claims is not None for _, _, claims in api.seen] == [False, True]
    retried = api.seen[1][2]
    assert retried is not None
    assert retried["nonce"] == "n-1"


def test_a_bearer_token_goes_as_bearer(clock: FakeClock) -> None:
    api = Api()
    send(api, live_of(issued("at-1", dpop=False), Refresher(clock), clock))
    assert api.seen == [("Bearer", "at-1", None)]


def test_a_token_the_api_calls_invalid_is_refreshed_and_the_request_sent_again(
    clock: FakeClock,
) -> None:
    api = Api()
    api.revoked.add("at-1")
    refresher = Refresher(clock)
    response = send(api, live_of(issued("at-1"), refresher, clock), method="POST", content=b"x")
    assert response.status_code == 200
    assert [token for _, token, _ in api.seen] == ["at-1", "at-2"]
    assert refresher.calls == 1


def test_a_refreshed_token_the_api_refuses_too_is_not_refreshed_again(clock: FakeClock) -> None:
    api = Api()
    api.revoked.update({"at-1", "at-2"})
    refresher = Refresher(clock)
    live = live_of(issued("at-1"), refresher, clock)
    assert send(api, live).status_code == 401
    assert send(api, live).status_code == 401
    assert [token for _, token, _ in api.seen] == ["at-1", "at-2", "at-2"]
    assert refresher.calls == 1


def test_a_streamed_body_is_never_sent_twice(clock: FakeClock) -> None:
    api = Api(nonce="n-1")
    api.revoked.add("at-1")

    def body() -> Iterator[bytes]:
        yield b"part"

    live = live_of(issued("at-1"), Refresher(clock), clock)
    assert send(api, live, method="PUT", content=body()).status_code == 401  # the nonce
    assert len(api.seen) == 1


def test_no_token_goes_to_plain_http_off_loopback(clock: FakeClock) -> None:
    api = Api()
    with pytest.raises(ProtocolError, match="plain http"):
        send(api, live_of(issued("at-1"), Refresher(clock), clock), url="http://api.example.com/")
    assert api.seen == []
