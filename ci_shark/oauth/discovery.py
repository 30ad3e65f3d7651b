"""Where the endpoints are: explicit inputs, else RFC 8414 / OpenID metadata, else the
provider preset's paths (SharkAuth's by default)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ci_shark.errors import DeviceFlowUnsupported, ProtocolError, TransportError, untrusted
from ci_shark.oauth.http import OAuthHttp
from ci_shark.oauth.providers import PROVIDERS, Provider
from ci_shark.urls import same_endpoint, url_problem

EXPLICIT = "explicit inputs"


@dataclass(frozen=True)
class Endpoints:
    device_authorization: str | None
    token: str
    revocation: str | None = None
    userinfo: str | None = None
    supports_client_secret_basic: bool = False
    source: str = EXPLICIT


def metadata_urls(issuer: str) -> list[str]:
    """RFC 8414 §3 inserts the well-known segment before the issuer's path; OIDC appends it."""
    parts = urlsplit(issuer.rstrip("/"))
    path = parts.path.rstrip("/")

    def at(new_path: str) -> str:
        return urlunsplit((parts.scheme, parts.netloc, new_path, "", ""))

    return [
        at(f"/.well-known/oauth-authorization-server{path}"),
        at(f"{path}/.well-known/openid-configuration"),
    ]


def _endpoint(metadata: dict[str, Any], name: str, where: str) -> str | None:
    value = metadata.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"{where}: {name} is not a string")
    problem = url_problem(value)
    if problem:
        raise ProtocolError(f"{where}: {name} {untrusted(value, 120)} {problem}")
    return value


def from_metadata(metadata: dict[str, Any], where: str) -> Endpoints:
    device = _endpoint(metadata, "device_authorization_endpoint", where)
    token = _endpoint(metadata, "token_endpoint", where)
    if token is None:
        raise ProtocolError(f"{where} has no token_endpoint")
    methods = metadata.get("token_endpoint_auth_methods_supported")
    return Endpoints(
        device_authorization=device,
        token=token,
        revocation=_endpoint(metadata, "revocation_endpoint", where),
        userinfo=_endpoint(metadata, "userinfo_endpoint", where),
        supports_client_secret_basic=isinstance(methods, list) and "client_secret_basic" in methods,
        source=where,
    )


def preset_endpoints(auth_url: str, provider: Provider = PROVIDERS["shark"]) -> Endpoints:
    """The provider's usual paths under `auth-url`, for servers without metadata."""
    if provider.token_path is None:
        raise DeviceFlowUnsupported(
            "the authorization server publishes no RFC 8414 / OpenID metadata, and the "
            f"{provider.name} provider has no default paths",
            hint="set `device-authorization-endpoint` and `token-endpoint`, or `provider`",
        )
    base = auth_url.rstrip("/")
    return Endpoints(
        device_authorization=base + provider.device_path if provider.device_path else None,
        token=base + provider.token_path,
        revocation=base + provider.revoke_path if provider.revoke_path else None,
        source=f"{provider.name} default paths (no metadata)",
    )


def fetch_metadata(
    http: OAuthHttp, auth_url: str, *, deadline: float, retry: bool = True
) -> Endpoints | None:
    """The first metadata document found, or None when the server publishes none."""
    for url in metadata_urls(auth_url):
        reply = http.request("GET", url, deadline=deadline, retry=retry)
        if reply.status == 200 and reply.body is not None:
            return from_metadata(reply.body, f"metadata at {url}")
    return None


def discover(
    http: OAuthHttp,
    auth_url: str,
    *,
    deadline: float,
    device_authorization_endpoint: str | None = None,
    token_endpoint: str | None = None,
    provider: Provider = PROVIDERS["shark"],
) -> Endpoints:
    """Endpoints for this run; explicit inputs win over anything the server says."""
    if device_authorization_endpoint and token_endpoint:
        return Endpoints(device_authorization_endpoint, token_endpoint)
    found = server_endpoints(http, auth_url, deadline=deadline, provider=provider)
    if not (device_authorization_endpoint or found.device_authorization):
        raise DeviceFlowUnsupported(
            f"the authorization server does not offer the device flow: the {found.source} "
            "lists no device_authorization_endpoint",
            hint="enable the device authorization grant (RFC 8628) on the server, or set "
            "`device-authorization-endpoint` (CI_SHARK_DEVICE_AUTHORIZATION_ENDPOINT) "
            "if it lives at a path the metadata does not list",
        )
    return Endpoints(
        device_authorization=device_authorization_endpoint or found.device_authorization,
        token=token_endpoint or found.token,
        revocation=found.revocation,
        userinfo=found.userinfo,
        supports_client_secret_basic=found.supports_client_secret_basic,
        source=found.source,
    )


def completed(
    http: OAuthHttp,
    auth_url: str,
    endpoints: Endpoints,
    *,
    deadline: float,
    provider: Provider = PROVIDERS["shark"],
) -> Endpoints:
    """Explicit endpoints skip discovery on the way to the link; once a token is in, the
    metadata may still name userinfo (who approved) and revocation (undo a refused grant).

    Best effort, one try each: a server without metadata keeps what the inputs said. The
    metadata counts only when it names the same token endpoint as the inputs: otherwise it
    describes another server, which must not receive the token or the client secret.
    """
    if endpoints.source != EXPLICIT or not provider.publishes_metadata:
        return endpoints
    try:
        found = fetch_metadata(http, auth_url, deadline=deadline, retry=False)
    except (ProtocolError, TransportError):
        return endpoints
    if found is None or not same_endpoint(found.token, endpoints.token):
        return endpoints
    return replace(endpoints, revocation=found.revocation, userinfo=found.userinfo)


def server_endpoints(
    http: OAuthHttp, auth_url: str, *, deadline: float, provider: Provider = PROVIDERS["shark"]
) -> Endpoints:
    """What the server publishes, else the provider preset's paths."""
    found = None
    if provider.publishes_metadata:
        found = fetch_metadata(http, auth_url, deadline=deadline)
    return found or preset_endpoints(auth_url, provider)
