"""The sandbox's protected-resource side and refresh grant, over real HTTP.

What `ci-shark request` / `ci-shark refresh` will be tested against: /api/echo, /api/redirect,
/api/bytes, nonce challenges in both styles, token expiry, DPoP-bound refresh. Proofs come
from the joserfc client of tests/support/sandbox_client.py, independent of ci_shark's own DPoP code.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey
from support.clock import FakeClock
from support.dpop_proofs import make_proof
from support.sandbox_client import CLIENT_ID, Client, error_of, granted, standalone

from ci_shark.sandbox import DEVICE_CODE_GRANT_TYPE, TOKEN_PATH, SandboxOptions, SandboxServer
from ci_shark.sandbox.options import keywords_from_argv


def call(
    client: Client,
    method: str,
    target: str,
    token: str,
    *,
    htu: str | None = None,
    nonce: str | None = None,
    key: ECKey | None = None,
    **request: Any,
) -> httpx.Response:
    """A DPoP request for ``target`` (path and query) on the client's server."""
    url = client.server.url + target
    proof = make_proof(
        key or client.key,
        method,
        htu or url.split("?")[0],
        nonce=nonce or client.nonce,
        access_token=token,
    )
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof, **request.pop("headers", {})}
    response = client.http.request(method, url, headers=headers, **request)
    client.nonce = response.headers.get("DPoP-Nonce", client.nonce)
    return response


def challenge_error(response: httpx.Response) -> str:
    match = re.search(r'error="([^"]+)"', response.headers.get("WWW-Authenticate", ""))
    assert match, response.headers
    return match[1]


def refresh(client: Client, refresh_token: str, **data: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": CLIENT_ID}
    return client.token_request({**form, **data})


def pattern(n: int) -> bytes:
    return (bytes(range(256)) * (n // 256 + 1))[:n]


# --------------------------------------------------------------------------- /api/echo


def test_echo_returns_the_request_and_who_the_token_is(
    server: SandboxServer, client: Client
) -> None:
    access_token = granted(client, scope="deploy")["access_token"]
    response = call(
        client,
        "POST",
        "/api/echo?env=prod&dry_run=1",
        access_token,
        content=b'{"ref": "v1.2.3", "note": "caf\xc3\xa9"}',
        headers={"Content-Type": "application/json", "X-Trace": "abc"},
    )
    assert response.status_code == 200, response.text
    echo = response.json()
    assert echo["method"] == "POST"
    assert echo["path"] == "/api/echo?env=prod&dry_run=1"
    assert echo["body"] == '{"ref": "v1.2.3", "note": "café"}'
    assert echo["content_type"] == "application/json"
    assert echo["headers"]["x-trace"] == "abc"
    assert echo["scheme"] == "DPoP"
    assert echo["sub"] == "octocat"
    assert echo["scope"] == "deploy"
    assert echo["client_id"] == CLIENT_ID
    assert echo["jkt"] == client.key.thumbprint()
    # The credentials themselves are never echoed.
    assert {"authorization", "dpop"}.isdisjoint(echo["headers"])
    assert access_token not in response.text
    assert server.stats.outcomes("/api/echo") == ["echo"]


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_echo_takes_any_method(client: Client, method: str) -> None:
    access_token = granted(client)["access_token"]
    response = call(client, method, "/api/echo", access_token)
    assert response.status_code == 200, response.text
    assert response.json()["method"] == method
    assert response.json()["body"] == ""
    assert response.json()["content_type"] is None


def test_echo_head_has_headers_and_no_body(client: Client) -> None:
    access_token = granted(client)["access_token"]
    response = call(client, "HEAD", "/api/echo", access_token)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) > 0
    assert response.content == b""


def test_echo_without_credentials_is_a_401_naming_both_schemes(
    server: SandboxServer, http: httpx.Client
) -> None:
    response = http.get(f"{server.url}/api/echo")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'DPoP algs="ES256", Bearer'
    assert server.stats.outcomes("/api/echo") == ["invalid_request"]


# --------------------------------------------------------------------------- nonce challenges


def test_stale_nonce_is_a_401_use_dpop_nonce_then_the_retry_passes(
    server: SandboxServer, client: Client
) -> None:
    access_token = granted(client)["access_token"]
    server.rotate_nonce()
    challenge = call(client, "GET", "/api/echo", access_token)
    assert challenge.status_code == 401
    assert challenge_error(challenge) == "use_dpop_nonce"
    assert challenge.headers["WWW-Authenticate"].startswith("DPoP ")
    assert challenge.headers["DPoP-Nonce"] == server.nonce
    assert call(client, "GET", "/api/echo", access_token).status_code == 200
    assert server.stats.outcomes("/api/echo") == ["use_dpop_nonce", "echo"]
    assert server.stats.nonce_challenges == 1


def test_missing_nonce_is_challenged_too(
    server: SandboxServer, client: Client, http: httpx.Client
) -> None:
    access_token = granted(client)["access_token"]
    url = f"{server.url}/api/echo"
    proof = make_proof(client.key, "GET", url, access_token=access_token)  # no nonce claim
    response = http.get(url, headers={"Authorization": f"DPoP {access_token}", "DPoP": proof})
    assert response.status_code == 401
    assert challenge_error(response) == "use_dpop_nonce"
    assert response.headers["DPoP-Nonce"] == server.nonce


def test_bare_nonce_challenge_is_a_401_with_only_a_dpop_nonce(
    http: httpx.Client, clock: FakeClock
) -> None:
    with SandboxServer(clock=clock, bare_nonce_challenge=True) as server:
        client = Client(server, http)
        access_token = granted(client)["access_token"]
        server.rotate_nonce()
        challenge = call(client, "POST", "/api/echo", access_token, content=b"x")
        assert challenge.status_code == 401
        assert "WWW-Authenticate" not in challenge.headers
        assert challenge.content == b""
        assert challenge.headers["DPoP-Nonce"] == server.nonce
        assert call(client, "POST", "/api/echo", access_token, content=b"x").status_code == 200
        assert server.stats.nonce_challenges == 1
        # Only the nonce challenge is bare: other refusals still say what is wrong.
        refused = call(client, "GET", "/api/echo", "not-a-token")
        assert challenge_error(refused) == "invalid_token"


def test_token_endpoint_nonce_challenge_stays_a_400_in_the_bare_style(
    http: httpx.Client, clock: FakeClock
) -> None:
    with SandboxServer(clock=clock, bare_nonce_challenge=True) as server:
        client = Client(server, http)
        device_code = client.device()["device_code"]
        server.rotate_nonce()
        data = {"grant_type": DEVICE_CODE_GRANT_TYPE, "device_code": device_code}
        response = client.token_request({**data, "client_id": CLIENT_ID})
        assert response.status_code == 400
        assert error_of(response) == "use_dpop_nonce"


# --------------------------------------------------------------------------- bad proofs, bad tokens


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("htu_with_query", "htu"),
        ("htu_other_path", "htu"),
        ("htm", "htm"),
        ("ath", "ath"),
        ("other_key", "bound"),
        ("replay", "jti"),
    ],
)
def test_bad_proofs_are_refused_with_invalid_dpop_proof(
    server: SandboxServer,
    client: Client,
    http: httpx.Client,
    change: str,
    reason: str,
) -> None:
    access_token = granted(client)["access_token"]
    url = f"{server.url}/api/echo"
    htu = {"htu_with_query": url + "?a=1", "htu_other_path": f"{server.url}/api/bytes"}
    key = ECKey.generate_key("P-256") if change == "other_key" else client.key
    proof = make_proof(
        key,
        "POST" if change == "htm" else "GET",
        htu.get(change, url),
        nonce=client.nonce,
        access_token="another token" if change == "ath" else access_token,
    )
    headers = {"Authorization": f"DPoP {access_token}", "DPoP": proof}
    if change == "replay":
        assert http.get(url + "?a=1", headers=headers).status_code == 200
    response = http.get(url + "?a=1", headers=headers)
    assert response.status_code == 401
    assert challenge_error(response) == "invalid_dpop_proof"
    assert reason in response.json()["error_description"]


def test_expired_token_is_invalid_token(http: httpx.Client, clock: FakeClock) -> None:
    with SandboxServer(clock=clock, access_token_ttl_s=1) as server:
        client = Client(server, http)
        token = granted(client)
        assert token["expires_in"] == 1
        assert call(client, "GET", "/api/echo", token["access_token"]).status_code == 200
        clock.advance(1)
        expired = call(client, "GET", "/api/echo", token["access_token"])
        assert expired.status_code == 401
        assert challenge_error(expired) == "invalid_token"
        assert client.introspect(token["access_token"]) == {"active": False}


@pytest.mark.parametrize("how", ["revoked", "unknown"])
def test_revoked_or_unknown_token_is_invalid_token(
    server: SandboxServer, client: Client, http: httpx.Client, how: str
) -> None:
    access_token = granted(client)["access_token"]
    if how == "revoked":
        http.post(f"{server.url}/oauth/revoke", data={"token": access_token})
    else:
        access_token = "x" * 43
    response = call(client, "GET", "/api/echo", access_token)
    assert response.status_code == 401
    assert challenge_error(response) == "invalid_token"


def test_bearer_token_is_echoed_and_a_bad_one_gets_a_bearer_challenge(
    http: httpx.Client, clock: FakeClock
) -> None:
    with SandboxServer(clock=clock, require_dpop=False, require_nonce=False) as server:
        # A poll without a DPoP proof: the token is unbound, of type Bearer.
        device_code = Client(server, http).device()["device_code"]
        server.approve()
        form = {"grant_type": DEVICE_CODE_GRANT_TYPE, "device_code": device_code}
        token = http.post(server.url + TOKEN_PATH, data={**form, "client_id": CLIENT_ID}).json()
        assert token["token_type"] == "Bearer"
        bearer = {"Authorization": f"Bearer {token['access_token']}"}
        echo = http.put(f"{server.url}/api/echo", headers=bearer, content="hello")
        assert echo.status_code == 200
        assert echo.json()["scheme"] == "Bearer"
        assert echo.json()["jkt"] is None
        assert echo.json()["body"] == "hello"
        refused = http.get(f"{server.url}/api/echo", headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


# --------------------------------------------------------------------------- /api/redirect


def test_same_origin_redirect(server: SandboxServer, client: Client) -> None:
    access_token = granted(client)["access_token"]
    target = urllib.parse.quote("/api/echo?a=1", safe="")
    response = call(client, "POST", f"/api/redirect?to={target}&status=307", access_token)
    assert response.status_code == 307
    assert response.headers["Location"] == "/api/echo?a=1"
    followed = call(client, "POST", response.headers["Location"], access_token)
    assert followed.json()["path"] == "/api/echo?a=1"
    records = [r for r in server.stats.requests if r.path == "/api/redirect"]
    assert [(r.outcome, r.detail) for r in records] == [("redirect", "DPoP")]


def test_cross_origin_redirect_to_localhost(server: SandboxServer, http: httpx.Client) -> None:
    port = urllib.parse.urlsplit(server.url).port
    target = f"http://localhost:{port}/api/echo"
    response = http.get(f"{server.url}/api/redirect", params={"to": target})
    assert response.status_code == 302
    assert response.headers["Location"] == target
    # Followed without credentials (as a careful client does), the other origin says 401.
    assert http.get(target).status_code == 401
    outcomes = [(r.path, r.outcome, r.detail) for r in server.stats.requests]
    assert outcomes[0] == ("/api/redirect", "redirect", "anonymous")
    assert outcomes[1][:2] == ("/api/echo", "invalid_request")


@pytest.mark.parametrize(
    "query",
    [
        {"to": "https://example.com/"},  # not loopback: no open redirector
        {"to": "//example.com/x"},
        {"to": "/api/echo\r\nSet-Cookie: a=b"},
        {"to": "/api/echo", "status": "200"},
        {},
    ],
)
def test_redirect_refuses_bad_parameters(
    server: SandboxServer, http: httpx.Client, query: dict[str, str]
) -> None:
    response = http.get(f"{server.url}/api/redirect", params=query)
    assert response.status_code == 400
    assert error_of(response) == "invalid_request"
    assert "Location" not in response.headers


# --------------------------------------------------------------------------- /api/bytes


def test_bytes_streams_n_bytes_of_a_known_pattern(
    server: SandboxServer, http: httpx.Client
) -> None:
    n = 3 * 64 * 1024 + 123
    with http.stream("GET", f"{server.url}/api/bytes?n={n}") as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["Content-Length"] == str(n)
        body = b"".join(response.iter_bytes())
    assert hashlib.sha256(body).digest() == hashlib.sha256(pattern(n)).digest()
    assert http.get(f"{server.url}/api/bytes?n=0").content == b""
    head = http.head(f"{server.url}/api/bytes?n=10")
    assert head.headers["Content-Length"] == "10"
    assert head.content == b""
    assert [r.detail for r in server.stats.requests] == ["anonymous"] * 3


def test_bytes_checks_credentials_when_present(server: SandboxServer, client: Client) -> None:
    access_token = granted(client)["access_token"]
    assert call(client, "GET", "/api/bytes?n=5", access_token).content == pattern(5)
    refused = call(client, "GET", "/api/bytes?n=5", access_token, htu=f"{server.url}/api/echo")
    assert refused.status_code == 401
    assert challenge_error(refused) == "invalid_dpop_proof"


@pytest.mark.parametrize("n", ["", "-1", "abc", str(256 * 1024 * 1024 + 1)])
def test_bytes_refuses_a_bad_n(server: SandboxServer, http: httpx.Client, n: str) -> None:
    response = http.get(f"{server.url}/api/bytes", params={"n": n})
    assert response.status_code == 400
    assert error_of(response) == "invalid_request"


def test_bytes_takes_no_post(server: SandboxServer, http: httpx.Client) -> None:
    response = http.post(f"{server.url}/api/bytes?n=1")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, HEAD"


# --------------------------------------------------------------------------- refresh


def test_dpop_bound_refresh_keeps_the_key_and_rotates_the_refresh_token(
    server: SandboxServer, client: Client
) -> None:
    first = granted(client, scope="openid deploy")
    response = refresh(client, first["refresh_token"])
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["token_type"] == "DPoP"
    assert second["scope"] == "openid deploy"
    assert second["refresh_token"] != first["refresh_token"]
    assert client.introspect(second["access_token"])["cnf"] == {"jkt": client.key.thumbprint()}
    assert client.introspect(second["refresh_token"])["cnf"] == {"jkt": client.key.thumbprint()}
    assert client.introspect(first["refresh_token"]) == {"active": False}
    assert call(client, "GET", "/api/echo", second["access_token"]).status_code == 200
    assert server.stats.outcomes("/oauth/token")[-1] == "refreshed"


def test_a_spent_refresh_token_sent_again_revokes_the_whole_grant(
    server: SandboxServer, client: Client
) -> None:
    # RFC 9700 §4.14.2: two holders of one rotating refresh token, or a thief.
    first = granted(client)
    second = refresh(client, first["refresh_token"]).json()
    assert error_of(refresh(client, first["refresh_token"])) == "invalid_grant"
    assert client.introspect(second["refresh_token"]) == {"active": False}
    assert call(client, "GET", "/api/echo", second["access_token"]).status_code == 401


def test_without_reuse_detection_a_spent_refresh_token_is_only_refused(
    http: httpx.Client, clock: FakeClock
) -> None:
    with SandboxServer(clock=clock, refresh_reuse_revokes=False) as server:
        client = Client(server, http)
        first = granted(client)
        second = refresh(client, first["refresh_token"]).json()
        assert error_of(refresh(client, first["refresh_token"])) == "invalid_grant"
        assert client.introspect(second["refresh_token"])["active"] is True
    assert keywords_from_argv(["--no-refresh-reuse-detection"]) == {"refresh_reuse_revokes": False}


def test_refresh_demands_the_nonce_like_the_token_endpoint(
    server: SandboxServer, client: Client
) -> None:
    token = granted(client)
    server.rotate_nonce()
    challenge = refresh(client, token["refresh_token"])
    assert challenge.status_code == 400
    assert error_of(challenge) == "use_dpop_nonce"
    assert challenge.headers["DPoP-Nonce"] == server.nonce
    # The challenge did not use up the refresh token.
    assert refresh(client, token["refresh_token"]).status_code == 200
    assert server.stats.outcomes("/oauth/token")[-2:] == ["use_dpop_nonce", "refreshed"]


def test_refresh_with_another_key_is_refused(
    server: SandboxServer, client: Client, http: httpx.Client
) -> None:
    token = granted(client)
    thief = Client(server, http)
    thief.nonce = client.nonce
    response = refresh(thief, token["refresh_token"])
    assert error_of(response) == "invalid_dpop_proof"
    assert "another key signed" in response.json()["error_description"]


def test_bound_refresh_token_needs_a_proof_even_where_dpop_is_optional(
    http: httpx.Client, clock: FakeClock
) -> None:
    with SandboxServer(clock=clock, require_dpop=False) as server:
        client = Client(server, http)
        token = granted(client)
        assert token["token_type"] == "DPoP"
        data = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"]}
        response = http.post(f"{server.url}/oauth/token", data={**data, "client_id": CLIENT_ID})
        assert error_of(response) == "invalid_dpop_proof"
        assert "proof is required" in response.json()["error_description"]


def test_an_expired_token_is_replaced_by_refresh(http: httpx.Client, clock: FakeClock) -> None:
    with SandboxServer(clock=clock, access_token_ttl_s=1) as server:
        client = Client(server, http)
        token = granted(client)
        clock.advance(2)
        assert challenge_error(call(client, "GET", "/api/echo", token["access_token"])) == (
            "invalid_token"
        )
        fresh = refresh(client, token["refresh_token"]).json()
        assert fresh["expires_in"] == 1
        assert call(client, "GET", "/api/echo", fresh["access_token"]).status_code == 200


# --------------------------------------------------------------------------- confidential clients


@pytest.fixture
def confidential(clock: FakeClock) -> Iterator[SandboxServer]:
    with SandboxServer(clock=clock, client_secrets={"my-agent": "s3cr3t"}) as sandbox:
        yield sandbox


def test_client_credentials_gives_a_bound_token_without_refresh(
    confidential: SandboxServer, http: httpx.Client
) -> None:
    client = Client(confidential, http)
    client.nonce = confidential.nonce
    form = {"grant_type": "client_credentials", "client_id": "my-agent", "scope": "read write"}
    response = client.token_request({**form, "client_secret": "s3cr3t"})
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["token_type"] == "DPoP"
    assert token["scope"] == "read write"
    # SharkAuth's shape: the binding is named in the token response (its SDK reads cnf_jkt).
    assert token["cnf"] == {"jkt": client.key.thumbprint()}
    assert "refresh_token" not in token  # RFC 6749 §4.4.3
    echo = call(client, "GET", "/api/echo", token["access_token"]).json()
    assert (echo["client_id"], echo["scope"]) == ("my-agent", "read write")
    document = http.get(f"{confidential.url}/.well-known/openid-configuration").json()
    assert "client_credentials" in document["grant_types_supported"]


@pytest.mark.parametrize(
    ("secret", "basic"),
    [("wrong", False), (None, False), ("wrong", True)],
)
def test_a_confidential_client_with_a_wrong_or_no_secret_is_invalid_client(
    confidential: SandboxServer, http: httpx.Client, secret: str | None, basic: bool
) -> None:
    client = Client(confidential, http)
    client.nonce = confidential.nonce
    url = f"{confidential.url}/oauth/token"
    form = {"grant_type": "client_credentials", "client_id": "my-agent"}
    if basic:
        auth = httpx.BasicAuth("my-agent", secret or "")
        response = http.post(url, data=form, auth=auth)
    else:
        response = client.token_request(
            form if secret is None else {**form, "client_secret": secret}
        )
    assert response.status_code == 401
    assert error_of(response) == "invalid_client"
    # The device endpoint authenticates the same client the same way.
    device = http.post(f"{confidential.url}/oauth/device", data={"client_id": "my-agent"})
    assert device.status_code == 401


def test_basic_auth_with_the_right_secret_passes(
    confidential: SandboxServer, http: httpx.Client
) -> None:
    response = http.post(
        f"{confidential.url}/oauth/device",
        data={"scope": "deploy"},
        auth=httpx.BasicAuth("my-agent", "s3cr3t"),
    )
    assert response.status_code == 200
    assert confidential.grants[0].client_id == "my-agent"


def test_client_credentials_is_refused_to_a_public_client(
    server: SandboxServer, client: Client
) -> None:
    client.nonce = server.nonce
    response = client.token_request({"grant_type": "client_credentials", "client_id": CLIENT_ID})
    assert response.status_code == 400
    assert error_of(response) == "unauthorized_client"
    document = client.http.get(f"{server.url}/.well-known/openid-configuration").json()
    assert "client_credentials" not in document["grant_types_supported"]


def test_device_flow_token_response_names_its_binding(client: Client) -> None:
    assert granted(client)["cnf"] == {"jkt": client.key.thumbprint()}


# --------------------------------------------------------------------------- options, standalone


def test_flags_map_onto_the_options() -> None:
    argv = ["--no-dpop", "--deny", "--token-fault", "500, slow:1", "--token-fault", "ok"]
    argv += ["--access-token-ttl", "5", "--bare-nonce-challenge", "--approve-after", "0.5"]
    keywords = keywords_from_argv(argv)
    assert keywords == {
        "require_dpop": False,
        "decision": "deny",
        "token_faults": ["500", "slow:1", "ok"],
        "access_token_ttl_s": 5,
        "bare_nonce_challenge": True,
        "approve_after_s": 0.5,
    }
    options = SandboxOptions(**keywords)
    assert options.require_nonce is True  # not given: the dataclass default
    assert keywords_from_argv([]) == {}


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="access_token_ttl_s"):
        SandboxServer(access_token_ttl_s=0)
    with pytest.raises(ValueError, match="unknown fault"):
        SandboxOptions(device_faults=["nope"])


def test_standalone_serves_the_resource_side_with_its_flags(http: httpx.Client) -> None:
    flags = ("--approve-after", "0", "--access-token-ttl", "7", "--bare-nonce-challenge")
    with standalone(*flags) as url:
        client = Client(SimpleNamespace(url=url), http)  # type: ignore[arg-type]
        device = client.device()
        token = client.poll(device["device_code"]).json()
        assert token["expires_in"] == 7
        client.nonce = "stale"
        challenge = call(client, "GET", "/api/echo", token["access_token"])
        assert (challenge.status_code, challenge.content) == (401, b"")
        assert call(client, "GET", "/api/echo", token["access_token"]).status_code == 200
