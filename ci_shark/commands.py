"""The small flows beside login, on what a login issued (read by :mod:`ci_shark.issued`):

- :func:`proof`: a DPoP proof for a request made with another client (curl).
- :func:`refresh`: the refresh-token grant with a proof from the same key, written back
  where the old tokens were (masked first, all or none).
- :func:`revoke`: revoke both tokens (the grant first) and remove our own files.

`ci-shark request` is :mod:`ci_shark.request`. Every secret read is masked before it is used.
"""

from __future__ import annotations

import time
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path

from ci_shark import cancel
from ci_shark.config import Settings
from ci_shark.errors import ConfigError
from ci_shark.issued import Issued, load_issued, mask_issued, read_key_file
from ci_shark.oauth.discovery import Endpoints, server_endpoints
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import OAuthHttp
from ci_shark.oauth.providers import lookup
from ci_shark.oauth.tokens import Client, refresh_grant, revocable, revoke_each
from ci_shark.outputs import Credentials, reveal
from ci_shark.platforms.base import Platform
from ci_shark.secret import Secret
from ci_shark.urls import url_problem

COMMAND_BUDGET_S = 60.0


# -- the server behind the credentials -----------------------------------------------------


@dataclass(frozen=True)
class Server:
    auth_url: str
    client_id: str
    endpoints: Endpoints

    def client(self, settings: Settings) -> Client:
        """Us, to this server: the login's client, with the secret from CI_SHARK_*."""
        return Client(self.client_id, settings.client_secret, self.endpoints.client_auth)


def find_server(issued: Issued, settings: Settings, http: OAuthHttp, deadline: float) -> Server:
    """`auth-url`, `client-id` and the endpoints as given (flags, CI_SHARK_*), else as the
    login wrote them down (the ones it used, explicit or discovered), else discovered."""
    # Settings.required raises, naming the input and its fix.
    auth_url = settings.auth_url or issued.text("SHARK_AUTH_URL") or settings.required("auth_url")
    client_id = (
        settings.client_id or issued.text("SHARK_CLIENT_ID") or settings.required("client_id")
    )
    token = settings.token_endpoint or issued.text("SHARK_TOKEN_ENDPOINT")
    revocation = issued.text("SHARK_REVOCATION_ENDPOINT")
    # The login records SHARK_REVOCATION_ENDPOINT even when empty: it found none, and a
    # later command must not guess a preset path the server never named.
    if token is not None and (
        revocation is not None or "SHARK_REVOCATION_ENDPOINT" in issued.values
    ):
        return Server(auth_url, client_id, Endpoints(None, token, revocation=revocation))
    provider = lookup(settings.provider, auth_url)
    found = server_endpoints(http, auth_url, deadline=deadline, provider=provider)
    endpoints = replace(
        found, token=token or found.token, revocation=revocation or found.revocation
    )
    return Server(auth_url, client_id, endpoints)


# -- proof --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProofFor:
    """The request a proof is for; ``access_token`` as given on argv (discouraged)."""

    method: str
    url: str
    nonce: str | None = None
    access_token: str | None = None


def proof(
    request: ProofFor,
    settings: Settings,
    platform: Platform,
    *,
    key_file: Path | None,
    credentials: Path | None,
    with_access_token: bool,
) -> str:
    """A DPoP proof for a request made with another client: the key from ``key_file``,
    else the login's, else ``dpop-private-key``; bound to the login's token on request."""
    problem = url_problem(request.url)
    if problem:
        raise ConfigError(f"--url {problem}", hint="pass the full https:// URL of the request")
    issued = None
    if key_file is None or with_access_token:
        try:
            issued = load_issued(credentials, platform)
        except ConfigError:
            if key_file is None and settings.dpop_private_key is None:
                raise  # it says where the login's credentials were looked for
    if key_file is not None:
        key = DPoPKey.load(read_key_file(key_file))
    elif issued is not None and (found := issued.dpop_key()) is not None:
        key = found
    elif settings.dpop_private_key is not None:
        key = DPoPKey.load(settings.dpop_private_key.reveal())
    else:
        raise ConfigError(
            f"no DPoP key in {issued.where if issued else 'the login'}: the token is not "
            "DPoP-bound, or its key is gone",
            hint="pass --key-file, or set CI_SHARK_DPOP_PRIVATE_KEY",
        )
    access_token: str | Secret | None = request.access_token
    if with_access_token:
        access_token = issued.secret("SHARK_ACCESS_TOKEN") if issued else None
        if access_token is None:
            raise ConfigError("--with-access-token: the login's access token is not there")
    return key.proof(request.method, request.url, nonce=request.nonce, access_token=access_token)


# -- revoke --------------------------------------------------------------------------------


def revoke(
    issued: Issued, settings: Settings, platform: Platform, *, credentials_flag: bool
) -> None:
    mask_issued(issued, platform)
    tokens = revocable(
        refresh_token=issued.secret("SHARK_REFRESH_TOKEN"),
        access_token=issued.secret("SHARK_ACCESS_TOKEN"),
    )
    if not tokens:
        platform.log("ci_shark: nothing to revoke (no access or refresh token)")
        return
    try:
        key = issued.dpop_key()
    except ConfigError as unreadable:
        # Revocation does not need a proof: a lost key must not leave the tokens alive.
        platform.warn(f"revoking without a DPoP proof: {unreadable.message}")
        key = None
    deadline = time.monotonic() + COMMAND_BUDGET_S
    with OAuthHttp(ca_bundle=settings.ca_bundle) as http:
        server = find_server(issued, settings, http, deadline)
        endpoint = server.endpoints.revocation
        if endpoint is None:
            raise ConfigError(
                "the authorization server names no revocation endpoint",
                hint="the server does not support RFC 7009 revocation; tokens expire on their own",
            )
        results = revoke_each(
            http, endpoint, tokens, server.client(settings), dpop=key, deadline=deadline
        )
    for hint, failure in results.items():
        if failure is None:
            platform.log(f"ci_shark: revoked the {hint.replace('_', ' ')}")
    failures = [failure for failure in results.values() if failure is not None]
    if failures:
        raise failures[0]
    _remove_own_files(issued, platform, credentials_flag=credentials_flag)


def _remove_own_files(issued: Issued, platform: Platform, *, credentials_flag: bool) -> None:
    """Once both tokens are dead, the key has no use: remove ci_shark's own key file, and
    the credentials file when it is the one login left by default."""
    key_file = issued.text("SHARK_DPOP_KEY_FILE")
    own = [Path(key_file)] if key_file and Path(key_file).name.startswith("ci-shark-dpop-") else []
    if issued.file is not None and not credentials_flag:
        own.append(issued.file)
    for path in own:
        with suppress(OSError):
            path.unlink()
            platform.log(f"ci_shark: removed {path}")


# -- refresh -------------------------------------------------------------------------------


def refresh(
    issued: Issued, settings: Settings, platform: Platform, *, print_exports: bool = False
) -> Issued:
    """The refresh-token grant with a proof from the login's key (RFC 9449 §5), then the
    new tokens written where the old ones were (masked first, all or none): the file they
    came from, else the job's; this step's outputs on GitHub; and ``print_exports`` (only
    when asked for on the command line) prints shell exports for an ``eval``."""
    mask_issued(issued, platform)
    refresh_token = issued.secret("SHARK_REFRESH_TOKEN")
    if refresh_token is None:
        raise ConfigError(
            f"no refresh token in {issued.where}: the server issued none",
            hint="ask for a refresh token (often the offline_access scope), or log in again",
        )
    key = issued.dpop_key()
    deadline = time.monotonic() + COMMAND_BUDGET_S
    with OAuthHttp(ca_bundle=settings.ca_bundle) as http:
        server = find_server(issued, settings, http, deadline)
        tokens = refresh_grant(
            http,
            server.endpoints.token,
            refresh_token,
            server.client(settings),
            dpop=key,
            deadline=deadline,
        )
    if tokens.refresh_token is None:  # not rotated: the old one stays valid
        tokens = replace(tokens, refresh_token=refresh_token)
    if issued.is_dpop_bound and not tokens.is_dpop_bound:
        platform.warn(f"the refreshed token is {tokens.token_type}, no longer DPoP-bound")
    credentials = Credentials(
        tokens=tokens,
        dpop_key=key,
        dpop_key_file=issued.text("SHARK_DPOP_KEY_FILE"),
        approver=issued.text("SHARK_APPROVER"),
        auth_url=server.auth_url,
        client_id=server.client_id,
        token_endpoint=server.endpoints.token,
        revocation_endpoint=server.endpoints.revocation,
    )
    file = issued.file or platform.output_path()
    with cancel.shielded():  # the old refresh token may be spent: these are the only ones
        platform.mask(credentials.secrets())
        platform.export_refreshed(credentials, file, print_exports=print_exports)
    named = credentials.named()
    platform.log(f"ci_shark: refreshed the access token (expires {named['SHARK_EXPIRES_AT']})")
    return Issued({name: reveal(value) for name, value in named.items()}, file)


__all__ = [
    "Issued",
    "ProofFor",
    "Server",
    "find_server",
    "load_issued",
    "proof",
    "refresh",
    "revoke",
]
