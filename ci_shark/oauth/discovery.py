"""Where the endpoints are: explicit inputs, else RFC 8414 / OpenID metadata, else the
provider preset's paths (SharkAuth's by default).

Endpoint URLs are used exactly as given or advertised (a Django server's ``/o/token/``
keeps its slash; a server advertising ``//api/…`` gets ``//api/…``, also in the DPoP
``htu``); only `auth-url` is a base that paths are added to.

Metadata names an ``issuer``, and RFC 8414 §3.3 says to use it only when that issuer is
the one we asked about (`auth-url`): otherwise another server's metadata could send the
client secret and the tokens elsewhere (a mix-up attack).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ci_shark.errors import DeviceFlowUnsupported, ProtocolError, TransportError
from ci_shark.oauth.http import OAuthHttp
from ci_shark.oauth.providers import PROVIDERS, Provider
from ci_shark.oauth.tokens import ClientAuth
from ci_shark.safe_text import untrusted
from ci_shark.urls import same_endpoint, same_issuer, url_problem

EXPLICIT = "explicit inputs"


class IssuerMismatch(ProtocolError):
    """Metadata that describes another issuer than `auth-url` (RFC 8414 §3.3)."""


@dataclass(frozen=True)
class Endpoints:
    device_authorization: str | None
    token: str
    revocation: str | None = None
    userinfo: str | None = None
    introspection: str | None = None  # RFC 7662 (the library's introspect_token)
    client_auth: ClientAuth = "basic"  # how a confidential client authenticates
    issuer: str | None = None  # from the metadata; None: `auth-url` is the issuer
    source: str = EXPLICIT  # where these came from, for messages
    note: str | None = None  # what looks wrong about where they came from, for messages


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


def _client_auth(methods: object) -> ClientAuth:
    """HTTP Basic unless the server lists the form method and not Basic (RFC 8414's
    default, when the list is absent, is Basic)."""
    if isinstance(methods, list) and "client_secret_basic" not in methods:
        return "post" if "client_secret_post" in methods else "basic"
    return "basic"


def from_metadata(metadata: dict[str, Any], where: str, *, auth_url: str) -> Endpoints:
    issuer = metadata.get("issuer")
    if not isinstance(issuer, str) or not same_issuer(issuer, auth_url):
        named = f"issuer {untrusted(issuer, 120)}" if isinstance(issuer, str) else "no issuer"
        raise IssuerMismatch(
            f"{where} names {named}, not `auth-url` {untrusted(auth_url, 120)}: RFC 8414 "
            "§3.3 forbids using it (it describes another server, or auth-url is mistyped)",
            hint="set `auth-url` to the server's issuer exactly as its metadata names it",
        )
    device = _endpoint(metadata, "device_authorization_endpoint", where)
    token = _endpoint(metadata, "token_endpoint", where)
    if token is None:
        raise ProtocolError(f"{where} has no token_endpoint")
    return Endpoints(
        device_authorization=device,
        token=token,
        revocation=_endpoint(metadata, "revocation_endpoint", where),
        userinfo=_endpoint(metadata, "userinfo_endpoint", where),
        introspection=_endpoint(metadata, "introspection_endpoint", where),
        client_auth=_client_auth(metadata.get("token_endpoint_auth_methods_supported")),
        issuer=issuer,
        source=where,
    )


def preset_endpoints(auth_url: str, provider: Provider = PROVIDERS["shark"]) -> Endpoints:
    """The provider's usual paths under `auth-url`, for servers without metadata."""
    tried = " and ".join(metadata_urls(auth_url)) if provider.publishes_metadata else None
    if provider.token_path is None:
        raise DeviceFlowUnsupported(
            message="the authorization server publishes no RFC 8414 / OpenID metadata"
            + (f" (tried {untrusted(tried, 400)})" if tried else "")
            + f", and the {provider.name} provider has no default paths",
            hint="check `auth-url` (it must be the server's issuer), or set "
            "`device-authorization-endpoint` and `token-endpoint`, or `provider`",
        )
    base = auth_url.rstrip("/")
    doubled = _doubled_segments(base, provider.token_path)
    # `auth-url` https://x/oauth with SharkAuth's /oauth/token asks https://x/oauth/oauth/token.
    note = (
        f"`auth-url` ends in {untrusted(doubled, 80)}, which the {provider.name} paths add "
        f"again: set `auth-url` to {untrusted(base[: -len(doubled)], 200)}"
        if doubled
        else None
    )
    return Endpoints(
        device_authorization=base + provider.device_path if provider.device_path else None,
        token=base + provider.token_path,
        revocation=base + provider.revoke_path if provider.revoke_path else None,
        userinfo=provider.userinfo_url(auth_url),
        introspection=base + provider.introspect_path if provider.introspect_path else None,
        client_auth=provider.client_auth,
        source=f"{provider.name} default paths" + (f" (no metadata at {tried})" if tried else ""),
        note=note,
    )


def _doubled_segments(base: str, preset_path: str) -> str | None:
    """The end of ``base``'s path that ``preset_path`` begins with again (``/oauth`` for
    ``https://x/oauth`` and ``/oauth/token``), whole segments only; None when none."""
    base_path = urlsplit(base).path
    segments = preset_path.strip("/").split("/")[:-1]  # the path's folders, not its endpoint
    for count in range(len(segments), 0, -1):
        prefix = "/" + "/".join(segments[:count])
        if base_path.endswith(prefix):
            return prefix
    return None


def fetch_metadata(
    http: OAuthHttp, auth_url: str, *, deadline: float, retry: bool = True
) -> Endpoints | None:
    """The first metadata document found, or None when the server publishes none."""
    for url in metadata_urls(auth_url):
        reply = http.request("GET", url, deadline=deadline, retry=retry)
        if reply.status == 200 and reply.body is not None:
            return from_metadata(reply.body, f"the metadata at {url}", auth_url=auth_url)
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
            message="the authorization server does not offer the device flow: "
            f"{found.source} lists no device_authorization_endpoint",
            hint="enable the device authorization grant (RFC 8628) on the server, or set "
            "`device-authorization-endpoint` if it lives at a path the metadata does not list",
        )
    return replace(
        found,
        device_authorization=device_authorization_endpoint or found.device_authorization,
        token=token_endpoint or found.token,
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
    describes another server, which must not receive the token or the client secret. A
    preset without metadata (GitHub) names its own userinfo.
    """
    if not provider.publishes_metadata:
        return replace(endpoints, userinfo=endpoints.userinfo or provider.userinfo_url(auth_url))
    if endpoints.source != EXPLICIT:
        return endpoints
    try:
        found = fetch_metadata(http, auth_url, deadline=deadline, retry=False)
    except (ProtocolError, TransportError):
        return endpoints
    if found is None or not same_endpoint(found.token, endpoints.token):
        return endpoints
    return replace(
        endpoints, revocation=found.revocation, userinfo=found.userinfo, issuer=found.issuer
    )


def server_endpoints(
    http: OAuthHttp, auth_url: str, *, deadline: float, provider: Provider = PROVIDERS["shark"]
) -> Endpoints:
    """What the server publishes, else the provider preset's paths. A named preset also
    takes over from metadata of another issuer (Entra's v1 metadata names sts.windows.net):
    that metadata is not used either way."""
    found = None
    if provider.publishes_metadata:
        try:
            found = fetch_metadata(http, auth_url, deadline=deadline)
        except IssuerMismatch:
            if provider.token_path is None or provider.name == PROVIDERS["shark"].name:
                raise
    return found or preset_endpoints(auth_url, provider)
