"""The small flows beside login, on what a login issued (read by :mod:`ci_shark.issued`):

- :func:`find_server`: where the credentials' tokens may go — the server recorded with
  them, and nowhere else.
- :func:`proof`: a DPoP proof for a request made with another client (curl).
- :func:`refresh`: the refresh-token grant, one process at a time per credentials file;
  the new tokens saved where the old ones were before anything else, or revoked.

`ci-shark revoke` is :mod:`ci_shark.revocation`, `ci-shark request` :mod:`ci_shark.request`.
Every secret read is masked before it is used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ci_shark import cancel
from ci_shark.errors import CiSharkError, ConfigError
from ci_shark.issued import IN_ENVIRONMENT, Issued, load_issued, mask_issued, read_key_file
from ci_shark.oauth.discovery import Endpoints, server_endpoints
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import OAuthHttp
from ci_shark.oauth.providers import lookup
from ci_shark.oauth.tokens import (
    ASSERTION_METHOD,
    CLIENT_AUTH_METHODS,
    SECRET_METHODS,
    Client,
    TokenSet,
    refresh_grant,
    revoke_each,
)
from ci_shark.outputs import (
    Credentials,
    check_writable,
    locked_beside,
    reveal,
    rewrite_credentials,
)
from ci_shark.platforms.base import Platform
from ci_shark.safe_text import untrusted
from ci_shark.secret import Secret
from ci_shark.urls import same_endpoint, same_issuer, url_problem
from ci_shark.workload import AUDIENCE_NAME, CiAssertions

if TYPE_CHECKING:
    from ci_shark.later_settings import ServerSettings

REFRESH_BUDGET_S = 60.0
# `revoke` is the always-run last step: a server that is gone must not hold the job long.
REVOKE_BUDGET_S = 15.0
# Another process's refresh (its budget, the revocation of a failure, the write) ends first;
# a `revoke` holds the lock for its --max-time, 15 s unless told (a refresh waiting on a
# longer one gives up, saying which file is held: bounded either way).
LOCK_WAIT_S = REFRESH_BUDGET_S + REVOKE_BUDGET_S + 15.0

Warn = Callable[[str], None]


# -- the server behind the credentials -----------------------------------------------------


@dataclass(frozen=True)
class Server:
    auth_url: str
    client: Client  # the login's client, authenticating as the login did
    endpoints: Endpoints
    assertions: CiAssertions | None = None  # workload identity: its CI tokens, its audience

    def close(self) -> None:
        if self.assertions is not None:
            self.assertions.close()


def find_server(
    issued: Issued,
    settings: ServerSettings,
    http: OAuthHttp,
    deadline: float,
    *,
    warn: Warn,
    platform: Platform | None = None,
) -> Server:
    """The server the credentials record, and the login's client there: a token goes only
    to the server that issued it, and the client secret only to its own client's.

    - `auth-url`, `client-id` and the token endpoint are the recorded ones
      (``SHARK_AUTH_URL``, ``SHARK_CLIENT_ID``, ``SHARK_TOKEN_ENDPOINT``); a setting that
      names another (a job-wide ``CI_SHARK_AUTH_URL`` from the login, a flag) is warned
      about and not used: the credentials may be a second login's, and an after-script
      `revoke` must still end them. Settings fill in only what is not recorded (variables
      mapped one by one).
    - The client authenticates as the login did (``SHARK_CLIENT_AUTH``), with
      `client-secret` only when the settings describe this server and client (or name
      none): the secret of another server's client is never sent. A login with workload
      identity (or, when nothing is recorded, `workload-identity`) is followed by fresh
      tokens from ``platform``'s CI for the recorded audience (workload.py, rule 6).
    - The endpoints are the ones the login used, else discovered at the recorded server.
    """
    auth_url = _recorded(issued, "SHARK_AUTH_URL", settings.auth_url, "auth-url", warn)
    auth_url = auth_url or settings.required("auth_url")  # raises, naming the input
    client_id = _recorded(issued, "SHARK_CLIENT_ID", settings.client_id, "client-id", warn)
    client_id = client_id or settings.required("client_id")
    token = _recorded(
        issued, "SHARK_TOKEN_ENDPOINT", settings.token_endpoint, "token-endpoint", warn
    )
    method = recorded_client_auth(issued)
    if method is None and settings.workload_identity:
        method = ASSERTION_METHOD
    secret = settings.client_secret if method is None or method in SECRET_METHODS else None
    if (settings.auth_url and not same_issuer(settings.auth_url, auth_url)) or (
        settings.client_id and settings.client_id != client_id
    ):
        secret = None  # another server's (or client's) secret
    if secret is None and method in SECRET_METHODS:
        raise ConfigError(
            f"the login authenticated client {untrusted(client_id, 100)} at "
            f"{untrusted(auth_url, 200)} with its client secret ({method}), and this step "
            "has none for it",
            hint="set `client-secret` for this step (it goes to that server only)",
        )
    endpoints = _endpoints(
        issued, token, auth_url=auth_url, settings=settings, http=http, deadline=deadline
    )
    auth = CLIENT_AUTH_METHODS[method] if method else None
    assertions = None
    if method == ASSERTION_METHOD:
        assertions = _assertions(issued, settings, platform, endpoints.issuer or auth_url)
    client = Client(client_id, secret, auth or endpoints.client_auth, assertion=assertions)
    return Server(auth_url, client, endpoints, assertions)


@contextmanager
def at_server(
    issued: Issued, settings: ServerSettings, platform: Platform, deadline: float
) -> Iterator[tuple[OAuthHttp, Server]]:
    """The OAuth client and the credentials' server (:func:`find_server`), both closed when
    the block ends."""
    with OAuthHttp(ca_bundle=settings.ca_bundle) as http:
        server = find_server(
            issued, settings, http, deadline, warn=platform.warn, platform=platform
        )
        with closing(server):
            yield http, server


def _assertions(
    issued: Issued, settings: ServerSettings, platform: Platform | None, issuer: str
) -> CiAssertions:
    """The CI tokens a later command authenticates with, for the login's audience."""
    if platform is None:
        raise ConfigError(
            f"the login's client authenticates with the CI's OIDC token ({ASSERTION_METHOD}), "
            "and this command cannot fetch one",
            hint="use `ci-shark refresh|revoke|request`, which fetch it from the CI",
        )
    audience = issued.text(AUDIENCE_NAME) or settings.workload_identity_audience or issuer
    try:
        return CiAssertions.of(platform, audience)
    except ConfigError as unavailable:
        if recorded_client_auth(issued) != ASSERTION_METHOD:
            raise  # `workload-identity` asked for it here: its own fix holds
        # The login's choice, not this step's: its settings cannot turn it off.
        raise ConfigError(
            unavailable.message,
            hint=f"the login authenticated with the CI's OIDC token ({issued.where} says "
            f"SHARK_CLIENT_AUTH={ASSERTION_METHOD}), and its later steps must too: run "
            "this one in the login's job, with what the login had (on GitHub `permissions: "
            "id-token: write`; on GitLab its `id_tokens:`)",
        ) from None


def _recorded(
    issued: Issued, name: str, setting: str | None, input_name: str, warn: Warn
) -> str | None:
    """The value the credentials record for ``name``, else the setting; a setting that
    differs is said once and not used."""
    recorded = issued.text(name)
    same = str.__eq__ if name == "SHARK_CLIENT_ID" else same_endpoint
    if recorded and setting and not same(recorded, setting):
        warn(
            f"`{input_name}` is {untrusted(setting, 200)}, but the credentials in "
            f"{issued.where} record {untrusted(recorded, 200)} ({name}): their tokens go "
            "only where they came from, so the recorded one is used"
        )
    return recorded or setting


def recorded_client_auth(issued: Issued) -> str | None:
    """How the login authenticated (``SHARK_CLIENT_AUTH``); None when not recorded (an
    older login, or variables mapped one by one): then as the server's metadata says."""
    method = issued.text("SHARK_CLIENT_AUTH")
    if method is not None and method not in CLIENT_AUTH_METHODS:
        raise ConfigError(
            f"SHARK_CLIENT_AUTH in {issued.where} is {untrusted(method, 60)}, a client "
            "authentication this ci-shark does not know",
            hint=f"use the ci-shark version that logged in (it knows "
            f"{', '.join(CLIENT_AUTH_METHODS)})",
        )
    return method


def _endpoints(
    issued: Issued,
    token: str | None,
    *,
    auth_url: str,
    settings: ServerSettings,
    http: OAuthHttp,
    deadline: float,
) -> Endpoints:
    """The endpoints the login used, else the recorded server's, discovered."""
    revocation = issued.text("SHARK_REVOCATION_ENDPOINT")
    # The login records SHARK_REVOCATION_ENDPOINT even when empty: it found none, and a
    # later command must not guess a preset path the server never named.
    if token is not None and (
        revocation is not None or "SHARK_REVOCATION_ENDPOINT" in issued.values
    ):
        return Endpoints(None, token, revocation=revocation)
    provider = lookup(settings.provider, auth_url)
    found = server_endpoints(http, auth_url, deadline=deadline, provider=provider)
    return replace(found, token=token or found.token, revocation=revocation or found.revocation)


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
    settings: ServerSettings,
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


# -- refresh -------------------------------------------------------------------------------


def refresh(
    issued: Issued, settings: ServerSettings, platform: Platform, *, print_exports: bool = False
) -> Issued:
    """The refresh-token grant (RFC 6749 §6) with a proof from the login's key (RFC 9449
    §5), at the server recorded with the token. Its rules:

    - The new tokens go where the old ones were: the file they came from, else this job's
      (`output-file`, or the default), never over another login's credentials.
    - One process at a time per file: a lock beside it (POSIX; Windows takes none), and,
      holding it, the file read again. When another process refreshed meanwhile, its
      tokens are used and the spent refresh token is not sent again: a server that
      detects reuse (RFC 9700) would end the whole grant. When the file it was read from
      is gone, `revoke` ended the tokens meanwhile: nothing is sent (a server that cannot
      revoke would else hand out a new grant after the job's last step).
    - The new tokens are masked, then written to the file before anything else (all or
      none); a failure after the server answered (an unusable answer, a write that fails)
      revokes what it issued, as a login does (flow rule 7). A refresh token that was not
      rotated is never revoked: the saved one is still it.
    - Then this step's other outputs, and shell exports on stdout only when the command
      line asked for them (``print_exports``): stdout may be an API's answer or a job log.
    """
    mask_issued(issued, platform)
    if issued.secret("SHARK_REFRESH_TOKEN") is None:
        raise ConfigError(
            f"no refresh token in {issued.where}: the server issued none",
            hint="ask for a refresh token (often the offline_access scope), or log in again",
        )
    file = issued.file or platform.output_path()
    check_writable(file, what="the credentials file")  # before the refresh token is spent
    with locked_beside(file, wait_s=LOCK_WAIT_S):
        newer = _refreshed_meanwhile(file, issued)
        if newer is not None:
            mask_issued(newer, platform)
            platform.log(
                "ci_shark: another ci-shark process refreshed these tokens meanwhile: "
                f"using the new ones in {file}"
            )
            saved = newer
        else:
            saved = _refresh_and_save(issued, file, settings, platform)
    platform.export_refreshed(saved.named(), print_exports=print_exports)
    if newer is None:
        expires = saved.text("SHARK_EXPIRES_AT") or "when the server says"
        platform.log(f"ci_shark: refreshed the access token (expires {expires})")
    return saved


def _refreshed_meanwhile(file: Path, issued: Issued) -> Issued | None:
    """``file`` read again under the lock: the grant's tokens there when another process
    refreshed it since ``issued`` was read; None to go on and refresh."""
    if not file.is_file():
        if issued.file is not None:  # read from it, gone now: `revoke` ended them meanwhile
            raise CiSharkError(
                f"{file} was removed while this command waited for its lock: `ci-shark "
                "revoke` ended these tokens meanwhile, and they are not refreshed",
                hint="log in again for new ones",
            )
        return None
    now = Issued.read(file)
    if issued.same_grant(now):
        return None if now.same_tokens(issued) else now
    if issued.file is None:
        raise ConfigError(
            f"{file} holds another login's credentials than {IN_ENVIRONMENT}: their "
            "refreshed tokens cannot be saved there",
            hint="pass `--credentials FILE` with the file their login wrote, or set "
            "`output-file` to where the refreshed tokens go",
        )
    raise ConfigError(
        f"{file} was replaced by another login's credentials while this command ran",
        hint="run the command again: it then uses the new login's",
    )


def _refresh_and_save(
    issued: Issued, file: Path, settings: ServerSettings, platform: Platform
) -> Issued:
    sent = issued.secret("SHARK_REFRESH_TOKEN")
    assert sent is not None  # refresh() checked
    key = issued.dpop_key()
    deadline = time.monotonic() + REFRESH_BUDGET_S
    with at_server(issued, settings, platform, deadline) as (http, server):
        received: list[tuple[Secret, str]] = []
        try:
            tokens = refresh_grant(
                http, server.endpoints.token, sent, server.client, dpop=key, deadline=deadline
            )
            received = tokens.issued()
            credentials = _refreshed_credentials(issued, tokens, key, server, platform)
            with cancel.shielded():  # the old refresh token may be spent: these are the only ones
                platform.mask(credentials.secrets())
                rewrite_credentials(file, credentials.named())
        except BaseException as failure:
            # Only a failure loads the login's flow (and its configuration library).
            from ci_shark.flow import issued_before, revoke_after_failure  # noqa: PLC0415

            lost = received or issued_before(failure)
            revoke_after_failure(
                failure,
                # A refresh token sent back unrotated is the one still saved: never revoked.
                [(token, hint) for token, hint in lost if token != sent],
                lambda tokens: _revoked(http, server, tokens, key),
            )
            raise
    platform.log(f"ci_shark: wrote {file} (mode 0600)")
    return Issued({name: reveal(value) for name, value in credentials.named().items()}, file)


def _refreshed_credentials(
    issued: Issued, tokens: TokenSet, key: DPoPKey | None, server: Server, platform: Platform
) -> Credentials:
    if tokens.refresh_token is None:  # not rotated: the old one stays valid
        tokens = replace(tokens, refresh_token=issued.secret("SHARK_REFRESH_TOKEN"))
    if issued.is_dpop_bound and not tokens.is_dpop_bound:
        platform.warn(f"the refreshed token is {tokens.token_type}, no longer DPoP-bound")
    return Credentials(
        tokens=tokens,
        dpop_key=key,
        dpop_key_file=issued.text("SHARK_DPOP_KEY_FILE"),
        approver=issued.text("SHARK_APPROVER"),
        auth_url=server.auth_url,
        client_id=server.client.client_id,
        token_endpoint=server.endpoints.token,
        revocation_endpoint=server.endpoints.revocation,
        client_auth=server.client.method,
        workload_identity_audience=server.assertions.audience if server.assertions else None,
    )


def _revoked(
    http: OAuthHttp, server: Server, tokens: list[tuple[Secret, str]], key: DPoPKey | None
) -> bool:
    """Revoke ``tokens`` within a budget of their own; True when every one went."""
    endpoint = server.endpoints.revocation
    if endpoint is None:
        return False
    deadline = time.monotonic() + REVOKE_BUDGET_S
    results = revoke_each(http, endpoint, tokens, server.client, dpop=key, deadline=deadline)
    return not any(results.values())


__all__ = [
    "Issued",
    "ProofFor",
    "Server",
    "find_server",
    "load_issued",
    "proof",
    "refresh",
]
