"""The login's token on the requests of a later command, kept fresh: the one place that
decides when a token is refreshed, for `request`, `proxy` and :func:`ci_shark.session`.

:class:`LiveCredentials` holds what a login issued. Its rules:

- The token is refreshed **before** it expires: a request that finds it within
  ``EXPIRY_MARGIN_S`` of its expiry (or half its lifetime, for a token that lives less
  than twice that) waits for a refresh first (:func:`ci_shark.commands.refresh`: the
  login's refresh token and the same key, locked, re-read, written back where the
  credentials came from), one thread at a time. The expiry of a token read from the
  credentials is their ``SHARK_EXPIRES_AT``; of one a refresh brought, the moment it
  arrived plus its ``expires_in`` (``SHARK_EXPIRES_AT`` counts whole seconds), unless
  its ``SHARK_EXPIRES_AT`` is sooner: tokens another process refreshed earlier, read
  back from the file.
- An API that calls the token ``invalid_token`` gets it refreshed once, unless a refresh
  of this process brought that token (then the API refuses the grant, not an old token):
  a request is sent twice at most, and a `request` refreshes once at most.
- A refresh that fails raises once; until ``REFRESH_RETRY_S`` later the credentials are
  used as they are (the API says what it thinks of them) instead of one refresh per
  request.

:class:`LoginTokenAuth` is the ``httpx.Auth`` flow on top: ``Authorization: DPoP`` with a
fresh proof and the origin's newest nonce, one retry on ``use_dpop_nonce``
(:class:`~ci_shark.oauth.dpop_auth.DPoPAuth`), or ``Bearer`` as the token type says; then
the one retry with a refreshed token. A body streamed on (not held in memory) is never
sent twice: its challenge goes back to the caller. A token goes only to a URL the URL
rule accepts (https, or plain http to a loopback host).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import httpx

from ci_shark.errors import CiSharkError, ConfigError, ProtocolError
from ci_shark.issued import Issued
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.dpop_auth import DPoPAuth, NonceMemory
from ci_shark.safe_text import untrusted
from ci_shark.secret import Secret
from ci_shark.urls import origin, url_problem

if TYPE_CHECKING:
    from ci_shark.later_settings import ServerSettings
    from ci_shark.platforms.base import Platform

EXPIRY_MARGIN_S = 30.0  # a token this close to its expiry may die in flight: refresh it
REFRESH_RETRY_S = 10.0

Flow = Generator[httpx.Request, httpx.Response, httpx.Response]


class LiveCredentials:
    """A login's credentials, refreshed when they are due (see the module's rules).
    ``refresh`` is :func:`ci_shark.commands.refresh` bound to the command's settings and
    platform (:meth:`of_command`); ``now`` and ``clock`` are injected by tests."""

    def __init__(
        self,
        issued: Issued,
        refresh: Callable[[Issued], Issued],
        *,
        log: Callable[[str], None],
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issued = issued
        self._refresh = refresh
        self._log = log
        self._now = now
        self._clock = clock
        self._lock = threading.Lock()
        self._due_at = self._due_from_file(issued)
        self._key: DPoPKey | None = None
        self._from_refresh = False  # the current token came from a refresh of ours
        self._retry_at: float | None = None  # after a failed refresh

    @classmethod
    def of_command(
        cls, issued: Issued, settings: ServerSettings, platform: Platform
    ) -> LiveCredentials:
        def refresh(due: Issued) -> Issued:
            from ci_shark.commands import refresh  # noqa: PLC0415 (only a refresh pays for it)

            return refresh(due, settings, platform)

        return cls(issued, refresh, log=platform.log)

    @property
    def issued(self) -> Issued:
        return self._issued

    @property
    def refreshable(self) -> bool:
        return self._issued.secret("SHARK_REFRESH_TOKEN") is not None

    def current(self) -> Issued:
        """The credentials to send now: refreshed first when the token is about to expire."""
        with self._lock:
            if self._due_at is not None and self._clock() >= self._due_at and self._may_refresh():
                expires = self._issued.expires_at()
                when = "has expired" if expires and self._now() >= expires else "expires soon"
                where = self._issued.where
                self._log(f"ci_shark: the access token in {where} {when}; refreshing it")
                self._refreshed()
            return self._issued

    def renewed_after(self, rejected: Issued) -> Issued | None:
        """The API called ``rejected``'s token invalid: newer credentials to try once, or
        None (nothing newer can be had)."""
        with self._lock:
            if rejected.secret("SHARK_ACCESS_TOKEN") != self._issued.secret("SHARK_ACCESS_TOKEN"):
                return self._issued  # another request refreshed it meanwhile
            if self._from_refresh or not self._may_refresh():
                return None
            self._log("ci_shark: the API says the token is no longer valid; refreshing it")
            self._refreshed()
            return self._issued

    def check(self) -> None:
        """Raise now what the first request would: no token to send, or no key to sign
        with (for a command that serves many requests, before it says it is ready)."""
        token_of(self._issued)
        if self._issued.is_dpop_bound:
            self.dpop_key()

    def dpop_key(self) -> DPoPKey:
        """The login's key (a refresh keeps it), loaded once."""
        if self._key is None:
            key = self._issued.dpop_key()
            if key is None:
                raise ConfigError(
                    f"the token in {self._issued.where} is DPoP-bound but its key is not there",
                    hint="keep SHARK_DPOP_KEY_FILE or SHARK_DPOP_JWK next to the token",
                )
            self._key = key
        return self._key

    def _may_refresh(self) -> bool:
        waiting = self._retry_at is not None and self._clock() < self._retry_at
        return self.refreshable and not waiting

    def _refreshed(self) -> None:
        try:
            self._issued = self._refresh(self._issued)
        except CiSharkError:
            self._retry_at = self._clock() + REFRESH_RETRY_S
            raise
        self._retry_at = None
        self._from_refresh = True
        lifetime_s = self._issued.expires_in_s()
        by_expiry = self._due_from_file(self._issued)
        if lifetime_s is None:
            self._due_at = by_expiry
        else:
            by_lifetime = self._clock() + lifetime_s - _margin_s(lifetime_s)
            self._due_at = by_lifetime if by_expiry is None else min(by_lifetime, by_expiry)

    def _due_from_file(self, issued: Issued) -> float | None:
        """When the token of ``issued`` is due for a refresh, on ``clock``; None: never."""
        expires = issued.expires_at()
        if expires is None:
            return None
        left_s = (expires - self._now()).total_seconds()
        return self._clock() + left_s - _margin_s(issued.expires_in_s())


class LoginTokenAuth(httpx.Auth):
    """The login's token and, for a DPoP-bound one, a fresh proof on every request; the
    nonce and refresh retries of the module's rules. ``nonces`` is the client's memory."""

    def __init__(
        self, live: LiveCredentials, nonces: NonceMemory, *, only_origin: str | None = None
    ) -> None:
        self._live = live
        self._nonces = nonces
        self._only_origin = only_origin  # the one origin the token may go to, if pinned

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield from self._flow(request)

    def _flow(self, request: httpx.Request) -> Flow:
        problem = url_problem(str(request.url))
        if problem is None and self._only_origin not in (None, origin(str(request.url))):
            problem = f"is not on {untrusted(self._only_origin)}, the session's base_url"
        if problem:
            raise ProtocolError(
                f"not sending the login's token to {untrusted(request.url)}: the URL {problem}"
            )
        replayable = isinstance(request.stream, httpx.ByteStream)  # a body held in memory
        issued = self._live.current()
        response = yield from self._signed(issued, request)
        if not (replayable and invalid_token(response)):
            return response
        renewed = self._live.renewed_after(issued)
        if renewed is None:
            return response
        retry = httpx.Request(
            request.method,
            request.url,
            headers=request.headers,
            content=request.read(),
            extensions=request.extensions,
        )
        return (yield from self._signed(renewed, retry))

    def _signed(self, issued: Issued, request: httpx.Request) -> Flow:
        """``request`` with ``issued``'s token, through DPoP's own flow for a bound one;
        the last answer."""
        token = token_of(issued)
        if not issued.is_dpop_bound:
            request.headers["Authorization"] = f"Bearer {token.reveal()}"
            return (yield request)
        flow = DPoPAuth(self._live.dpop_key(), self._nonces, token).auth_flow(request)
        sent = next(flow)
        while True:
            response = yield sent
            try:
                sent = flow.send(response)
            except StopIteration:
                return response


def token_of(issued: Issued) -> Secret:
    token = issued.secret("SHARK_ACCESS_TOKEN")
    if token is None:
        raise ConfigError(
            f"no access token in {issued.where}",
            hint="map SHARK_ACCESS_TOKEN into this step, or pass `--credentials FILE`",
        )
    return token


def _margin_s(lifetime_s: float | None) -> float:
    return EXPIRY_MARGIN_S if lifetime_s is None else min(EXPIRY_MARGIN_S, lifetime_s / 2)


def invalid_token(response: httpx.Response) -> bool:
    """A resource's ``401`` calling the token invalid (RFC 6750 §3.1, RFC 9449 §7.1)."""
    challenge = response.headers.get("www-authenticate", "")
    return response.status_code == 401 and 'error="invalid_token"' in challenge
