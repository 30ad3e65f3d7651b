"""Where the endpoints are: explicit inputs, else RFC 8414 / OpenID metadata, else SharkAuth's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ci_shark.errors import DeviceFlowUnsupported, ProtocolError, untrusted
from ci_shark.oauth.http import OAuthHttp
from ci_shark.urls import url_problem

# SharkAuth's routes; its device route is not the spec's /device_authorization.
SHARK_DEVICE_PATH = "/oauth/device"
SHARK_TOKEN_PATH = "/oauth/token"  # noqa: S105 (a path, not a password)
SHARK_REVOKE_PATH = "/oauth/revoke"


@dataclass(frozen=True)
class Endpoints:
    device_authorization: str | None
    token: str
    revocation: str | None = None
    userinfo: str | None = None
    introspection: str | None = None
    supports_client_secret_basic: bool = False
    source: str = "explicit inputs"


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
        introspection=_endpoint(metadata, "introspection_endpoint", where),
        supports_client_secret_basic=isinstance(methods, list) and "client_secret_basic" in methods,
        source=where,
    )


def shark_defaults(auth_url: str) -> Endpoints:
    base = auth_url.rstrip("/")
    return Endpoints(
        device_authorization=base + SHARK_DEVICE_PATH,
        token=base + SHARK_TOKEN_PATH,
        revocation=base + SHARK_REVOKE_PATH,
        source="SharkAuth default paths (no metadata found)",
    )


def fetch_metadata(http: OAuthHttp, auth_url: str, *, deadline: float) -> Endpoints | None:
    """The first metadata document found, or None when the server publishes none."""
    for url in metadata_urls(auth_url):
        reply = http.request("GET", url, deadline=deadline)
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
) -> Endpoints:
    """Endpoints for this run; explicit inputs win over anything the server says."""
    if device_authorization_endpoint and token_endpoint:
        return Endpoints(device_authorization_endpoint, token_endpoint)
    found = fetch_metadata(http, auth_url, deadline=deadline) or shark_defaults(auth_url)
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
        introspection=found.introspection,
        supports_client_secret_basic=found.supports_client_secret_basic,
        source=found.source,
    )
