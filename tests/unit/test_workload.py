"""workload.py's rules on a token service stand-in: the token fetched up front is the one
the first request carries, every later request gets a fresh one, each is masked before
it is handed out, the newest stay known for redaction, and a token the server would
refuse for its audience or its age is refused here first, before a device code."""

from __future__ import annotations

import base64
import gc
import json
import time
from typing import Any

import pytest

from ci_shark.errors import ConfigError, ProtocolError
from ci_shark.secret import Secret, redact
from ci_shark.workload import KEPT_TOKENS, CiAssertions, checked_claims

AUDIENCE = "https://auth.example"
NOW = 1_700_000_000
LIVE_UNTIL = int(time.time()) + 3600  # the stand-in's tokens are not expired


def jwt(**claims: Any) -> str:
    def segment(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{segment({'alg': 'RS256'})}.{segment(claims)}.c2lnbmF0dXJl"


class Service:
    """A CI token service that mints a numbered token per fetch and keeps none of them."""

    def __init__(self, *, reused: bool = False) -> None:
        self.reused = reused
        self.asked: list[str] = []
        self.closed = False

    def fetch(self, audience: str) -> Secret:
        self.asked.append(audience)
        return Secret(jwt(aud=audience, jti=f"jti-{len(self.asked)}", exp=LIVE_UNTIL))

    def close(self) -> None:
        self.closed = True


def test_the_first_token_is_fetched_up_front_and_carried_by_the_first_request() -> None:
    service, masked = Service(), []
    assertions = CiAssertions(service, lambda secrets: masked.extend(s.reveal() for s in secrets))

    claims = assertions.first(AUDIENCE)
    assert claims["jti"] == "jti-1"
    assert service.asked == [AUDIENCE]

    sent = [assertions().reveal() for _ in range(3)]
    assert service.asked == [AUDIENCE] * 3  # the first request used the one fetched up front
    assert [json.loads(base64.urlsafe_b64decode(t.split(".")[1] + "==")) for t in sent] == [
        {"aud": AUDIENCE, "jti": f"jti-{n}", "exp": LIVE_UNTIL} for n in (1, 2, 3)
    ]
    assert masked == sent  # each one masked before it was handed out
    assertions.close()
    assert service.closed


def test_a_given_audience_wins_over_the_servers_issuer() -> None:
    service = Service()
    assertions = CiAssertions(service, lambda _: None, "api://AzureADTokenExchange")
    with pytest.raises(ConfigError):  # the token says api://…, the check uses it too
        checked_claims(Secret(jwt(aud=AUDIENCE)), "api://AzureADTokenExchange")
    assertions.first(AUDIENCE)
    assert service.asked == ["api://AzureADTokenExchange"]


def test_no_token_before_the_audience_is_known() -> None:
    with pytest.raises(RuntimeError, match="audience is not known"):
        CiAssertions(Service(), lambda _: None)()


def test_the_newest_tokens_stay_known_for_redaction() -> None:
    assertions = CiAssertions(Service(), lambda _: None, AUDIENCE)
    sent = [assertions().reveal() for _ in range(KEPT_TOKENS + 3)]
    gc.collect()
    # A server quoting what a request carried has it taken out of any message...
    assert redact(f"bad assertion {sent[-1]}") == "bad assertion ***"
    assert all(redact(token) == "***" for token in sent[-KEPT_TOKENS:])
    # ...and the run does not hold every token it ever sent.
    assert redact(sent[0]) == sent[0]


@pytest.mark.parametrize(
    "aud", [AUDIENCE, ["https://other.example", AUDIENCE]], ids=["string", "list"]
)
def test_a_token_for_the_audience_passes(aud: object) -> None:
    claims = checked_claims(Secret(jwt(aud=aud, exp=NOW + 60)), AUDIENCE, now=NOW)
    assert claims["aud"] == aud


def test_a_token_for_another_audience_is_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError) as refused:
        checked_claims(Secret(jwt(aud="https://gitlab.example.com")), AUDIENCE, now=NOW)
    assert "is for the audience https://gitlab.example.com, and the server expects " in (
        refused.value.message
    )
    hint = refused.value.hint or ""
    assert f"`aud: {AUDIENCE}` under `id_tokens:` `CI_SHARK_ID_TOKEN:`" in hint
    assert "`workload-identity-audience`" in hint


def test_an_expired_token_is_refused_before_a_device_code() -> None:
    with pytest.raises(ConfigError, match=r"expired at 2023-11-14 22:13:19 UTC"):
        checked_claims(Secret(jwt(aud=AUDIENCE, exp=NOW - 1)), AUDIENCE, now=NOW)


def test_a_token_whose_claims_cannot_be_read_is_refused_unquoted() -> None:
    token = "eyJub3Q.bm90IGpzb24.c2ln"
    with pytest.raises(ProtocolError) as refused:
        checked_claims(Secret(token), AUDIENCE, now=NOW)
    assert token not in refused.value.diagnostics()
