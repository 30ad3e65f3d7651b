"""The loopback sandbox server, exercised over real HTTP.

DPoP proofs are built with joserfc, independently of ci_shark's own client code, so a bug
in one cannot hide a bug in the other. Time-dependent rules run on an injected clock.
"""

from __future__ import annotations

import re
import socket
import time
import urllib.parse
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from support.clock import FakeClock
from support.dpop_proofs import make_proof
from support.sandbox_client import (
    CLIENT_ID,
    Client,
    error_of,
    granted,
    http_client,
    page_token_of,
    standalone,
)
from support.waits import until

from ci_shark.sandbox import DEVICE_CODE_GRANT_TYPE, SandboxServer

# --------------------------------------------------------------------------- discovery


def test_metadata_documents_name_every_endpoint(server: SandboxServer, http: httpx.Client) -> None:
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        response = http.get(server.url + path)
        assert response.status_code == 200
        assert response.headers["DPoP-Nonce"] == server.nonce
        document = response.json()
        assert document["issuer"] == server.url
        assert document["device_authorization_endpoint"] == f"{server.url}/oauth/device"
        assert document["token_endpoint"] == f"{server.url}/oauth/token"
        assert document["revocation_endpoint"] == f"{server.url}/oauth/revoke"
        assert document["introspection_endpoint"] == f"{server.url}/oauth/introspect"
        assert document["userinfo_endpoint"] == f"{server.url}/userinfo"
        assert DEVICE_CODE_GRANT_TYPE in document["grant_types_supported"]
        assert "refresh_token" in document["grant_types_supported"]
        assert document["dpop_signing_alg_values_supported"] == ["ES256"]


def test_metadata_off_answers_404_but_sharkauth_paths_work(http: httpx.Client) -> None:
    with SandboxServer(metadata=False) as server:
        for path in (
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ):
            assert http.get(server.url + path).status_code == 404
        response = http.post(f"{server.url}/oauth/device", data={"client_id": CLIENT_ID})
        assert response.status_code == 200


def test_device_flow_missing_is_404_and_absent_from_metadata(http: httpx.Client) -> None:
    with SandboxServer(device_flow="missing") as server:
        document = http.get(f"{server.url}/.well-known/oauth-authorization-server").json()
        assert "device_authorization_endpoint" not in document
        assert DEVICE_CODE_GRANT_TYPE not in document["grant_types_supported"]
        response = http.post(f"{server.url}/oauth/device", data={"client_id": CLIENT_ID})
        assert response.status_code == 404
        assert response.headers["Content-Type"].startswith("text/plain")


def test_device_flow_disabled_answers_501_unsupported_grant_type(http: httpx.Client) -> None:
    with SandboxServer(device_flow="disabled") as server:
        response = http.post(f"{server.url}/oauth/device", data={"client_id": CLIENT_ID})
        assert response.status_code == 501
        assert error_of(response) == "unsupported_grant_type"


# --------------------------------------------------------------------------- device authorization


def test_device_authorization_response_and_recorded_request(
    server: SandboxServer, http: httpx.Client
) -> None:
    data = [
        ("client_id", CLIENT_ID),
        ("scope", "openid deploy"),
        ("resource", "https://api.example.com"),
        ("resource", "https://deploy.example.com"),
        ("repository", "octo/repo"),
    ]
    response = http.post(
        f"{server.url}/oauth/device",
        content=urllib.parse.urlencode(data),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert len(body["device_code"]) >= 43
    assert re.fullmatch(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", body["user_code"])
    assert body["verification_uri"] == f"{server.url}/device"
    assert body["verification_uri_complete"] == f"{server.url}/device?user_code={body['user_code']}"
    assert body["expires_in"] == 600
    assert body["interval"] == 1
    (grant,) = server.grants
    assert grant.user_code == body["user_code"]
    assert grant.scope == "openid deploy"
    assert grant.resources == ("https://api.example.com", "https://deploy.example.com")
    assert grant.extra_params == {"repository": "octo/repo"}
    assert grant.status == "pending"


def test_send_interval_false_omits_interval(http: httpx.Client) -> None:
    with SandboxServer(send_interval=False) as server:
        body = http.post(f"{server.url}/oauth/device", data={"client_id": CLIENT_ID}).json()
        assert "interval" not in body


def test_device_authorization_needs_client_id_and_a_form(
    server: SandboxServer, http: httpx.Client
) -> None:
    response = http.post(f"{server.url}/oauth/device", data={"scope": "deploy"})
    assert response.status_code == 401
    assert error_of(response) == "invalid_client"
    response = http.post(f"{server.url}/oauth/device", json={"client_id": CLIENT_ID})
    assert error_of(response) == "invalid_request"


# --------------------------------------------------------------------------- polling


def test_pending_then_approve_then_dpop_token_with_id_token(
    server: SandboxServer, client: Client, clock: FakeClock
) -> None:
    device = client.device(scope="openid deploy")
    first = client.poll(device["device_code"])
    assert first.status_code == 400
    assert error_of(first) == "authorization_pending"
    server.approve()  # the most recent pending code
    clock.advance(1)
    response = client.poll(device["device_code"])
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    token = response.json()
    assert token["token_type"] == "DPoP"
    assert token["expires_in"] == 3600
    assert token["scope"] == "openid deploy"
    assert token["refresh_token"]
    jwks = KeySet.import_key_set(client.http.get(f"{server.url}/oauth/jwks").json())
    claims = jwt.decode(token["id_token"], jwks, algorithms=["ES256"]).claims
    assert claims["iss"] == server.url
    assert claims["sub"] == claims["preferred_username"] == "octocat"
    assert claims["aud"] == CLIENT_ID
    assert claims["exp"] > claims["iat"]
    # The device response already carried the nonce: no challenge was needed.
    assert server.stats.outcomes("/oauth/token") == ["authorization_pending", "granted"]
    assert server.stats.polls == 2


def test_denied_code_answers_access_denied(server: SandboxServer, client: Client) -> None:
    device = client.device()
    server.deny(device["user_code"])
    assert error_of(client.poll(device["device_code"])) == "access_denied"


def test_code_expires_after_expires_in(http: httpx.Client, clock: FakeClock) -> None:
    with SandboxServer(clock=clock, expires_in_s=30) as server:
        client = Client(server, http)
        device = client.device()
        clock.advance(30)
        assert error_of(client.poll(device["device_code"])) == "expired_token"
        with pytest.raises(LookupError):
            server.approve()  # nothing pending any more


def test_auto_approval_after_delay(http: httpx.Client, clock: FakeClock) -> None:
    with SandboxServer(clock=clock, approve_after_s=3) as server:
        client = Client(server, http)
        device = client.device()
        clock.advance(2.9)
        assert error_of(client.poll(device["device_code"])) == "authorization_pending"
        clock.advance(1)
        assert client.poll(device["device_code"]).status_code == 200


def test_slow_down_judged_by_arrival_with_zero_tolerance(
    server: SandboxServer, client: Client, clock: FakeClock
) -> None:
    device_code = client.device()["device_code"]
    assert error_of(client.poll(device_code)) == "authorization_pending"  # t = 0
    clock.advance(0.5)
    assert error_of(client.poll(device_code)) == "slow_down"  # 0.5 < 1: interval now 6
    clock.advance(5.9)
    assert error_of(client.poll(device_code)) == "slow_down"  # 5.9 < 6: interval now 11
    clock.advance(11)
    assert error_of(client.poll(device_code)) == "authorization_pending"  # exactly 11: fine
    clock.advance(11)
    assert error_of(client.poll(device_code)) == "authorization_pending"  # stays at 11
    assert server.grants[0].interval_s == 11
    assert server.stats.slow_downs == 2
    assert server.stats.polls == 5


def test_lenient_interval_never_slows_down(http: httpx.Client, clock: FakeClock) -> None:
    with SandboxServer(clock=clock, strict_interval=False) as server:
        client = Client(server, http)
        device_code = client.device()["device_code"]
        outcomes = [error_of(client.poll(device_code)) for _ in range(3)]
        assert outcomes == ["authorization_pending"] * 3


def test_second_redemption_is_invalid_grant_and_revokes_tokens(
    server: SandboxServer, client: Client, clock: FakeClock
) -> None:
    device = client.device()
    server.approve(device["user_code"])
    token = client.poll(device["device_code"]).json()
    clock.advance(1)
    again = client.poll(device["device_code"])
    assert again.status_code == 400
    assert error_of(again) == "invalid_grant"
    assert client.introspect(token["access_token"]) == {"active": False}


def test_all_polls_must_use_the_same_key(
    server: SandboxServer, client: Client, clock: FakeClock, http: httpx.Client
) -> None:
    device_code = client.device()["device_code"]
    assert error_of(client.poll(device_code)) == "authorization_pending"
    clock.advance(1)
    other = Client(server, http)
    other.nonce = client.nonce
    assert error_of(other.poll(device_code)) == "invalid_dpop_proof"
    assert server.stats.polls == 1  # a refused proof is not a poll


def test_refresh_token_rotates_and_stays_bound(client: Client) -> None:
    token = granted(client, scope="deploy")
    data = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
    data["client_id"] = CLIENT_ID
    refreshed = client.token_request(data)
    assert refreshed.status_code == 200
    assert refreshed.json()["token_type"] == "DPoP"
    assert error_of(client.token_request(data)) == "invalid_grant"  # used once


# --------------------------------------------------------------------------- DPoP, token endpoint


def test_nonce_is_demanded_then_accepted(server: SandboxServer, client: Client) -> None:
    device_code = client.device()["device_code"]
    client.nonce = None
    data = {"grant_type": DEVICE_CODE_GRANT_TYPE, "device_code": device_code}
    data["client_id"] = CLIENT_ID
    challenge = client.token_request(data)
    assert challenge.status_code == 400
    assert error_of(challenge) == "use_dpop_nonce"
    assert challenge.json()["error_description"]
    assert challenge.headers["DPoP-Nonce"] == server.nonce
    assert error_of(client.token_request(data)) == "authorization_pending"
    assert server.stats.nonce_challenges == 1


def test_nonce_rotation_old_nonce_refused_new_one_accepted(
    client: Client, clock: FakeClock
) -> None:
    device_code = client.device()["device_code"]
    assert error_of(client.poll(device_code)) == "authorization_pending"
    old_nonce = client.nonce
    clock.advance(31)  # past the 30 s nonce lifetime
    data = {"grant_type": DEVICE_CODE_GRANT_TYPE, "device_code": device_code}
    data["client_id"] = CLIENT_ID
    stale = client.token_request(data)
    assert error_of(stale) == "use_dpop_nonce"
    assert stale.headers["DPoP-Nonce"] != old_nonce
    assert error_of(client.token_request(data)) == "authorization_pending"


def test_replayed_jti_is_refused(server: SandboxServer, client: Client, clock: FakeClock) -> None:
    device_code = client.device()["device_code"]
    client.poll(device_code)  # learn the nonce
    url = f"{server.url}/oauth/token"
    proof = make_proof(client.key, "POST", url, nonce=client.nonce)
    data = {"grant_type": DEVICE_CODE_GRANT_TYPE, "device_code": device_code}
    data["client_id"] = CLIENT_ID
    clock.advance(1)
    assert error_of(client.token_request(data, proof=proof)) == "authorization_pending"
    clock.advance(1)
    replay = client.token_request(data, proof=proof)
    assert error_of(replay) == "invalid_dpop_proof"
    assert "jti" in replay.json()["error_description"]


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"htu": "http://127.0.0.1:1/oauth/token"}, "htu"),
        ({"htu_query": True}, "htu"),
        ({"htm": "GET"}, "htm"),
        ({"iat": int(time.time()) - 3600}, "iat"),
        ({"header": {"typ": "JWT"}}, "typ"),
        ({"private_jwk": True}, "private"),
        ({"bad_signature": True}, "signature"),
    ],
)
def test_invalid_proofs_are_refused(
    server: SandboxServer, client: Client, overrides: dict[str, Any], reason: str
) -> None:
    device_code = client.device()["device_code"]
    client.poll(device_code)  # learn the nonce
    url = f"{server.url}/oauth/token"
    claims = {k: v for k, v in overrides.items() if k in ("htu", "htm", "iat")}
    if overrides.get("htu_query"):
        claims["htu"] = url + "?x=1"
    header = dict(overrides.get("header", {}))
    if overrides.get("private_jwk"):
        header["jwk"] = client.key.as_dict(private=True)
    proof = make_proof(client.key, "POST", url, nonce=client.nonce, header=header, **claims)
    if overrides.get("bad_signature"):
        head, body, signature = proof.split(".")
        flipped = "A" if signature[0] != "A" else "B"
        proof = f"{head}.{body}.{flipped}{signature[1:]}"
    data = {"grant_type": DEVICE_CODE_GRANT_TYPE, "device_code": device_code}
    data["client_id"] = CLIENT_ID
    response = client.token_request(data, proof=proof)
    assert response.status_code == 400
    assert error_of(response) == "invalid_dpop_proof"
    assert reason in response.json()["error_description"]


def test_missing_proof_is_refused_when_dpop_required(
    server: SandboxServer, client: Client, http: httpx.Client
) -> None:
    device_code = client.device()["device_code"]
    data = {"grant_type": DEVICE_CODE_GRANT_TYPE, "device_code": device_code}
    data["client_id"] = CLIENT_ID
    response = http.post(f"{server.url}/oauth/token", data=data)
    assert error_of(response) == "invalid_dpop_proof"


def test_without_dpop_a_bearer_token_is_issued_and_usable(
    http: httpx.Client, clock: FakeClock
) -> None:
    with SandboxServer(clock=clock, require_dpop=False, require_nonce=False) as server:
        device = http.post(f"{server.url}/oauth/device", data={"client_id": CLIENT_ID}).json()
        server.approve()
        data = {"grant_type": DEVICE_CODE_GRANT_TYPE, "device_code": device["device_code"]}
        data["client_id"] = CLIENT_ID
        response = http.post(f"{server.url}/oauth/token", data=data)
        assert "DPoP-Nonce" not in response.headers
        token = response.json()
        assert token["token_type"] == "Bearer"
        userinfo = http.get(
            f"{server.url}/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}
        )
        assert userinfo.status_code == 200
        assert userinfo.json() == {"sub": "octocat", "preferred_username": "octocat"}


# --------------------------------------------------------------------------- resource side


def test_userinfo_nonce_dance_and_ath(server: SandboxServer, client: Client) -> None:
    access_token = granted(client)["access_token"]
    server.rotate_nonce()  # the client's nonce is now stale
    challenge = client.userinfo(access_token)
    assert challenge.status_code == 401
    www_authenticate = challenge.headers["WWW-Authenticate"]
    assert www_authenticate.startswith('DPoP error="use_dpop_nonce", error_description="')
    assert challenge.headers["DPoP-Nonce"] == server.nonce
    response = client.userinfo(access_token)
    assert response.status_code == 200
    assert response.json() == {"sub": "octocat", "preferred_username": "octocat"}
    # A proof for another token (wrong ath) is refused.
    url = f"{server.url}/userinfo"
    proof = make_proof(client.key, "GET", url, nonce=client.nonce, access_token="other")
    headers = {"Authorization": f"DPoP {access_token}", "DPoP": proof}
    refused = client.http.get(url, headers=headers)
    assert refused.status_code == 401
    assert 'error="invalid_dpop_proof"' in refused.headers["WWW-Authenticate"]


def test_bound_token_is_refused_as_bearer_and_with_another_key(
    server: SandboxServer, client: Client, http: httpx.Client
) -> None:
    access_token = granted(client)["access_token"]
    as_bearer = http.get(
        f"{server.url}/userinfo", headers={"Authorization": f"Bearer {access_token}"}
    )
    assert as_bearer.status_code == 401
    assert 'error="invalid_token"' in as_bearer.headers["WWW-Authenticate"]
    thief = Client(server, http)
    thief.nonce = client.nonce
    stolen = thief.userinfo(access_token)
    assert stolen.status_code == 401
    assert 'error="invalid_dpop_proof"' in stolen.headers["WWW-Authenticate"]


def test_introspection_shows_the_key_binding(server: SandboxServer, client: Client) -> None:
    access_token = granted(client, scope="deploy")["access_token"]
    info = client.introspect(access_token)
    assert info["active"] is True
    assert info["sub"] == "octocat"
    assert info["scope"] == "deploy"
    assert info["client_id"] == CLIENT_ID
    assert info["exp"] > time.time()
    assert info["cnf"] == {"jkt": client.key.thumbprint()}
    assert server.grants[0].jkt == client.key.thumbprint()
    assert client.introspect("not-a-token") == {"active": False}


def test_revoked_token_stops_working(
    server: SandboxServer, client: Client, http: httpx.Client
) -> None:
    token = granted(client)
    response = http.post(
        f"{server.url}/oauth/revoke",
        data={"token": token["access_token"], "token_type_hint": "access_token"},
    )
    assert response.status_code == 200
    assert http.post(f"{server.url}/oauth/revoke", data={"token": "unknown"}).status_code == 200
    refused = client.userinfo(token["access_token"])
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["WWW-Authenticate"]
    assert client.introspect(token["access_token"]) == {"active": False}


# --------------------------------------------------------------------------- verification page


def test_opening_the_link_approves_and_the_page_escapes_request_data(
    http: httpx.Client, clock: FakeClock
) -> None:
    with SandboxServer(clock=clock) as server:
        client = Client(server, http)
        device = client.device(repository="<script>alert(1)</script>")
        page = http.get(device["verification_uri_complete"])
        assert page.status_code == 200
        assert page.headers["Content-Type"].startswith("text/html")
        assert "<script>" not in page.text
        assert "&lt;script&gt;" in page.text
        assert device["user_code"] in page.text
        assert server.grants[0].status == "approved"
        assert client.poll(device["device_code"]).status_code == 200


def test_open_with_deny_decision_denies(http: httpx.Client, clock: FakeClock) -> None:
    with SandboxServer(clock=clock, decision="deny") as server:
        client = Client(server, http)
        device = client.device()
        http.get(device["verification_uri_complete"])
        assert error_of(client.poll(device["device_code"])) == "access_denied"


def test_page_buttons_post_the_decision(
    server: SandboxServer, client: Client, http: httpx.Client
) -> None:
    device = client.device()
    page = http.get(device["verification_uri_complete"])
    assert 'value="approve"' in page.text  # approve_on_open=False: the page only asks
    assert server.grants[0].status == "pending"
    entry_form = http.get(f"{server.url}/device")
    assert 'name="user_code"' in entry_form.text
    decision = {"user_code": device["user_code"].lower(), "action": "deny"}
    forged = http.post(f"{server.url}/device", data=decision)  # no page token: not our page
    assert forged.status_code == 403
    assert server.grants[0].status == "pending"
    response = http.post(
        f"{server.url}/device", data={**decision, "page_token": page_token_of(page.text)}
    )
    assert response.status_code == 200
    assert server.grants[0].status == "denied"


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        ("500", 500, "application/json"),
        ("503", 503, "text/plain"),
        ("html", 502, "text/html"),
        ("429", 429, "text/plain"),
        ("oversized", 502, "application/json"),
    ],
)
def test_http_faults_are_seen_by_the_client(
    http: httpx.Client, clock: FakeClock, fault: str, status: int, content_type: str
) -> None:
    with SandboxServer(clock=clock, token_faults=[fault]) as server:
        client = Client(server, http)
        device_code = client.device()["device_code"]
        response = client.poll(device_code)
        assert response.status_code == status
        assert response.headers["Content-Type"].startswith(content_type)
        if fault == "429":
            assert response.headers["Retry-After"] == "1"
        if fault == "oversized":
            assert len(response.content) == 2 * 1024 * 1024
        if fault == "500":
            assert error_of(response) == "server_error"
        assert server.stats.outcomes("/oauth/token") == [f"fault:{fault}"]
        # The fault was consumed and did not count as a poll: an immediate poll is fine.
        assert error_of(client.poll(device_code)) == "authorization_pending"
        assert server.stats.polls == 1


def test_reset_fault_is_a_real_tcp_reset(clock: FakeClock) -> None:
    with SandboxServer(clock=clock, token_faults=["reset"]) as faulty:
        host, port = faulty.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=2) as raw:
            raw.sendall(
                b"POST /oauth/token HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\n\r\n"
            )
            with pytest.raises(ConnectionResetError):
                raw.recv(1024)  # a FIN would return b"" here; only an RST raises
        assert faulty.stats.outcomes() == ["fault:reset"]


def test_reset_fault_then_httpx_retry_succeeds(http: httpx.Client, clock: FakeClock) -> None:
    with SandboxServer(clock=clock, token_faults=["reset"]) as server:
        client = Client(server, http)
        device_code = client.device()["device_code"]
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            client.poll(device_code)
        assert error_of(client.poll(device_code)) == "authorization_pending"
        assert server.stats.polls == 1
        assert server.stats.connections == 2


def test_truncated_fault_breaks_the_body(http: httpx.Client, clock: FakeClock) -> None:
    with SandboxServer(clock=clock, token_faults=["truncated"]) as server:
        client = Client(server, http)
        device_code = client.device()["device_code"]
        with pytest.raises(httpx.RemoteProtocolError):
            client.poll(device_code)


def test_slow_fault_trips_a_read_timeout_and_is_not_a_poll(clock: FakeClock) -> None:
    with (
        SandboxServer(clock=clock, token_faults=["ok", "slow:0.6"]) as server,
        http_client(timeout=httpx.Timeout(5.0, read=0.2)) as http,
    ):
        client = Client(server, http)
        device_code = client.device()["device_code"]
        assert error_of(client.poll(device_code)) == "authorization_pending"  # "ok" fault
        with pytest.raises(httpx.ReadTimeout):
            client.poll(device_code)
        clock.advance(1)
        client.http = http_client(timeout=2.0)
        with client.http:
            # Retrying at once is not a slow_down: the slow request was not judged as a poll.
            assert error_of(client.poll(device_code)) == "authorization_pending"
        # The slow answer is recorded when it is written, 0.6 s after it came: the client
        # stopped waiting for it long before.
        until(
            lambda: "fault:slow:0.6" in server.stats.outcomes("/oauth/token"),
            "the slow answer recorded",
        )
        assert server.stats.slow_downs == 0


def test_device_faults_apply_to_the_device_endpoint(http: httpx.Client) -> None:
    with SandboxServer(device_faults=["503", "ok"]) as server:
        first = http.post(f"{server.url}/oauth/device", data={"client_id": CLIENT_ID})
        assert first.status_code == 503
        second = http.post(f"{server.url}/oauth/device", data={"client_id": CLIENT_ID})
        assert second.status_code == 200
        assert server.stats.outcomes() == ["fault:503", "issued"]


def test_unknown_fault_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        SandboxServer(token_faults=["boom"])


# --------------------------------------------------------------------------- transport


def test_keep_alive_reuses_one_connection(server: SandboxServer, client: Client) -> None:
    client.http.get(f"{server.url}/.well-known/openid-configuration")
    device_code = client.device()["device_code"]
    client.poll(device_code)
    stats = server.stats
    assert len(stats.requests) == 3
    assert stats.connections == 1


def test_oversized_request_body_is_refused(server: SandboxServer, http: httpx.Client) -> None:
    response = http.post(f"{server.url}/oauth/device", content=b"x" * (65 * 1024))
    assert response.status_code == 413


def test_non_loopback_host_is_refused() -> None:
    with pytest.raises(ValueError, match="loopback"):
        SandboxServer(host="0.0.0.0")


def test_stop_is_idempotent_and_closes_the_port() -> None:
    server = SandboxServer().start()
    url = server.url
    server.stop()
    server.stop()
    with http_client(timeout=1) as http, pytest.raises(httpx.ConnectError):
        http.get(url + "/.well-known/openid-configuration")


def test_standalone_prints_its_url_and_stops_on_sigterm() -> None:
    with standalone("--approve-after", "3") as url, http_client(timeout=2) as http:
        response = http.get(f"{url}/.well-known/oauth-authorization-server")
        assert response.json()["issuer"] == url
