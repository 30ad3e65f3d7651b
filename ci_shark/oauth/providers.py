"""Provider presets: where each server keeps its device-flow endpoints when it publishes no
metadata, and which of its quirks we must expect.

The quirks that are only a different word for an RFC outcome (``authorization_declined``,
``verification_url``, lowercase ``bearer``, ``dpop-nonce``) are handled where the words are
read, for every server. What stays here is what depends on knowing the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from ci_shark.errors import ConfigError


@dataclass(frozen=True)
class Provider:
    name: str
    # Paths appended to the `auth-url` when the server publishes no metadata.
    device_path: str | None
    token_path: str | None
    revoke_path: str | None = None
    publishes_metadata: bool = True
    needs_client_secret: bool = False
    # Answers invalid_grant for a code past its lifetime (after one expired_token).
    invalid_grant_when_expired: bool = False
    # How a confidential client authenticates when no metadata says (RFC 6749: Basic).
    client_auth: Literal["basic", "post"] = "basic"
    note: str = ""


PROVIDERS: dict[str, Provider] = {
    "shark": Provider("shark", "/oauth/device", "/oauth/token", "/oauth/revoke"),
    # https://github.com: no metadata, errors with HTTP 200, no verification_uri_complete.
    "github": Provider(
        "github",
        "/login/device/code",
        "/login/oauth/access_token",
        publishes_metadata=False,
        note="GitHub answers errors with HTTP 200 and gives no verification_uri_complete",
    ),
    # https://oauth2.googleapis.com (metadata lives at accounts.google.com).
    "google": Provider(
        "google",
        "/device/code",
        "/token",
        "/revoke",
        needs_client_secret=True,
        client_auth="post",  # its device-flow documentation sends the secret in the form
        note="Google's token endpoint needs the client secret even for the device flow",
    ),
    # https://login.microsoftonline.com/{tenant}
    "entra": Provider("entra", "/oauth2/v2.0/devicecode", "/oauth2/v2.0/token"),
    # https://{tenant}.auth0.com
    "auth0": Provider(
        "auth0",
        "/oauth/device/code",
        "/oauth/token",
        "/oauth/revoke",
        invalid_grant_when_expired=True,
    ),
    # https://{org}.okta.com/oauth2/{server}
    "okta": Provider("okta", "/v1/device/authorize", "/v1/token", "/v1/revoke"),
    # https://{host}/realms/{realm}
    "keycloak": Provider(
        "keycloak",
        "/protocol/openid-connect/auth/device",
        "/protocol/openid-connect/token",
        "/protocol/openid-connect/revoke",
    ),
    # Metadata or explicit endpoints only.
    "generic": Provider("generic", None, None),
}


def recognise(auth_url: str) -> Provider:
    """`provider: auto`: what the URL tells; SharkAuth (the default) otherwise."""
    parts = urlsplit(auth_url)
    host = (parts.hostname or "").lower()
    if host in ("github.com", "www.github.com"):
        return PROVIDERS["github"]
    if host in ("oauth2.googleapis.com", "accounts.google.com"):
        return PROVIDERS["google"]
    if host.startswith("login.microsoftonline.") or host == "login.microsoft.com":
        return PROVIDERS["entra"]
    if host.endswith((".auth0.com", ".auth0.app")):
        return PROVIDERS["auth0"]
    if host.endswith((".okta.com", ".oktapreview.com", ".okta-emea.com")):
        return PROVIDERS["okta"]
    if "/realms/" in parts.path:
        return PROVIDERS["keycloak"]
    return PROVIDERS["shark"]


def lookup(name: str, auth_url: str) -> Provider:
    """The `provider` input's preset; `auto` recognises it from the URL."""
    return recognise(auth_url) if name == "auto" else PROVIDERS[name]


def resolve(name: str, auth_url: str, *, has_client_secret: bool) -> Provider:
    """:func:`lookup`, checking up front what the provider needs to complete a login."""
    provider = lookup(name, auth_url)
    if provider.needs_client_secret and not has_client_secret:
        raise ConfigError(
            f"the {provider.name} provider needs `client-secret` to poll the token endpoint",
            hint="set client-secret from a CI secret; "
            + (provider.note or "the server requires it"),
        )
    return provider
