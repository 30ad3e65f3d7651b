"""RFC 8693 token exchange in the sandbox, over real HTTP with an independent client
(joserfc proofs): a narrower token, bound to the same key, for the same client only."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey
from support.sandbox_client import CLIENT_ID, Client, error_of, granted

from ci_shark.sandbox import SandboxServer

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"


def exchange(client: Client, subject: str, **fields: str) -> httpx.Response:
    data = {
        "grant_type": EXCHANGE,
        "client_id": CLIENT_ID,
        "subject_token": subject,
        "subject_token_type": ACCESS_TOKEN,
        **fields,
    }
    return client.token_request(data)


def test_metadata_offers_token_exchange(server: SandboxServer, http: httpx.Client) -> None:
    document = http.get(f"{server.url}/.well-known/oauth-authorization-server").json()
    assert EXCHANGE in document["grant_types_supported"]


def test_an_exchange_narrows_scope_and_audience_and_keeps_the_key(client: Client) -> None:
    parent = granted(client, scope="deploy read")

    child = exchange(client, parent["access_token"], scope="read", audience="https://api.test")

    assert child.status_code == 200, child.text
    body: dict[str, Any] = child.json()
    assert body["issued_token_type"] == ACCESS_TOKEN
    assert (body["token_type"], body["scope"]) == ("DPoP", "read")
    assert body["cnf"] == parent["cnf"]  # the same key
    assert "refresh_token" not in body
    seen = client.introspect(body["access_token"])
    assert (seen["active"], seen["scope"], seen["aud"]) == (True, "read", "https://api.test")
    assert client.introspect(parent["access_token"])["active"]  # the parent stays


def test_without_a_scope_the_subject_tokens_scope_is_kept(client: Client) -> None:
    parent = granted(client, scope="deploy read")
    child = exchange(client, parent["access_token"])
    assert child.json()["scope"] == "deploy read"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"scope": "deploy admin"}, "invalid_scope"),
        ({"subject_token_type": "urn:ietf:params:oauth:token-type:id_token"}, "invalid_request"),
        ({"requested_token_type": "urn:ietf:params:oauth:token-type:jwt"}, "invalid_request"),
        ({"actor_token": "someone-else"}, "invalid_request"),
    ],
)
def test_what_the_server_does_not_grant_is_refused(
    client: Client, change: dict[str, str], error: str
) -> None:
    parent = granted(client, scope="deploy")
    refused = exchange(client, parent["access_token"], **change)
    assert refused.status_code == 400
    assert error_of(refused) == error


def test_a_stolen_bound_token_cannot_be_exchanged_with_another_key(
    server: SandboxServer, http: httpx.Client, client: Client
) -> None:
    parent = granted(client, scope="deploy")
    thief = Client(server, http, ECKey.generate_key("P-256"))
    thief.nonce = client.nonce

    refused = exchange(thief, parent["access_token"], scope="deploy")

    assert error_of(refused) == "invalid_dpop_proof"


def test_another_clients_token_and_refresh_tokens_are_not_subject_tokens(
    client: Client, http: httpx.Client, server: SandboxServer
) -> None:
    parent = granted(client, scope="deploy")
    data = {
        "grant_type": EXCHANGE,
        "client_id": "another-client",
        "subject_token": parent["access_token"],
        "subject_token_type": ACCESS_TOKEN,
    }
    assert error_of(client.token_request(data)) == "invalid_request"
    assert error_of(exchange(client, parent["refresh_token"])) == "invalid_request"


def test_revoking_the_grant_ends_the_exchanged_token(client: Client, http: httpx.Client) -> None:
    parent = granted(client, scope="deploy")
    child = exchange(client, parent["access_token"]).json()
    revoked = http.post(
        f"{client.server.url}/oauth/revoke",
        data={"token": parent["refresh_token"], "client_id": CLIENT_ID},
    )
    assert revoked.status_code == 200
    assert client.introspect(child["access_token"]) == {"active": False}
