"""`ci-shark revoke`: end what a login issued (RFC 7009), as the job's always-run last step.

Its rules:

1. The refresh token (the grant) first, then the access token, each even when the other
   fails, at the server recorded with them (:func:`ci_shark.commands.find_server`), all
   within `--max-time`: a server that is gone must not hold the job's last step.
2. A refresh in flight is waited for (within the same `--max-time`): revoke takes the lock
   :func:`ci_shark.commands.refresh` takes beside the file it writes, and reads that file
   again under it. Every token it saw is then revoked, the newest first: a refresh that
   rotated the tokens after they were read would else save a grant nobody revokes.
3. A server that names no revocation endpoint (GitHub, Entra ID) is a warning that says
   until when the tokens stay valid, and the command succeeds: the always-run last step
   cannot change the server, and failing it would fail every job that uses one.
4. Once nothing more can be done at the server (revoked, or it cannot revoke), our own files
   go: the key file ci_shark wrote, and the default credentials file (never one the user
   named with `--credentials`). A DPoP-bound token is useless without its key. A failed
   revocation keeps them, so that the step can be run again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from ci_shark.commands import REVOKE_BUDGET_S, at_server
from ci_shark.errors import CiSharkError, ConfigError
from ci_shark.issued import Issued, mask_issued
from ci_shark.oauth.tokens import revocable, revoke_each
from ci_shark.outputs import lock_file, locked_beside
from ci_shark.platforms.base import Platform
from ci_shark.safe_text import untrusted

if TYPE_CHECKING:
    from ci_shark.later_settings import ServerSettings
    from ci_shark.oauth.http import OAuthHttp
    from ci_shark.oauth.tokens import Client


def revoke(
    issued: Issued,
    settings: ServerSettings,
    platform: Platform,
    *,
    credentials_flag: bool,
    max_time_s: float = REVOKE_BUDGET_S,
) -> None:
    """Revoke ``issued``'s tokens and then remove our own files, by the module's rules;
    ``credentials_flag``: the user named the file (`--credentials`), which then stays."""
    mask_issued(issued, platform)
    if not issued.holds_token:  # nor can a refresh bring any: it needs a refresh token
        platform.log("ci_shark: nothing to revoke (no access or refresh token)")
        return
    deadline = time.monotonic() + max_time_s
    with _refreshes_held_off(issued, platform, wait_s=max_time_s) as seen:
        _revoke_at_server(seen, settings, platform, deadline)
        _remove_own_files(issued, platform, credentials_flag=credentials_flag)


@contextmanager
def _refreshes_held_off(
    issued: Issued, platform: Platform, *, wait_s: float
) -> Iterator[list[Issued]]:
    """Every set of tokens to revoke, newest first, with refreshes held off for the block
    (rule 2). Where no lock can be made (a folder we cannot write to), no refresh can
    write either."""
    try:
        file: Path | None = issued.file or platform.output_path()
    except ConfigError:  # no private folder to be had: nothing was refreshed into one
        file = None
    with ExitStack() as held:
        if file is not None:
            try:
                held.enter_context(locked_beside(file, wait_s=wait_s))
            except ConfigError:
                file = None
        newer = _rewritten(issued, file) if file is not None else None
        if newer is None:
            yield [issued]
            return
        mask_issued(newer, platform)
        platform.log(f"ci_shark: {file} was refreshed meanwhile: revoking its new tokens too")
        yield [newer, issued]


def _rewritten(issued: Issued, file: Path) -> Issued | None:
    """``file`` read again under the lock, when it holds other tokens than ``issued``: a
    refresh rotated them since. Variables are never shadowed by another grant's file."""
    if not file.is_file():
        return None
    try:
        now = Issued.read(file)
    except ConfigError:
        return None  # unreadable now: what was read is what there is
    if not now.holds_token or now.same_tokens(issued):
        return None
    if issued.file is None and not issued.same_grant(now):
        return None
    return now


def _revoke_at_server(
    seen: list[Issued], settings: ServerSettings, platform: Platform, deadline: float
) -> None:
    """Revoke the tokens of ``seen`` (one grant's, newest first) at its server, found once
    (rule 1): each is tried, the first failure raised; a warning when the server cannot
    revoke (rule 3), which the newest tokens' expiry bounds."""
    newest = seen[0]
    with at_server(newest, settings, platform, deadline) as (http, server):
        endpoint = server.endpoints.revocation
        if endpoint is None:
            platform.warn(_cannot_revoke(newest, server.auth_url))
            return
        failures = [
            failure
            for issued in seen
            for failure in _revoke_tokens(
                issued, platform, http, server.client, endpoint=endpoint, deadline=deadline
            )
        ]
    if failures:
        raise failures[0]


def _revoke_tokens(
    issued: Issued,
    platform: Platform,
    http: OAuthHttp,
    client: Client,
    *,
    endpoint: str,
    deadline: float,
) -> list[CiSharkError]:
    """Revoke ``issued``'s tokens, the grant first, each even when the other fails; each
    revoked one said, the failures returned."""
    tokens = revocable(
        refresh_token=issued.secret("SHARK_REFRESH_TOKEN"),
        access_token=issued.secret("SHARK_ACCESS_TOKEN"),
    )
    try:
        key = issued.dpop_key()
    except ConfigError as unreadable:
        # Revocation does not need a proof: a lost key must not leave the tokens alive.
        platform.warn(f"revoking without a DPoP proof: {unreadable.message}")
        key = None
    results = revoke_each(http, endpoint, tokens, client, dpop=key, deadline=deadline)
    for hint, failure in results.items():
        if failure is None:
            platform.log(f"ci_shark: revoked the {hint.replace('_', ' ')}")
    return [failure for failure in results.values() if failure is not None]


def _cannot_revoke(issued: Issued, auth_url: str) -> str:
    """What a server without RFC 7009 leaves alive, and until when (rule 3)."""
    expires = issued.text("SHARK_EXPIRES_AT")
    alive = []
    if issued.secret("SHARK_ACCESS_TOKEN") is not None:
        until = untrusted(expires, 40) if expires else "the server ends it (none recorded)"
        alive.append(f"the access token until {until}")
    if issued.secret("SHARK_REFRESH_TOKEN") is not None:
        alive.append("the refresh token until the server ends the grant")
    return (
        f"{untrusted(auth_url, 200)} names no revocation endpoint (RFC 7009), so nothing "
        f"was revoked. They stay valid: {', '.join(alive)}. To end them sooner, revoke the "
        "app's access at the server"
    )


def _remove_own_files(issued: Issued, platform: Platform, *, credentials_flag: bool) -> None:
    """Our key file, and the credentials file (with its lock) when it is the one a login
    left by default (rule 4)."""
    key_file = issued.text("SHARK_DPOP_KEY_FILE")
    own = [Path(key_file)] if key_file and Path(key_file).name.startswith("ci-shark-dpop-") else []
    if issued.file is not None and not credentials_flag:
        own += [issued.file, lock_file(issued.file)]
    for path in own:
        with suppress(OSError):
            path.unlink()
            platform.log(f"ci_shark: removed {path}")


__all__ = ["revoke"]
