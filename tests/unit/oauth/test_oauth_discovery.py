"""Endpoint discovery: RFC 8414, then OpenID, then SharkAuth's paths; explicit inputs win."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from support.clock import START, FakeClock

from ci_shark.errors import DeviceFlowUnsupported, ProtocolError
from ci_shark.oauth.discovery import Endpoints, completed, discover, metadata_urls
from ci_shark.oauth.http import OAuthHttp


def metadata(issuer: str, **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "issuer": issuer,
        "device_authorization_endpoint": f"{issuer}/device/auth",
        "token_endpoint": f"{issuer}/token",
        "revocation_endpoint": f"{issuer}/token/revocation",
        "userinfo_endpoint": f"{issuer}/me",
        "introspection_endpoint": f"{issuer}/token/introspection",
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
    }
    document.update(overrides)
    return {name: value for name, value in document.items() if value is not None}


class MetadataServer:
    """Serves JSON documents at exact URLs; 404 elsewhere. Records every URL asked."""

    def __init__(self, documents: dict[str, httpx.Response]) -> None:
        self.documents = documents
        self.asked: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.asked.append(str(request.url))
        return self.documents.get(str(request.url), httpx.Response(404, text="Not Found"))


Discover = Callable[..., Any]


@pytest.fixture
def discover_with() -> Iterator[Callable[..., Any]]:
    opened: list[OAuthHttp] = []

    def run(server: MetadataServer, auth_url: str, **kwargs: Any) -> Any:
        clock = FakeClock()
        http = OAuthHttp(transport=httpx.MockTransport(server), clock=clock, sleep=clock.sleep)
        opened.append(http)
        return discover(http, auth_url, deadline=START + 60, **kwargs)

    yield run
    for http in opened:
        http.close()


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        (
            "https://as.example",
            [
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration",
            ],
        ),
        (
            "https://as.example/",
            [
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration",
            ],
        ),
        (
            # RFC 8414 §3.1 inserts the well-known segment; OIDC Discovery appends it.
            "https://sso.example/realms/ci/",
            [
                "https://sso.example/.well-known/oauth-authorization-server/realms/ci",
                "https://sso.example/realms/ci/.well-known/openid-configuration",
            ],
        ),
        (
            "http://127.0.0.1:8080/tenant",
            [
                "http://127.0.0.1:8080/.well-known/oauth-authorization-server/tenant",
                "http://127.0.0.1:8080/tenant/.well-known/openid-configuration",
            ],
        ),
    ],
)
def test_metadata_url_shapes(issuer: str, expected: list[str]) -> None:
    assert metadata_urls(issuer) == expected


def test_rfc8414_metadata_comes_first(discover_with: Discover) -> None:
    issuer = "https://as.example"
    server = MetadataServer(
        {
            f"{issuer}/.well-known/oauth-authorization-server": httpx.Response(
                200, json=metadata(issuer)
            ),
            f"{issuer}/.well-known/openid-configuration": httpx.Response(
                200, json=metadata(issuer, token_endpoint=f"{issuer}/oidc-token")
            ),
        }
    )
    found = discover_with(server, issuer)

    assert server.asked == [f"{issuer}/.well-known/oauth-authorization-server"]
    assert found.device_authorization == f"{issuer}/device/auth"
    assert found.token == f"{issuer}/token"
    assert found.revocation == f"{issuer}/token/revocation"
    assert found.client_auth == "basic"


def test_openid_configuration_for_an_issuer_with_a_path(discover_with: Discover) -> None:
    issuer = "https://sso.example/realms/ci"
    oidc = f"{issuer}/.well-known/openid-configuration"
    server = MetadataServer(
        {
            oidc: httpx.Response(
                200,
                json=metadata(
                    issuer,
                    device_authorization_endpoint=f"{issuer}/protocol/openid-connect/auth/device",
                    token_endpoint_auth_methods_supported=["client_secret_post"],
                ),
            )
        }
    )
    found = discover_with(server, issuer)

    assert server.asked == [
        "https://sso.example/.well-known/oauth-authorization-server/realms/ci",
        oidc,
    ]
    assert found.device_authorization == f"{issuer}/protocol/openid-connect/auth/device"
    assert found.token == f"{issuer}/token"
    assert found.client_auth == "post"  # the server lists the form method and not Basic


@pytest.mark.parametrize(
    "issuer", ["https://evil.example", "https://as.example/other", None], ids=str
)
def test_metadata_of_another_issuer_is_refused(discover_with: Discover, issuer: str | None) -> None:
    # RFC 8414 §3.3: a mix-up attack, or a mistyped auth-url; either way not to be used.
    body = metadata("https://as.example")
    body["issuer"] = issuer
    server = MetadataServer(
        {
            "https://as.example/.well-known/oauth-authorization-server": httpx.Response(
                200, json=body
            )
        }
    )
    with pytest.raises(ProtocolError) as caught:
        discover_with(server, "https://as.example")
    assert caught.value.exit_code == 5
    assert "RFC 8414" in caught.value.message
    assert "`auth-url`" in caught.value.diagnostics()


def test_an_issuer_with_a_trailing_slash_is_the_same_issuer(discover_with: Discover) -> None:
    body = metadata("https://tenant.auth0.example/")
    server = MetadataServer(
        {
            "https://tenant.auth0.example/.well-known/oauth-authorization-server": httpx.Response(
                200, json=body
            )
        }
    )
    found = discover_with(server, "https://tenant.auth0.example")
    assert found.issuer == "https://tenant.auth0.example/"


def test_an_html_page_at_the_well_known_url_is_not_metadata(discover_with: Discover) -> None:
    issuer = "https://as.example"
    server = MetadataServer(
        {
            f"{issuer}/.well-known/oauth-authorization-server": httpx.Response(
                200, text="<html>Welcome</html>"
            ),
            f"{issuer}/.well-known/openid-configuration": httpx.Response(
                200, json=metadata(issuer)
            ),
        }
    )
    assert discover_with(server, issuer).token == f"{issuer}/token"
    assert len(server.asked) == 2


def test_explicit_endpoints_skip_discovery(discover_with: Discover) -> None:
    server = MetadataServer({})
    found = discover_with(
        server,
        "https://as.example",
        device_authorization_endpoint="https://as.example/custom/device",
        token_endpoint="https://as.example/custom/token",
    )
    assert server.asked == []
    assert found.device_authorization == "https://as.example/custom/device"
    assert found.token == "https://as.example/custom/token"


# The device endpoint is where the metadata does not say; the token endpoint is the server's.
EXPLICIT_ENDPOINTS = Endpoints("https://as.example/custom/device", "https://as.example/token")
METADATA_URL = "https://as.example/.well-known/oauth-authorization-server"


def complete(server: MetadataServer, endpoints: Endpoints, **kwargs: Any) -> Endpoints:
    clock = FakeClock()
    transport = httpx.MockTransport(server)
    with OAuthHttp(transport=transport, clock=clock, sleep=clock.sleep) as http:
        return completed(http, "https://as.example", endpoints, deadline=START + 30, **kwargs)


def test_after_approval_the_metadata_completes_explicit_endpoints() -> None:
    issuer = "https://as.example"
    server = MetadataServer({METADATA_URL: httpx.Response(200, json=metadata(issuer))})
    found = complete(server, EXPLICIT_ENDPOINTS)
    assert found.userinfo == f"{issuer}/me"
    assert found.revocation == f"{issuer}/token/revocation"
    # the inputs still win for what they named
    assert found.device_authorization == "https://as.example/custom/device"
    assert found.token == "https://as.example/token"


def test_metadata_of_another_token_endpoint_is_not_trusted() -> None:
    # It describes some other server: the token and the client secret must not go there.
    elsewhere = metadata("https://as.example", token_endpoint="https://other.example/token")
    server = MetadataServer({METADATA_URL: httpx.Response(200, json=elsewhere)})
    assert complete(server, EXPLICIT_ENDPOINTS) == EXPLICIT_ENDPOINTS


@pytest.mark.parametrize(
    ("answer", "requests"),
    [
        (httpx.Response(404, text="Not Found"), 2),  # both well-known URLs, once each
        (httpx.Response(503), 1),  # no retries: the outputs are waiting
        (
            httpx.Response(
                200, json=metadata("https://as.example", userinfo_endpoint="http://evil.example/me")
            ),
            1,
        ),
    ],
)
def test_completing_is_best_effort_and_tries_once(answer: httpx.Response, requests: int) -> None:
    server = MetadataServer({METADATA_URL: answer})
    assert complete(server, EXPLICIT_ENDPOINTS) == EXPLICIT_ENDPOINTS
    assert len(server.asked) == requests


def test_discovered_endpoints_are_not_looked_up_again() -> None:
    server = MetadataServer({})
    discovered = Endpoints("https://as.example/d", "https://as.example/t", source="metadata at x")
    assert complete(server, discovered) == discovered
    assert server.asked == []


@pytest.mark.parametrize("which", ["device_authorization_endpoint", "token_endpoint"])
def test_one_explicit_endpoint_overrides_the_metadata(discover_with: Discover, which: str) -> None:
    issuer = "https://as.example"
    server = MetadataServer(
        {
            f"{issuer}/.well-known/oauth-authorization-server": httpx.Response(
                200, json=metadata(issuer)
            )
        }
    )
    found = discover_with(server, issuer, **{which: "https://other.example/x"})

    assert len(server.asked) == 1
    if which == "token_endpoint":
        assert (found.device_authorization, found.token) == (
            f"{issuer}/device/auth",
            "https://other.example/x",
        )
    else:
        assert (found.device_authorization, found.token) == (
            "https://other.example/x",
            f"{issuer}/token",
        )
    assert found.revocation == f"{issuer}/token/revocation"  # still from the metadata


def test_no_metadata_falls_back_to_sharkauth_paths(discover_with: Discover) -> None:
    server = MetadataServer({})
    found = discover_with(server, "https://auth.example/shark/")

    assert server.asked == [
        "https://auth.example/.well-known/oauth-authorization-server/shark",
        "https://auth.example/shark/.well-known/openid-configuration",
    ]
    assert found.device_authorization == "https://auth.example/shark/oauth/device"
    assert found.token == "https://auth.example/shark/oauth/token"
    assert found.revocation == "https://auth.example/shark/oauth/revoke"


def test_metadata_without_device_endpoint_is_exit_5(discover_with: Discover) -> None:
    issuer = "https://as.example"
    server = MetadataServer(
        {
            f"{issuer}/.well-known/oauth-authorization-server": httpx.Response(
                200, json=metadata(issuer, device_authorization_endpoint=None)
            )
        }
    )
    with pytest.raises(DeviceFlowUnsupported) as caught:
        discover_with(server, issuer)

    assert caught.value.exit_code == 5
    assert "does not offer the device flow" in caught.value.message
    assert "device-authorization-endpoint" in caught.value.diagnostics()


def test_metadata_without_device_endpoint_can_be_overridden(discover_with: Discover) -> None:
    issuer = "https://as.example"
    server = MetadataServer(
        {
            f"{issuer}/.well-known/oauth-authorization-server": httpx.Response(
                200, json=metadata(issuer, device_authorization_endpoint=None)
            )
        }
    )
    found = discover_with(server, issuer, device_authorization_endpoint=f"{issuer}/dev")
    assert (found.device_authorization, found.token) == (f"{issuer}/dev", f"{issuer}/token")


@pytest.mark.parametrize(
    "field",
    ["device_authorization_endpoint", "token_endpoint", "revocation_endpoint"],
)
def test_metadata_with_an_http_endpoint_is_a_protocol_error(
    discover_with: Discover, field: str
) -> None:
    issuer = "https://as.example"
    server = MetadataServer(
        {
            f"{issuer}/.well-known/oauth-authorization-server": httpx.Response(
                200, json=metadata(issuer, **{field: "http://evil.example/steal"})
            )
        }
    )
    with pytest.raises(ProtocolError) as caught:
        discover_with(server, issuer)

    assert not isinstance(caught.value, DeviceFlowUnsupported)
    assert caught.value.exit_code == 5
    assert field in caught.value.message
    assert "http://" in caught.value.message


@pytest.mark.parametrize(
    "overrides",
    [{"token_endpoint": None}, {"token_endpoint": ["https://as.example/t"]}],
    ids=["no-token-endpoint", "token-endpoint-not-a-string"],
)
def test_metadata_without_a_usable_token_endpoint(
    discover_with: Discover, overrides: dict[str, Any]
) -> None:
    issuer = "https://as.example"
    server = MetadataServer(
        {
            f"{issuer}/.well-known/oauth-authorization-server": httpx.Response(
                200, json=metadata(issuer, **overrides)
            )
        }
    )
    with pytest.raises(ProtocolError):
        discover_with(server, issuer)


def test_loopback_http_metadata_is_fine(discover_with: Discover) -> None:
    issuer = "http://127.0.0.1:3000"
    server = MetadataServer(
        {f"{issuer}/.well-known/openid-configuration": httpx.Response(200, json=metadata(issuer))}
    )
    assert discover_with(server, issuer).device_authorization == f"{issuer}/device/auth"


@pytest.mark.parametrize(
    "token_endpoint",
    ["https://as.example/token/", "https://AS.example:443/token", "HTTPS://as.example/token"],
)
def test_the_same_token_endpoint_spelled_differently_still_counts(token_endpoint: str) -> None:
    issuer = "https://as.example"
    document = metadata(issuer, token_endpoint=token_endpoint)
    server = MetadataServer({METADATA_URL: httpx.Response(200, json=document)})
    assert complete(server, EXPLICIT_ENDPOINTS).userinfo == f"{issuer}/me"


@pytest.mark.parametrize(
    "token_endpoint",
    [
        "https://as.example:8443/token",
        "https://as.example/token2",
        "https://as.example.evil/token",
        "https://as.example/token?tenant=other",
    ],
)
def test_another_port_path_or_host_is_another_endpoint(token_endpoint: str) -> None:
    document = metadata("https://as.example", token_endpoint=token_endpoint)
    server = MetadataServer({METADATA_URL: httpx.Response(200, json=document)})
    assert complete(server, EXPLICIT_ENDPOINTS) == EXPLICIT_ENDPOINTS


@pytest.mark.parametrize(
    ("auth_url", "doubled", "fix"),
    [
        ("https://auth.example/oauth", "/oauth", "https://auth.example"),
        ("https://auth.example/shark/oauth/", "/oauth", "https://auth.example/shark"),
    ],
)
def test_an_auth_url_ending_in_the_presets_own_folder_is_said(
    discover_with: Discover, auth_url: str, doubled: str, fix: str
) -> None:
    # A newcomer pastes the URL of SharkAuth's /oauth folder: the paths would double it.
    found = discover_with(MetadataServer({}), auth_url)
    assert found.token == f"{fix}{doubled}/oauth/token"
    assert found.note == (
        f"`auth-url` ends in {doubled}, which the shark paths add again: set `auth-url` to {fix}"
    )


def test_an_auth_url_that_merely_looks_alike_is_not_flagged(discover_with: Discover) -> None:
    found = discover_with(MetadataServer({}), "https://auth.example/myoauth")
    assert found.note is None
