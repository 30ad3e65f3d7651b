"""glewlwyd and the headless approver, proven by hand (no ci_shark code involved).

Each test drives Debian's glewlwyd with httpx and joserfc-built DPoP proofs, so that when
a chain test (test_glewlwyd_chain.py) fails we know whether the fault is ours or the
server's configuration's. The answers asserted here are the ones docs/compatibility.md
lists.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from glewlwyd_approver import approve
from glewlwyd_peer import CLIENT_ID, NONCE_USES, PASSWORDS, SCOPE, GlewlwydServer
from joserfc import jwt
from support.dpop_proofs import DpopKey

pytestmark = pytest.mark.interop

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
USER_CODE = re.compile(r"^[A-Z0-9]{4}-[A-Z0-9]{4}$")


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def device_authorization(
    http: httpx.Client, glewlwyd: GlewlwydServer, instance: str = "glwd"
) -> dict[str, Any]:
    response = http.post(
        f"{glewlwyd.advertised(instance)}/device_authorization",
        data={"client_id": CLIENT_ID, "scope": SCOPE},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def token_request(device_code: str) -> dict[str, str]:
    return {"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": CLIENT_ID}


def approve_as(
    glewlwyd: GlewlwydServer, start: dict[str, Any], account: str = "maintainer"
) -> None:
    approval = approve(
        start["verification_uri_complete"],
        start["user_code"],
        api_url=glewlwyd.api_url,
        account=account,
        password=PASSWORDS.get(account, f"{account}-password"),
    )
    assert approval.approved
    assert sorted(approval.granted) == ["ci", "openid"]


def redeem(
    http: httpx.Client, glewlwyd: GlewlwydServer, key: DpopKey, device_code: str
) -> httpx.Response:
    """One token request, retried once on use_dpop_nonce (RFC 9449 §8)."""
    response = key.post(http, glewlwyd.token_endpoint, token_request(device_code))
    if response.status_code == 400 and response.json().get("error") == "use_dpop_nonce":
        response = key.post(http, glewlwyd.token_endpoint, token_request(device_code))
    return response


def claims(glewlwyd: GlewlwydServer, token: str) -> dict[str, Any]:
    """A glewlwyd JWT's claims, once its signature checks out with the plugin's key."""
    return dict(jwt.decode(token, glewlwyd.signing_key).claims)


def test_metadata_advertises_every_endpoint_with_a_double_slash(
    http: httpx.Client, glewlwyd: GlewlwydServer
) -> None:
    meta = glewlwyd.metadata
    assert meta["issuer"] == glewlwyd.issuer()  # `iss` as configured, one slash
    advertised = glewlwyd.advertised()
    assert "//api/glwd" in advertised
    assert meta["device_authorization_endpoint"] == f"{advertised}/device_authorization"
    for endpoint in ("token", "userinfo", "revocation", "introspection"):
        assert meta[f"{endpoint}_endpoint"].startswith(f"{advertised}/"), endpoint
    assert DEVICE_GRANT in meta["grant_types_supported"]
    assert "ES256" in meta["dpop_signing_alg_values_supported"]
    # The router ignores the empty segment: the metadata answers at both spellings.
    again = http.get(f"{advertised}/.well-known/openid-configuration")
    assert again.status_code == 200
    assert again.json()["token_endpoint"] == meta["token_endpoint"]


def test_device_authorization_response(http: httpx.Client, glewlwyd: GlewlwydServer) -> None:
    start = device_authorization(http, glewlwyd)
    assert set(start) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert start["expires_in"] == 90
    assert start["interval"] == 1
    assert USER_CODE.match(start["user_code"]), start["user_code"]
    assert start["verification_uri"] == f"{glewlwyd.advertised()}/device"
    assert start["verification_uri_complete"] == (
        f"{glewlwyd.advertised()}/device?code={start['user_code']}"
    )


def test_dpop_device_flow_end_to_end(http: httpx.Client, glewlwyd: GlewlwydServer) -> None:
    key = DpopKey()
    start = device_authorization(http, glewlwyd)
    data = token_request(start["device_code"])
    token_endpoint = glewlwyd.token_endpoint

    # 1. While pending, the proof is not even read: no nonce challenge yet.
    pending = key.post(http, token_endpoint, data)
    assert pending.status_code == 400
    assert pending.json() == {"error": "authorization_pending"}
    assert "DPoP-Nonce" not in pending.headers
    # ... and polling faster than `interval` is answered at once.
    hurried = key.post(http, token_endpoint, data)
    assert hurried.status_code == 400
    assert hurried.json() == {"error": "slow_down"}

    # 2. The maintainer approves through glewlwyd's login API.
    approve_as(glewlwyd, start)

    # 3. Now the proof counts: without a nonce, 400 use_dpop_nonce + DPoP-Nonce.
    challenged = key.post(http, token_endpoint, data)
    assert challenged.status_code == 400
    assert challenged.json() == {
        "error": "use_dpop_nonce",
        "error_description": "Authorization server requires nonce in DPoP proof",
    }
    nonce = challenged.headers["DPoP-Nonce"]
    assert key.nonce == nonce
    # htu is compared with the advertised URL as a string: one slash less is refused.
    single_slash = token_endpoint.replace("//api/", "/api/")
    proof = key.proof("POST", single_slash, nonce=nonce)
    refused = http.post(token_endpoint, data=data, headers={"DPoP": proof})
    assert refused.status_code == 403
    assert refused.json() == {"error": "invalid_dpop_proof", "error_description": "Invalid DPoP"}
    # The client is DPoP-bound: no proof at all is refused the same way.
    bare = http.post(token_endpoint, data=data)
    assert bare.status_code == 403
    assert bare.json()["error"] == "invalid_dpop_proof"

    # 4. With the nonce: the tokens. The access token is a JWT bound to our key.
    granted = key.post(http, token_endpoint, data)
    assert granted.status_code == 200, granted.text
    tokens = granted.json()
    assert tokens["token_type"] == "DPoP"
    assert tokens["expires_in"] == 300
    assert set(tokens["scope"].split()) == {"openid", "ci"}
    assert tokens["refresh_token"]
    access = claims(glewlwyd, tokens["access_token"])
    assert access["cnf"] == {"jkt": key.jkt}
    assert access["client_id"] == CLIENT_ID
    assert access["iss"] == glewlwyd.issuer()
    identity = claims(glewlwyd, tokens["id_token"])
    assert identity["aud"] == CLIENT_ID
    assert identity["preferred_username"] == "maintainer"
    assert identity["sub"] == access["sub"] != "maintainer"  # a random per-user identifier

    # 5. userinfo: 401 with an empty body and the nonce challenge, then 200 with it.
    userinfo = glewlwyd.userinfo_endpoint
    access_token = tokens["access_token"]
    key.nonce = None
    first = key.get_resource(http, userinfo, access_token)
    assert first.status_code == 401
    assert first.content == b""
    assert first.headers["WWW-Authenticate"] == (
        'DPoP error="use_dpop_nonce", '
        'error_description="Resource server requires nonce in DPoP proof"'
    )
    assert first.headers["DPoP-Nonce"]
    second = key.get_resource(http, userinfo, access_token)
    assert second.status_code == 200, second.text
    assert second.json()["sub"] == access["sub"]
    # One nonce serves NONCE_USES good proofs; its successor comes on a 200's DPoP-Nonce.
    rotated = None
    for _ in range(NONCE_USES + 1):
        before = key.nonce
        again = key.get_resource(http, userinfo, access_token)
        assert again.status_code == 200, again.text
        if "DPoP-Nonce" in again.headers:
            rotated = again.headers["DPoP-Nonce"]
            break
    assert rotated is not None
    assert rotated != before

    # 6. As Bearer: 401, empty body. Without `ath`: 401 invalid_dpop_proof.
    as_bearer = http.get(userinfo, headers={"Authorization": f"Bearer {access_token}"})
    assert as_bearer.status_code == 401
    assert as_bearer.content == b""
    without_ath = key.proof("GET", userinfo, nonce=key.nonce)
    unbound = http.get(
        userinfo, headers={"Authorization": f"DPoP {access_token}", "DPoP": without_ath}
    )
    assert unbound.status_code == 401
    assert unbound.json()["error"] == "invalid_dpop_proof"
    # A glewlwyd 2.7.5 defect (docs/compatibility.md): userinfo accepts a valid proof from
    # ANY key; it never compares the proof's key with the token's cnf.jkt.
    thief = DpopKey()
    thief.nonce = key.nonce  # one nonce per client, not per key
    stolen = thief.get_resource(http, userinfo, access_token)
    assert stolen.status_code == 200, stolen.text

    # 7. A public client cannot revoke (RFC 7009 here needs client authentication).
    revoked = http.post(
        glewlwyd.metadata["revocation_endpoint"],
        data={"token": access_token, "client_id": CLIENT_ID},
    )
    assert revoked.status_code == 401


def test_second_redemption_is_access_denied(http: httpx.Client, glewlwyd: GlewlwydServer) -> None:
    """glewlwyd forgets a redeemed code (oidc-provider answers invalid_grant and revokes)."""
    key = DpopKey()
    start = device_authorization(http, glewlwyd)
    approve_as(glewlwyd, start)
    granted = redeem(http, glewlwyd, key, start["device_code"])
    assert granted.status_code == 200, granted.text
    again = redeem(http, glewlwyd, key, start["device_code"])
    assert again.status_code == 400
    assert again.json() == {"error": "access_denied"}
    # What was issued stays valid.
    userinfo = key.get_resource(http, glewlwyd.userinfo_endpoint, granted.json()["access_token"])
    if userinfo.status_code == 401:
        userinfo = key.get_resource(
            http, glewlwyd.userinfo_endpoint, granted.json()["access_token"]
        )
    assert userinfo.status_code == 200, userinfo.text


def test_approver_entering_the_code_by_hand(http: httpx.Client, glewlwyd: GlewlwydServer) -> None:
    start = device_authorization(http, glewlwyd)
    approval = approve(
        start["verification_uri"],
        start["user_code"].lower(),  # the app upper-cases what is typed
        api_url=glewlwyd.api_url,
        account="maintainer",
        password=PASSWORDS["maintainer"],
    )
    assert approval.approved
    assert redeem(http, glewlwyd, DpopKey(), start["device_code"]).status_code == 200


def test_deleting_the_approver_turns_the_code_into_access_denied(
    http: httpx.Client, glewlwyd: GlewlwydServer
) -> None:
    """No page refuses a code; an account removed after approving takes its codes along."""
    glewlwyd.add_user("approver-gone", "approver-gone-password")
    start = device_authorization(http, glewlwyd)
    approve_as(glewlwyd, start, "approver-gone")
    glewlwyd.delete_user("approver-gone")
    response = redeem(http, glewlwyd, DpopKey(), start["device_code"])
    assert response.status_code == 400
    assert response.json() == {"error": "access_denied"}


def test_expiry(http: httpx.Client, glewlwyd: GlewlwydServer) -> None:
    start = device_authorization(http, glewlwyd, "glwd-brief")
    assert start["expires_in"] == 3
    key = DpopKey()
    errors = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = key.post(http, glewlwyd.token_endpoint, token_request(start["device_code"]))
        assert response.status_code == 400
        errors.append(response.json()["error"])
        if errors[-1] == "expired_token":
            break
        time.sleep(start["interval"] + 0.1)
    assert errors[-1] == "expired_token", errors
    assert "authorization_pending" in errors


def test_token_endpoint_enforces_its_own_instance_interval(
    http: httpx.Client, glewlwyd: GlewlwydServer
) -> None:
    """A code from `glwd` (interval 1) polled at `glwd-strict` (interval 3) every second."""
    start = device_authorization(http, glewlwyd)
    assert start["interval"] == 1
    strict = f"{glewlwyd.advertised('glwd-strict')}/token"
    key = DpopKey()
    data = token_request(start["device_code"])
    answers = []
    for pause_s in (0, 1.1, 3.1):
        time.sleep(pause_s)
        answers.append(key.post(http, strict, data).json()["error"])
    assert answers == ["authorization_pending", "slow_down", "authorization_pending"]


def test_refresh_token_is_bound_to_the_key(http: httpx.Client, glewlwyd: GlewlwydServer) -> None:
    key = DpopKey()
    start = device_authorization(http, glewlwyd)
    approve_as(glewlwyd, start)
    granted = redeem(http, glewlwyd, key, start["device_code"])
    assert granted.status_code == 200, granted.text
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": granted.json()["refresh_token"],
        "client_id": CLIENT_ID,
    }
    thief = DpopKey()
    thief.nonce = key.nonce
    stolen = thief.post(http, glewlwyd.token_endpoint, refresh)
    assert stolen.status_code == 403
    assert stolen.json() == {"error": "invalid_dpop_proof", "error_description": "Invalid DPoP"}
    renewed = key.post(http, glewlwyd.token_endpoint, refresh)
    if renewed.status_code == 400 and renewed.json().get("error") == "use_dpop_nonce":
        renewed = key.post(http, glewlwyd.token_endpoint, refresh)
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["token_type"] == "DPoP"
    assert claims(glewlwyd, renewed.json()["access_token"])["cnf"] == {"jkt": key.jkt}
