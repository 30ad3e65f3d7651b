"""Provider presets: where each server keeps its device-flow endpoints when it publishes no
metadata, which of its quirks we must expect, and which of its claims name a user.

Only a preset whose documentation says its usernames are unique and cannot be taken by
someone else names a ``unique_username_claim``: a bare `allowed-approvers` entry matches
that claim, and is a configuration error with any other preset (``flow.py``). OpenID
Connect Core §5.1 says ``preferred_username`` is not unique, and many servers let users
edit it. docs/compatibility.md has the table and its sources.

The quirks that are only a different word for an RFC outcome (``authorization_declined``,
``verification_url``, lowercase ``bearer``, ``dpop-nonce``) are handled where the words are
read, for every server. What stays here is what depends on knowing the server.
"""

from __future__ import annotations

from collections.abc import Callable
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
    introspect_path: str | None = None  # RFC 7662, for the library's introspect_token
    publishes_metadata: bool = True
    needs_client_secret: bool = False
    # Answers invalid_grant for a code past its lifetime (after one expired_token).
    invalid_grant_when_expired: bool = False
    # How a confidential client authenticates when no metadata says (RFC 6749: Basic).
    client_auth: Literal["basic", "post"] = "basic"
    note: str = ""
    # Who approved, when the server publishes no metadata: the userinfo URL for `auth-url`.
    userinfo: Callable[[str], str] | None = None
    # The claim `sub:` entries match (OpenID Connect: `sub`; GitHub's REST API: `id`).
    subject_claim: str = "sub"
    # The claim a bare `allowed-approvers` entry matches; None: a bare entry is refused.
    unique_username_claim: str | None = None

    def userinfo_url(self, auth_url: str) -> str | None:
        return self.userinfo(auth_url) if self.userinfo is not None else None


GITHUB_HOSTS = ("github.com", "www.github.com")


def _github_user_api(auth_url: str) -> str:
    """GitHub's "Get the authenticated user": on api.github.com for github.com, on
    api.<name>.ghe.com for GHE.com, under /api/v3 on a GitHub Enterprise Server."""
    host = (urlsplit(auth_url).hostname or "").lower()
    if host in GITHUB_HOSTS:
        return "https://api.github.com/user"
    if host.endswith(".ghe.com"):
        return f"https://api.{host}/user"
    return auth_url.rstrip("/") + "/api/v3/user"


PROVIDERS: dict[str, Provider] = {
    "shark": Provider(
        "shark",
        "/oauth/device",
        "/oauth/token",
        "/oauth/revoke",
        introspect_path="/oauth/introspect",
    ),
    # https://github.com: no metadata, errors with HTTP 200, no verification_uri_complete.
    # Who approved comes from its REST API (`login`, `id`); a `login` is unique and nobody
    # can take one in use (docs/compatibility.md).
    "github": Provider(
        "github",
        "/login/device/code",
        "/login/oauth/access_token",
        publishes_metadata=False,
        note="GitHub answers errors with HTTP 200 and gives no verification_uri_complete",
        userinfo=_github_user_api,
        subject_claim="id",
        unique_username_claim="login",
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
    "okta": Provider(
        "okta", "/v1/device/authorize", "/v1/token", "/v1/revoke", introspect_path="/v1/introspect"
    ),
    # https://{host}/realms/{realm}
    "keycloak": Provider(
        "keycloak",
        "/protocol/openid-connect/auth/device",
        "/protocol/openid-connect/token",
        "/protocol/openid-connect/revoke",
        introspect_path="/protocol/openid-connect/token/introspect",
    ),
    # Metadata or explicit endpoints only.
    "generic": Provider("generic", None, None),
}


def recognise(auth_url: str) -> Provider:
    """`provider: auto`: what the URL tells; SharkAuth (the default) otherwise."""
    parts = urlsplit(auth_url)
    host = (parts.hostname or "").lower()
    if host in GITHUB_HOSTS or host.endswith(".ghe.com"):  # GHE.com: <name>.ghe.com
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
