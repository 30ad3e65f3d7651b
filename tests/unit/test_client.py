"""The SDK-shaped library clients over httpx.MockTransport: what each call puts on the wire,
who it authenticates as, and what it refuses. tests/integration/test_sdk_seeds.py runs the
SDK's documented examples against the sandbox."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest
from joserfc import jws
from joserfc.jwk import ECKey

from ci_shark.client import OAuthClient
from ci_shark.errors import ConfigError, OAuthError, ProtocolError, TransportError
from ci_shark.http_client import DPoPHTTPClient
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import OAuthHttp

AS = "https://as.example"
Handler = Callable[[httpx.Request], httpx.Response]

METADATA = {
    "issuer": AS,
    "token_endpoint": f"{AS}/token",
    "revocation_endpoint": f"{AS}/revoke",
    "introspection_endpoint": f"{AS}/introspect",
    "token_endpoint_auth_methods_supported": ["client_secret_basic"],
}
TOKEN = {"access_token": "at-new", "token_type": "DPoP", "expires_in": 60, "scope": "read"}


class Server:
    """An authorization server that answers ``answers[path]`` and keeps every request."""

    def __init__(
        self, answers: dict[str, httpx.Response], metadata: dict[str, object] = METADATA
    ) -> None:
        self.answers = answers
        self.metadata = metadata
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/.well-known/"):
            return httpx.Response(200, json=self.metadata)
        self.seen.append(request)
        return self.answers[request.url.path]

    def form(self, index: int = -1) -> dict[str, list[str]]:
        return parse_qs(self.seen[index].content.decode())


def client_of(server: Server, **options: str) -> OAuthClient:
    http = OAuthHttp(transport=httpx.MockTransport(server), sleep=lambda _: None)
    return OAuthClient(AS, http=http, **options)


def proof_claims(request: httpx.Request) -> dict[str, object]:
    """The request's DPoP proof claims, its signature checked against its own key."""
    proof = request.headers["DPoP"]
    header = json.loads(base64.urlsafe_b64decode(proof.split(".")[0] + "=="))
    verified = jws.deserialize_compact(proof, ECKey.import_key(header["jwk"]))
    return dict(json.loads(verified.payload))


# -- OAuthClient ------------------------------------------------------------------------


def test_refresh_token_proves_the_key_and_is_sent_once() -> None:
    server = Server({"/token": httpx.Response(503)})
    key = DPoPKey.generate()
    with pytest.raises(TransportError):
        client_of(server).refresh_token("rt-1", client_id="app", dpop_prover=key, scope="read")
    assert len(server.seen) == 1  # a rotating refresh token is never replayed
    assert server.form() == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["rt-1"],
        "scope": ["read"],
        "client_id": ["app"],
    }
    claims = proof_claims(server.seen[0])
    assert (claims["htm"], claims["htu"]) == ("POST", f"{AS}/token")


def test_refresh_token_names_the_missing_client() -> None:
    with pytest.raises(ConfigError, match="refresh needs client_id"):
        client_of(Server({})).refresh_token("rt-1")


def test_token_exchange_sends_rfc_8693_fields_and_keeps_the_tokens_secret() -> None:
    server = Server({"/token": httpx.Response(200, json=TOKEN)})
    key = DPoPKey.generate()
    client = client_of(server, client_id="agent", client_secret="s3cr3t")

    child = client.token_exchange(
        subject_token="at-parent",
        dpop_prover=key,
        scope="read",
        audience="https://api.example",
        actor_token="at-actor",
    )

    assert server.form() == {
        "grant_type": ["urn:ietf:params:oauth:grant-type:token-exchange"],
        "subject_token": ["at-parent"],
        "subject_token_type": ["urn:ietf:params:oauth:token-type:access_token"],
        "requested_token_type": ["urn:ietf:params:oauth:token-type:access_token"],
        "audience": ["https://api.example"],
        "scope": ["read"],
        "actor_token": ["at-actor"],
        "actor_token_type": ["urn:ietf:params:oauth:token-type:access_token"],
    }
    basic = base64.b64decode(server.seen[0].headers["Authorization"].split()[1])
    assert basic == b"agent:s3cr3t"  # the constructor's client, as the metadata says
    assert (child.scope, child.cnf_jkt) == ("read", key.jkt)
    assert "at-new" not in repr(child)


def test_a_refused_exchange_is_an_oauth_error_without_the_tokens() -> None:
    refusal = {"error": "invalid_scope", "error_description": "not for at-parent"}
    server = Server({"/token": httpx.Response(400, json=refusal)})
    client = client_of(server)
    with pytest.raises(OAuthError) as refused:
        client.token_exchange(
            subject_token="at-parent", client_id="a", dpop_prover=DPoPKey.generate()
        )
    assert (refused.value.error, refused.value.status_code) == ("invalid_scope", 400)
    assert "at-parent" not in refused.value.diagnostics()


def test_revoke_authenticates_as_the_client_else_with_the_admin_key() -> None:
    server = Server({"/revoke": httpx.Response(200)})
    client_of(server, client_id="app").revoke_token("at-1", "access_token")
    assert server.form() == {
        "token": ["at-1"],
        "token_type_hint": ["access_token"],
        "client_id": ["app"],
    }
    client_of(server, token="sk_live_admin").revoke_token("at-1")
    assert server.seen[-1].headers["Authorization"] == "Bearer sk_live_admin"
    assert server.form() == {"token": ["at-1"]}


def test_introspect_returns_the_servers_answer_and_refuses_one_without_active() -> None:
    active = {"active": True, "sub": "alice", "cnf": {"jkt": "abc"}}
    server = Server({"/introspect": httpx.Response(200, json=active)})
    assert client_of(server).introspect_token("at-1") == active
    server.answers["/introspect"] = httpx.Response(200, json={"sub": "alice"})
    with pytest.raises(ProtocolError, match="without `active`"):
        client_of(server).introspect_token("at-1")
    server.answers["/introspect"] = httpx.Response(401, text="no at-1 for you")
    with pytest.raises(OAuthError) as refused:
        client_of(server).introspect_token("at-1")
    assert refused.value.status_code == 401


def test_a_server_without_a_revocation_endpoint_says_so() -> None:
    # Its metadata lists none: SharkAuth's /oauth/revoke is not guessed on another server.
    server = Server({}, metadata={"issuer": AS, "token_endpoint": f"{AS}/token"})
    with pytest.raises(ProtocolError, match="names no revocation endpoint"):
        client_of(server).revoke_token("at-1")
    assert server.seen == []


# -- DPoPHTTPClient ---------------------------------------------------------------------


def api_client(handler: Handler) -> DPoPHTTPClient:
    return DPoPHTTPClient("https://api.example/v1", transport=httpx.MockTransport(handler))


def test_every_call_carries_the_token_and_a_proof_bound_to_it() -> None:
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    key = DPoPKey.generate()
    with api_client(api) as client:
        client.post_with_dpop(
            "items", token="at-1", prover=key, json={"a": 1}, headers={"X-Id": "7"}
        )
        client.delete_with_dpop("/items/7?force=1", token="at-1", prover=key, data=b"raw")
    post, delete = seen
    assert str(post.url) == "https://api.example/v1/items"
    assert (post.headers["Authorization"], post.headers["X-Id"]) == ("DPoP at-1", "7")
    assert json.loads(post.content) == {"a": 1}
    assert delete.content == b"raw"  # requests' data= bytes
    claims = proof_claims(delete)
    assert (claims["htm"], claims["htu"]) == ("DELETE", "https://api.example/v1/items/7")
    assert claims["ath"]
    assert proof_claims(post)["jti"] != claims["jti"]


def test_a_nonce_challenge_is_answered_once_and_remembered() -> None:
    nonces: list[object] = []

    def api(request: httpx.Request) -> httpx.Response:
        nonces.append(proof_claims(request).get("nonce"))
        if nonces[-1] != "n-1":
            challenge = 'DPoP error="use_dpop_nonce", error_description="nonce"'
            headers = {"WWW-Authenticate": challenge, "DPoP-Nonce": "n-1"}
            return httpx.Response(401, headers=headers)
        return httpx.Response(200, json={"ok": True})

    key = DPoPKey.generate()
    with api_client(api) as client:
        assert client.get_with_dpop("/a", token="at-1", prover=key).status_code == 200
        assert client.get_with_dpop("/b", token="at-1", prover=key).status_code == 200
    assert nonces == [None, "n-1", "n-1"]


@pytest.mark.parametrize("path", ["https://evil.example/steal", "//evil.example/x"])
def test_a_full_url_is_refused_so_the_token_stays_with_the_api(path: str) -> None:
    def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError("nothing may be sent")

    with api_client(never) as client, pytest.raises(ConfigError, match="path under base_url"):
        client.get_with_dpop(path, token="at-1", prover=DPoPKey.generate())


def test_plain_http_is_refused_off_loopback() -> None:
    with pytest.raises(ConfigError, match="base_url"):
        DPoPHTTPClient("http://api.example")
