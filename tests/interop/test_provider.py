"""The peer and the headless approver, proven by hand (no ci_shark code involved).

Each test drives node oidc-provider with httpx and joserfc-built DPoP proofs, so
that when a chain test fails we know the fault is in our client, not in the
server's configuration or the approver.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from approver import Approver, approve, deny
from oidc_peer import (
    CLIENT_ID,
    EXPIRING_CLIENT_ID,
    RS_CLIENT_ID,
    RS_CLIENT_SECRET,
    SCOPE,
    ProviderServer,
)
from support.dpop_proofs import DpopKey

pytestmark = pytest.mark.interop

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def device_authorization(
    http: httpx.Client, provider: ProviderServer, client_id: str = CLIENT_ID
) -> dict[str, Any]:
    response = http.post(
        provider.device_authorization_endpoint,
        data={"client_id": client_id, "scope": SCOPE},
        headers={"Accept": "application/json"},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def poll(
    http: httpx.Client, provider: ProviderServer, key: DpopKey, device_code: str
) -> httpx.Response:
    """One token request, retried once on use_dpop_nonce (RFC 9449 §8)."""
    data = {"grant_type": DEVICE_GRANT, "device_code": device_code, "client_id": CLIENT_ID}
    response = key.post(http, provider.token_endpoint, data)
    if response.status_code == 400 and response.json().get("error") == "use_dpop_nonce":
        response = key.post(http, provider.token_endpoint, data)
    return response


def introspect(http: httpx.Client, provider: ProviderServer, token: str) -> dict[str, Any]:
    response = http.post(
        provider.introspection_endpoint,
        data={"token": token},
        auth=(RS_CLIENT_ID, RS_CLIENT_SECRET),
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def approved_tokens(
    http: httpx.Client, provider: ProviderServer, key: DpopKey, account: str = "maintainer"
) -> dict[str, Any]:
    start = device_authorization(http, provider)
    approve(start["verification_uri_complete"], start["user_code"], account)
    response = poll(http, provider, key, start["device_code"])
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_metadata_offers_device_flow_and_dpop(provider: ProviderServer) -> None:
    meta = provider.metadata
    assert meta["issuer"] == provider.issuer
    assert meta["device_authorization_endpoint"] == f"{provider.issuer}/device/auth"
    assert DEVICE_GRANT in meta["grant_types_supported"]
    assert "ES256" in meta["dpop_signing_alg_values_supported"]
    for endpoint in ("token", "userinfo", "introspection", "revocation"):
        assert meta[f"{endpoint}_endpoint"].startswith(provider.issuer)


def test_device_authorization_response(http: httpx.Client, provider: ProviderServer) -> None:
    start = device_authorization(http, provider)
    assert set(start) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",  # added by provider.mjs's wrapper; oidc-provider itself sends none
    }
    assert start["interval"] == 1
    assert start["expires_in"] == 90
    assert start["verification_uri"] == f"{provider.issuer}/device"
    assert start["verification_uri_complete"].endswith(f"?user_code={start['user_code']}")


def test_dpop_device_flow_end_to_end(http: httpx.Client, provider: ProviderServer) -> None:
    key = DpopKey()
    start = device_authorization(http, provider)
    token_request = {
        "grant_type": DEVICE_GRANT,
        "device_code": start["device_code"],
        "client_id": CLIENT_ID,
    }

    # 1. The first proof carries no nonce: 400 use_dpop_nonce + DPoP-Nonce.
    first = key.post(http, provider.token_endpoint, token_request)
    assert first.status_code == 400
    assert first.json()["error"] == "use_dpop_nonce"
    assert first.headers["DPoP-Nonce"]
    assert key.nonce == first.headers["DPoP-Nonce"]

    # 2. With the nonce: authorization_pending (400).
    pending = key.post(http, provider.token_endpoint, token_request)
    assert pending.status_code == 400
    assert pending.json()["error"] == "authorization_pending"

    # 3. The maintainer approves on the provider's pages.
    page = approve(start["verification_uri_complete"], start["user_code"], "maintainer")
    assert page.succeeded

    # 4. The token: DPoP-bound, with a refresh token (offline_access).
    granted = key.post(http, provider.token_endpoint, token_request)
    assert granted.status_code == 200, granted.text
    tokens = granted.json()
    assert tokens["token_type"] == "DPoP"
    assert tokens["access_token"]
    assert tokens["refresh_token"]
    assert tokens["id_token"]
    assert set(tokens["scope"].split()) == {"openid", "offline_access"}
    access_token = tokens["access_token"]

    # 5. userinfo: a proof with no nonce -> 401 + WWW-Authenticate use_dpop_nonce.
    refused = key.get_resource(http, provider.userinfo_endpoint, access_token, use_nonce=False)
    assert refused.status_code == 401
    challenge = refused.headers["WWW-Authenticate"]
    assert challenge.startswith("DPoP ")
    assert 'error="use_dpop_nonce"' in challenge
    assert refused.headers["DPoP-Nonce"]
    userinfo = key.get_resource(http, provider.userinfo_endpoint, access_token)
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["sub"] == "maintainer"

    # 6. The token is sender-constrained: Bearer use, and another key, are refused.
    as_bearer = http.get(
        provider.userinfo_endpoint, headers={"Authorization": f"Bearer {access_token}"}
    )
    assert as_bearer.status_code in (400, 401)
    thief = DpopKey()
    thief.nonce = key.nonce
    stolen = thief.get_resource(http, provider.userinfo_endpoint, access_token)
    assert stolen.status_code == 401
    assert 'error="invalid_token"' in stolen.headers["WWW-Authenticate"]

    # 7. Introspection (by the resource server's client) shows the binding.
    info = introspect(http, provider, access_token)
    assert info["active"] is True
    assert info["cnf"] == {"jkt": key.jkt}
    assert info["token_type"] == "DPoP"
    assert info["sub"] == "maintainer"
    assert info["client_id"] == CLIENT_ID

    # 8. Revocation (RFC 7009) by the public client itself.
    revoked = http.post(
        provider.revocation_endpoint,
        data={
            "token": access_token,
            "token_type_hint": "access_token",
            "client_id": CLIENT_ID,
        },
    )
    assert revoked.status_code == 200, revoked.text
    after = key.get_resource(http, provider.userinfo_endpoint, access_token)
    assert after.status_code == 401
    assert 'error="invalid_token"' in after.headers["WWW-Authenticate"]
    assert introspect(http, provider, access_token) == {"active": False}
    # Revoking the access token destroys that token only; the refresh token lives
    # on until it is revoked itself, which revokes the whole grant.
    assert introspect(http, provider, tokens["refresh_token"])["active"] is True
    revoked = http.post(
        provider.revocation_endpoint,
        data={"token": tokens["refresh_token"], "client_id": CLIENT_ID},
    )
    assert revoked.status_code == 200, revoked.text
    assert introspect(http, provider, tokens["refresh_token"]) == {"active": False}


def test_second_redemption_revokes_the_grant(http: httpx.Client, provider: ProviderServer) -> None:
    """Why a client must stop polling after the 200 (RFC 8628 §3.5 says nothing)."""
    key = DpopKey()
    start = device_authorization(http, provider)
    approve(start["verification_uri_complete"], start["user_code"])
    granted = poll(http, provider, key, start["device_code"])
    assert granted.status_code == 200, granted.text
    tokens = granted.json()
    assert introspect(http, provider, tokens["access_token"])["active"] is True

    again = poll(http, provider, key, start["device_code"])
    assert again.status_code == 400
    assert again.json() == {
        "error": "invalid_grant",
        "error_description": "grant request is invalid",
    }
    # oidc-provider treats the reuse as a stolen code and revokes what it issued.
    assert introspect(http, provider, tokens["access_token"]) == {"active": False}
    assert introspect(http, provider, tokens["refresh_token"]) == {"active": False}


def test_token_request_without_proof_is_refused(
    http: httpx.Client, provider: ProviderServer
) -> None:
    start = device_authorization(http, provider)
    approve(start["verification_uri_complete"], start["user_code"])
    response = http.post(
        provider.token_endpoint,
        data={
            "grant_type": DEVICE_GRANT,
            "device_code": start["device_code"],
            "client_id": CLIENT_ID,
        },
    )
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "grant request is invalid",
    }
    # The refusal does not consume the code: the proper request still succeeds.
    assert poll(http, provider, DpopKey(), start["device_code"]).status_code == 200


def test_refresh_token_is_bound_to_the_key(http: httpx.Client, provider: ProviderServer) -> None:
    key = DpopKey()
    tokens = approved_tokens(http, provider, key)
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "client_id": CLIENT_ID,
    }
    other = DpopKey()
    other.nonce = key.nonce
    stolen = other.post(http, provider.token_endpoint, refresh)
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"

    renewed = key.post(http, provider.token_endpoint, refresh)
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["token_type"] == "DPoP"
    assert introspect(http, provider, renewed.json()["access_token"])["cnf"] == {"jkt": key.jkt}


def test_approver_entering_the_code_by_hand(http: httpx.Client, provider: ProviderServer) -> None:
    start = device_authorization(http, provider)
    with Approver() as session:
        page = approve(start["verification_uri"], start["user_code"], approver=session)
        titles = [seen.title for seen in session.pages]
    assert page.succeeded
    assert titles[0] == "Sign-in"  # the code input page, not the auto-submitting form
    assert poll(http, provider, DpopKey(), start["device_code"]).status_code == 200


def test_other_account_is_reported(http: httpx.Client, provider: ProviderServer) -> None:
    key = DpopKey()
    tokens = approved_tokens(http, provider, key, account="mallory")
    assert introspect(http, provider, tokens["access_token"])["sub"] == "mallory"


def test_unknown_account_ends_the_flow_with_server_error(
    http: httpx.Client, provider: ProviderServer
) -> None:
    """A quirk: devInteractions accept any login, findAccount then finds nobody.

    oidc-provider 8.8.1 crashes in its consent check (TypeError, page 500) and
    stores server_error on the device code, which the token endpoint relays as
    400 {"error": "server_error"}: a terminal error a client must not poll past.
    """
    start = device_authorization(http, provider)
    with pytest.raises(AssertionError, match="There was an error processing your request"):
        approve(start["verification_uri_complete"], start["user_code"], "nobody")
    response = poll(http, provider, DpopKey(), start["device_code"])
    assert response.status_code == 400
    assert response.json() == {
        "error": "server_error",
        "error_description": "oops! something went wrong",
    }


@pytest.mark.parametrize("step", ["confirm", "login", "consent"])
def test_deny(http: httpx.Client, provider: ProviderServer, step: str) -> None:
    start = device_authorization(http, provider)
    page = deny(start["verification_uri_complete"], start["user_code"], at=step)  # type: ignore[arg-type]
    assert page.interrupted
    response = poll(http, provider, DpopKey(), start["device_code"])
    assert response.status_code == 400
    assert response.json() == {
        "error": "access_denied",
        "error_description": "End-User aborted interaction",
    }


def test_expiry(http: httpx.Client, provider: ProviderServer) -> None:
    start = device_authorization(http, provider, EXPIRING_CLIENT_ID)
    assert start["expires_in"] == 3
    key = DpopKey()
    data = {
        "grant_type": DEVICE_GRANT,
        "device_code": start["device_code"],
        "client_id": EXPIRING_CLIENT_ID,
    }
    deadline = time.monotonic() + 10
    errors = []
    while time.monotonic() < deadline:
        response = key.post(http, provider.token_endpoint, data)
        assert response.status_code == 400
        errors.append(response.json()["error"])
        if errors[-1] == "expired_token":
            break
        time.sleep(start["interval"])
    assert errors[-1] == "expired_token", errors
    assert "authorization_pending" in errors
    # The approver is told too.
    with pytest.raises(AssertionError):
        approve(start["verification_uri_complete"], start["user_code"])
