"""RFC 8628, the device authorization grant.

The protocol decisions live in :class:`Poller`, which does no I/O and reads time only
through the clock it is given, so every row of the RFC's state table is testable without
sleeping. :class:`DeviceFlow` drives it over HTTP, in the shape SharkAuth SDK users know:
``flow.begin()`` then ``flow.wait_for_approval(timeout_s=...)``; every way it fails is a
:class:`ci_shark.errors.DeviceFlowError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ci_shark.errors import (
    ConfigError,
    DeviceFlowError,
    DeviceFlowUnsupported,
    ExpiredToken,
    InvalidGrant,
    ProtocolError,
    TimedOut,
    TransportError,
    oauth_error,
)
from ci_shark.oauth.discovery import Endpoints, completed, discover
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import OAuthHttp, Reply, TransientFailure
from ci_shark.oauth.providers import PROVIDERS, Provider
from ci_shark.oauth.tokens import (
    Client,
    Token,
    TokenSet,
    parse_token_response,
    post_form,
    whole_seconds,
)
from ci_shark.oauth.verification import complete_uri_problem
from ci_shark.safe_text import untrusted
from ci_shark.secret import Secret
from ci_shark.units import duration
from ci_shark.urls import url_problem

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL_S = 5  # RFC 8628 §3.2, when the server sends none
SLOW_DOWN_STEP_S = 5  # RFC 8628 §3.5, and it stays added
# Servers judge the gap between polls by arrival time with no tolerance (SharkAuth's
# LastPolledAt check), so the next poll is timed from the previous send plus this margin.
POLL_MARGIN_S = 0.1
MIN_EXPIRES_IN_S = 2  # a code that lives less cannot be approved: a protocol error
MAX_EXPIRES_IN_S = 24 * 3600
MAX_INTERVAL_S = 3600
MAX_SLOW_DOWN_INTERVAL_S = 60  # a hostile server cannot stretch the wait past this per poll
MAX_USER_CODE_CHARS = 64
MAX_DEVICE_CODE_CHARS = 4096


@dataclass(frozen=True)
class DeviceAuthorization:
    """What ``begin()`` returns. ``device_code`` is a secret: only the poller sends it."""

    device_code: Secret
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int
    interval: int
    issued_at: float  # on the flow's clock
    # Why the server's verification_uri_complete is not shown (None: it is, or there was
    # none): it carries another code than user_code. The caller warns with it.
    link_warning: str | None = None

    @property
    def link(self) -> str:
        """The best link to show: the one with the code embedded, when the server gave it."""
        return self.verification_uri_complete or self.verification_uri


def _seconds(body: Mapping[str, Any], name: str, default: int | None, ceiling: int) -> int:
    value = whole_seconds(body.get(name, default))
    if value is None:
        raise DeviceFlowError(
            message=f"the device authorization response's {name} is not a whole number"
        )
    return min(value, ceiling)


def _verification_uri(body: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise DeviceFlowError(
                message=f"the device authorization response's {name} is not a string"
            )
        problem = url_problem(value)
        if problem:
            raise DeviceFlowError(
                message=f"the device authorization response's {name} {problem}: "
                f"{untrusted(value, 120)}",
                hint="an approval link must be https:// so the approver is not sent elsewhere",
            )
        return value
    return None


def parse_device_authorization(body: Mapping[str, Any], *, now: float) -> DeviceAuthorization:
    """Validate RFC 8628 §3.2 strictly: every field is shown to a human or sent back."""
    device_code = body.get("device_code")
    if not isinstance(device_code, str) or not 0 < len(device_code) <= MAX_DEVICE_CODE_CHARS:
        raise DeviceFlowError(message="the device authorization response has no valid device_code")
    # A secret from here on: any later message that quotes it is redacted.
    secret_code = Secret(device_code)
    user_code = body.get("user_code")
    if (
        not isinstance(user_code, str)
        or not 0 < len(user_code) <= MAX_USER_CODE_CHARS
        or not user_code.isprintable()
    ):
        raise DeviceFlowError(message="the device authorization response has no valid user_code")
    # Google spells it verification_url.
    uri = _verification_uri(body, "verification_uri", "verification_url")
    if uri is None:
        raise DeviceFlowError(message="the device authorization response has no verification_uri")
    complete = _verification_uri(body, "verification_uri_complete")
    link_warning = complete_uri_problem(complete, uri, user_code) if complete else None
    expires_in = _seconds(body, "expires_in", None, MAX_EXPIRES_IN_S)
    if expires_in < MIN_EXPIRES_IN_S:
        raise DeviceFlowError(
            message=f"the device code lives {expires_in}s (expires_in): too short for anyone "
            "to approve it",
            hint="the server's device code lifetime is misconfigured",
        )
    return DeviceAuthorization(
        device_code=secret_code,
        user_code=user_code,
        verification_uri=uri,
        verification_uri_complete=None if link_warning else complete,
        expires_in=expires_in,
        interval=max(1, _seconds(body, "interval", DEFAULT_INTERVAL_S, MAX_INTERVAL_S)),
        issued_at=now,
        link_warning=link_warning,
    )


def raise_for_device_authorization(
    reply: Reply, endpoint: str, source: str, *, note: str | None = None
) -> None:
    """The device authorization endpoint refused: say why, where we asked, and what looks
    wrong about where that address came from (its own line)."""
    if reply.error is None and reply.status in (404, 405, 501):
        raise DeviceFlowUnsupported(
            message="the authorization server does not offer the device flow: "
            f"{untrusted(endpoint, 200)} (from {source}) answered HTTP {reply.status}"
            + (f"\n{note}" if note else ""),
            hint="check `auth-url`; enable the device authorization grant (RFC 8628) for "
            "this server and client (SharkAuth's current release ships with it switched "
            "off); or set `device-authorization-endpoint` to the right URL",
        )
    if reply.error is not None:
        raise oauth_error(
            reply.error,
            reply.error_description,
            status_code=reply.status,
            endpoint="the device authorization endpoint",
            unknown=DeviceFlowError,
        )
    detail = f": {reply.text}" if reply.text else ""
    raise DeviceFlowError(
        message=f"the device authorization endpoint answered HTTP {reply.status} without an "
        f"OAuth error or a device code{detail}",
        hint="check `auth-url` and `device-authorization-endpoint`",
    )


class Poller:
    """When to poll next and what each answer means (RFC 8628 §3.4-3.5). No I/O."""

    def __init__(
        self,
        authorization: DeviceAuthorization,
        *,
        timeout_s: float,
        clock: Callable[[], float],
        provider: Provider = PROVIDERS["shark"],
    ) -> None:
        self.interval_s = authorization.interval
        started = clock()
        self.expiry = authorization.issued_at + authorization.expires_in
        self.limited_by_timeout = started + timeout_s < self.expiry
        self.deadline = min(started + timeout_s, self.expiry)
        self._timeout_s = timeout_s
        self.clock = clock
        self._provider = provider
        self._next_poll_at = authorization.issued_at + self.interval_s + POLL_MARGIN_S
        self.polls = 0

    def next_poll_at(self) -> float:
        return self._next_poll_at

    def out_of_time(self) -> DeviceFlowError:
        if self.polls == 0:
            left = max(0.0, self.deadline - self.clock())
            return (TimedOut if self.limited_by_timeout else ExpiredToken)(
                message=f"the server asks for {self.interval_s}s between polls, more than the "
                f"{left:.0f}s left to approve: no poll could be sent",
                hint="raise `timeout`, or ask the server's admin for a shorter polling "
                "interval or a longer device code lifetime",
            )
        if self.limited_by_timeout:
            return TimedOut(
                message=f"timeout: not approved within {duration(self._timeout_s)}",
                hint="approve sooner, or raise `timeout`",
            )
        return ExpiredToken(message="expired: the device code expired before it was approved")

    def sent(self, at: float) -> None:
        """A poll went out at ``at``: the next one may not leave before ``at + interval``."""
        self.polls += 1
        self._next_poll_at = at + self.interval_s + POLL_MARGIN_S

    def failed(self, failure: TransientFailure) -> None:
        """A poll failed in transit: keep polling, no faster than the server allows."""
        if failure.retry_after_s is not None:
            not_before = self.clock() + failure.retry_after_s
            self._next_poll_at = max(self._next_poll_at, not_before)

    def decide(self, reply: Reply) -> TokenSet | None:
        """A token on approval, None to keep waiting; raises when the flow is over."""
        error = reply.error
        if error is None and reply.status == 200 and reply.body is not None:
            return parse_token_response(reply.body)
        if error == "authorization_pending":
            return None
        if error == "slow_down":
            # RFC 8628: +5 s for good. GitHub also names the new interval: take the larger.
            named = whole_seconds(reply.body.get("interval")) if reply.body else None
            grown = self.interval_s + SLOW_DOWN_STEP_S
            if named is not None:
                grown = max(grown, min(named, MAX_SLOW_DOWN_INTERVAL_S))
            self._next_poll_at += grown - self.interval_s
            self.interval_s = grown
            return None
        if error is None:
            detail = f": {reply.text}" if reply.text else ""
            raise DeviceFlowError(
                message=f"the token endpoint answered HTTP {reply.status} with neither a "
                f"token nor an OAuth error{detail}"
            )
        failure = oauth_error(
            error,
            reply.error_description,
            status_code=reply.status,
            endpoint="the approver" if error == "access_denied" else "the token endpoint",
            unknown=DeviceFlowError,
        )
        if (
            isinstance(failure, InvalidGrant)
            and self._provider.invalid_grant_when_expired
            and self.clock() >= self.expiry - self.interval_s - SLOW_DOWN_STEP_S
        ):
            # Auth0 answers expired_token once, then invalid_grant: if that one answer was
            # lost in transit, this is the expiry it would have said.
            raise ExpiredToken(error, reply.error_description, status_code=reply.status)
        raise failure


@contextmanager
def _as_device_flow_error() -> Iterator[None]:
    """The library's promise: every failure of the flow is a DeviceFlowError (with its
    own exit code and status kept for the CLI)."""
    try:
        yield
    except DeviceFlowError:
        raise
    except (ProtocolError, TransportError) as failure:
        raise DeviceFlowError.wrapping(failure) from None


class DeviceFlow:
    """The device flow as a library: discovery, the device code, polling, the token."""

    def __init__(
        self,
        auth_url: str,
        client_id: str,
        scope: str | None = None,
        *,
        client_secret: str | Secret | None = None,
        client_assertion: Callable[[], Secret] | None = None,
        dpop_prover: DPoPKey | None = None,
        resource: Sequence[str] = (),
        extra_params: Mapping[str, str] | None = None,
        device_authorization_endpoint: str | None = None,
        token_endpoint: str | None = None,
        provider: Provider = PROVIDERS["shark"],
        http: OAuthHttp | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        problem = url_problem(auth_url)
        if problem:
            raise ConfigError(f"auth_url {problem}", hint="use the server's https:// base URL")
        self.auth_url = auth_url
        self.client_id = client_id
        self.scope = scope
        self.client_secret = (
            Secret(client_secret) if isinstance(client_secret, str) else client_secret
        )
        # RFC 7523: a fresh assertion from this source for each request (a CI's OIDC token).
        self.client_assertion = client_assertion
        self.dpop = dpop_prover
        self.resource = tuple(resource)
        self.extra_params = dict(extra_params or {})
        self._overrides = (device_authorization_endpoint, token_endpoint)
        self.provider = provider
        self._owns_http = http is None
        self.http = http or OAuthHttp(clock=clock, sleep=sleep)
        self.clock = clock
        self.sleep = sleep
        self._endpoints: Endpoints | None = None
        self._completed = False
        self.authorization: DeviceAuthorization | None = None

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> DeviceFlow:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def issuer(self) -> str:
        """Who issues our tokens: the metadata's issuer, else `auth-url`."""
        return (self._endpoints.issuer if self._endpoints else None) or self.auth_url

    def endpoints(self, *, deadline: float | None = None) -> Endpoints:
        if self._endpoints is None:
            self._endpoints = discover(
                self.http,
                self.auth_url,
                deadline=deadline if deadline is not None else self.clock() + 60,
                device_authorization_endpoint=self._overrides[0],
                token_endpoint=self._overrides[1],
                provider=self.provider,
            )
        return self._endpoints

    def userinfo_endpoint(self, *, deadline: float) -> str | None:
        """Where to ask who approved: the metadata's userinfo, looked up after approval."""
        return self.endpoints_after_approval(deadline=deadline).userinfo

    def endpoints_after_approval(self, *, deadline: float) -> Endpoints:
        """:meth:`endpoints`, with userinfo and revocation looked up in the metadata when
        explicit inputs skipped it (after approval, so off the path to the link)."""
        if not self._completed:
            self._endpoints = completed(
                self.http,
                self.auth_url,
                self.endpoints(deadline=deadline),
                deadline=deadline,
                provider=self.provider,
            )
            self._completed = True
        return self.endpoints()

    def client(self) -> Client:
        """Us, to the token endpoint: the client id and how it authenticates."""
        auth = self.endpoints().client_auth
        return Client(self.client_id, self.client_secret, auth, assertion=self.client_assertion)

    def begin(self, *, deadline: float | None = None) -> DeviceAuthorization:
        """Request a device code (RFC 8628 §3.1-3.2)."""
        with _as_device_flow_error():
            deadline = deadline if deadline is not None else self.clock() + 60
            endpoints = self.endpoints(deadline=deadline)
            endpoint = endpoints.device_authorization
            assert endpoint is not None  # discover() raises when there is none
            form: dict[str, Any] = dict(self.extra_params)
            if self.scope:
                form["scope"] = self.scope
            if self.resource:
                form["resource"] = list(self.resource)
            reply = post_form(
                self.http, endpoint, form, self.client(), dpop=None, deadline=deadline
            )
            if reply.status != 200 or reply.error is not None or reply.body is None:
                raise_for_device_authorization(
                    reply, endpoint, endpoints.source, note=endpoints.note
                )
            assert reply.body is not None
            self.authorization = parse_device_authorization(reply.body, now=self.clock())
            return self.authorization

    def poll_once(self, authorization: DeviceAuthorization, *, deadline: float) -> Reply:
        """One token request. Pacing is the caller's: see :meth:`wait_for_approval`."""
        form: dict[str, Any] = {
            "grant_type": DEVICE_CODE_GRANT,
            "device_code": authorization.device_code,
        }
        return post_form(
            self.http,
            self.endpoints().token,
            form,
            self.client(),
            dpop=self.dpop,
            deadline=deadline,
            retry=False,
        )

    def poll(self, timeout_s: float, *, on_wait: Callable[[float], None] | None = None) -> TokenSet:
        """Poll until approval and return the tokens as ci_shark keeps them (secrets as
        :class:`Secret`); raises a DeviceFlowError that says why not."""
        authorization = self.authorization
        if authorization is None:
            raise RuntimeError("call begin() before wait_for_approval()")
        with _as_device_flow_error():
            poller = Poller(
                authorization, timeout_s=timeout_s, clock=self.clock, provider=self.provider
            )
            while True:
                poll_at = poller.next_poll_at()
                if poll_at >= poller.deadline:
                    raise poller.out_of_time()
                if on_wait is not None:
                    on_wait(poller.deadline - self.clock())
                delay_s = poll_at - self.clock()
                if delay_s > 0:
                    self.sleep(delay_s)
                sent_at = self.clock()
                if sent_at >= poller.deadline:  # a slow answer can carry us past it
                    raise poller.out_of_time()
                poller.sent(sent_at)
                try:
                    reply = self.poll_once(authorization, deadline=poller.deadline)
                except TransientFailure as failure:
                    poller.failed(failure)
                    continue
                token = poller.decide(reply)
                if token is not None:
                    return token

    def wait_for_approval(
        self, timeout_s: float = 600, *, on_wait: Callable[[float], None] | None = None
    ) -> Token:
        """Poll until approval (the SharkAuth SDK's call); raises AccessDenied,
        ExpiredToken, TimedOut, … — all DeviceFlowError. ``on_wait(seconds_left)`` is
        called before each wait, for progress reporting."""
        return Token.from_token_set(self.poll(timeout_s, on_wait=on_wait), self.dpop)
