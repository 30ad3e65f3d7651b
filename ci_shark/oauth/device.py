"""RFC 8628, the device authorization grant.

The protocol decisions live in :class:`Poller`, which does no I/O and reads time only
through the clock it is given, so every row of the RFC's state table is testable without
sleeping. :class:`DeviceFlow` drives it over HTTP, in the shape SharkAuth SDK users know:
``flow.begin()`` then ``flow.wait_for_approval(timeout_s=...)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ci_shark.errors import (
    AccessDenied,
    ConfigError,
    DeviceFlowError,
    DeviceFlowUnsupported,
    ExpiredToken,
    ProtocolError,
    TimedOut,
    untrusted,
)
from ci_shark.oauth.discovery import Endpoints, completed, discover
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import OAuthHttp, Reply, TransientFailure
from ci_shark.oauth.providers import PROVIDERS, Provider
from ci_shark.oauth.tokens import TokenSet, parse_token_response
from ci_shark.secret import Secret
from ci_shark.urls import url_problem

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL_S = 5  # RFC 8628 §3.2, when the server sends none
SLOW_DOWN_STEP_S = 5  # RFC 8628 §3.5, and it stays added
# Servers judge the gap between polls by arrival time with no tolerance (SharkAuth's
# LastPolledAt check), so the next poll is timed from the previous send plus this margin.
POLL_MARGIN_S = 0.1
MAX_EXPIRES_IN_S = 24 * 3600
MAX_SLOW_DOWN_INTERVAL_S = 60  # a hostile server cannot stretch the wait past this per poll
MAX_USER_CODE_CHARS = 64
MAX_DEVICE_CODE_CHARS = 4096

# What other servers call the RFC's outcomes (Entra ID, GitHub).
_DENIED = frozenset({"access_denied", "authorization_declined"})
_EXPIRED = frozenset({"expired_token", "code_expired"})
_UNSUPPORTED = frozenset({"unsupported_grant_type", "device_flow_disabled"})


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

    @property
    def link(self) -> str:
        """The best link to show: the one with the code embedded, when the server gave it."""
        return self.verification_uri_complete or self.verification_uri


def _whole_seconds(body: Mapping[str, Any], name: str, default: int | None) -> int:
    value = body.get(name, default)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"the device authorization response's {name} is not a whole number")
    return value


def _verification_uri(body: Mapping[str, Any], *names: str) -> str | None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ProtocolError(f"the device authorization response's {name} is not a string")
        problem = url_problem(value)
        if problem:
            raise ProtocolError(
                f"the device authorization response's {name} {problem}: {untrusted(value, 120)}",
                hint="an approval link must be https:// so the approver is not sent elsewhere",
            )
        return value
    return None


def parse_device_authorization(body: Mapping[str, Any], *, now: float) -> DeviceAuthorization:
    """Validate RFC 8628 §3.2 strictly: every field is shown to a human or sent back."""
    device_code = body.get("device_code")
    if not isinstance(device_code, str) or not 0 < len(device_code) <= MAX_DEVICE_CODE_CHARS:
        raise ProtocolError("the device authorization response has no valid device_code")
    user_code = body.get("user_code")
    if (
        not isinstance(user_code, str)
        or not 0 < len(user_code) <= MAX_USER_CODE_CHARS
        or not user_code.isprintable()
    ):
        raise ProtocolError("the device authorization response has no valid user_code")
    # Google spells it verification_url.
    uri = _verification_uri(body, "verification_uri", "verification_url")
    if uri is None:
        raise ProtocolError("the device authorization response has no verification_uri")
    expires_in = _whole_seconds(body, "expires_in", None)
    if expires_in == 0:
        raise ProtocolError("the device authorization response's expires_in is 0")
    return DeviceAuthorization(
        device_code=Secret(device_code),
        user_code=user_code,
        verification_uri=uri,
        verification_uri_complete=_verification_uri(body, "verification_uri_complete"),
        expires_in=min(expires_in, MAX_EXPIRES_IN_S),
        interval=max(1, _whole_seconds(body, "interval", DEFAULT_INTERVAL_S)),
        issued_at=now,
    )


def raise_for_device_authorization(reply: Reply) -> None:
    """The device authorization endpoint refused: say why, plainly."""
    error = reply.error
    if reply.status in (404, 405, 501) or error in _UNSUPPORTED:
        raise DeviceFlowUnsupported(
            "the authorization server does not offer the device flow: its device authorization "
            f"endpoint answered HTTP {reply.status}"
            + (f" {untrusted(error, 80)}" if error else ""),
            hint="enable the device authorization grant (RFC 8628) for this server and client "
            "(SharkAuth's current release ships with it switched off), or point "
            "`device-authorization-endpoint` at the right URL",
        )
    if error in ("invalid_client", "unauthorized_client"):
        raise ConfigError(
            f"the authorization server refused the client: {untrusted(error, 80)}"
            + (f": {untrusted(reply.error_description)}" if reply.error_description else ""),
            hint="check `client-id` (CI_SHARK_CLIENT_ID) and `client-secret`, and that the "
            "client may use the device authorization grant",
        )
    if error is not None:
        raise DeviceFlowError(
            error,
            reply.error_description,
            status_code=reply.status,
            endpoint="the device authorization endpoint",
        )
    raise ProtocolError(
        f"the device authorization endpoint answered HTTP {reply.status} without an OAuth "
        "error or a device code"
    )


class Poller:
    """When to poll next and what each answer means (RFC 8628 §3.4-3.5). No I/O."""

    def __init__(
        self,
        authorization: DeviceAuthorization,
        *,
        timeout_s: float,
        clock: Callable[[], float],
    ) -> None:
        self.interval_s = authorization.interval
        started = clock()
        expiry = authorization.issued_at + authorization.expires_in
        self.limited_by_timeout = started + timeout_s < expiry
        self.deadline = min(started + timeout_s, expiry)
        self._timeout_s = timeout_s
        self._clock = clock
        self._next_poll_at = authorization.issued_at + self.interval_s + POLL_MARGIN_S
        self.polls = 0

    def next_poll_at(self) -> float:
        return self._next_poll_at

    def out_of_time(self) -> DeviceFlowError:
        if self.limited_by_timeout:
            return TimedOut(
                "timeout",
                message=f"timeout: not approved within {self._timeout_s:g}s",
                hint="approve sooner, or raise `timeout` (CI_SHARK_TIMEOUT)",
            )
        return ExpiredToken(
            "expired_token",
            message="expired: the device code expired before it was approved",
            hint="re-run the job and approve before the code expires",
        )

    def sent(self, at: float) -> None:
        """A poll went out at ``at``: the next one may not leave before ``at + interval``."""
        self.polls += 1
        self._next_poll_at = at + self.interval_s + POLL_MARGIN_S

    def failed(self, failure: TransientFailure) -> None:
        """A poll failed in transit: keep polling, no faster than the server allows."""
        if failure.retry_after_s is not None:
            not_before = self._clock() + failure.retry_after_s
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
            named = reply.body.get("interval") if reply.body else None
            grown = self.interval_s + SLOW_DOWN_STEP_S
            if isinstance(named, int) and not isinstance(named, bool):
                grown = max(grown, min(named, MAX_SLOW_DOWN_INTERVAL_S))
            self._next_poll_at += grown - self.interval_s
            self.interval_s = grown
            return None
        description = reply.error_description
        if error in _DENIED:
            raise AccessDenied(
                error, description, status_code=reply.status, endpoint="the approver"
            )
        if error in _EXPIRED:
            raise ExpiredToken(
                error,
                description,
                status_code=reply.status,
                endpoint="the token endpoint",
                hint="re-run the job and approve before the code expires",
            )
        if error in _UNSUPPORTED:
            raise DeviceFlowUnsupported(
                "the token endpoint does not accept the device_code grant "
                f"({untrusted(error, 80)})",
                hint="enable the device authorization grant for this client on the server",
            )
        if error in ("invalid_client", "unauthorized_client"):
            raise ConfigError(
                f"the token endpoint refused the client: {untrusted(error, 80)}",
                hint="check `client-id` and `client-secret` (CI_SHARK_CLIENT_ID/SECRET)",
            )
        if error == "invalid_grant":
            raise DeviceFlowError(
                error,
                description,
                status_code=reply.status,
                endpoint="the token endpoint",
                hint="the device code is no longer valid; if an answer was lost in transit the "
                "server may have spent it on a token we never received: re-run the job",
            )
        if error is not None:
            raise DeviceFlowError(
                error, description, status_code=reply.status, endpoint="the token endpoint"
            )
        raise ProtocolError(
            f"the token endpoint answered HTTP {reply.status} with neither a token nor an "
            "OAuth error"
        )


class DeviceFlow:
    """The device flow as a library: discovery, the device code, polling, the token."""

    def __init__(
        self,
        auth_url: str,
        client_id: str,
        scope: str | None = None,
        *,
        client_secret: str | Secret | None = None,
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
            Secret(client_secret) if isinstance(client_secret, str) else (client_secret)
        )
        self.dpop = dpop_prover
        self.resource = tuple(resource)
        self.extra_params = dict(extra_params or {})
        self._overrides = (device_authorization_endpoint, token_endpoint)
        self.provider = provider
        self._owns_http = http is None
        self.http = http or OAuthHttp(clock=clock, sleep=sleep)
        self._clock = clock
        self._sleep = sleep
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

    def endpoints(self, *, deadline: float | None = None) -> Endpoints:
        if self._endpoints is None:
            self._endpoints = discover(
                self.http,
                self.auth_url,
                deadline=deadline if deadline is not None else self._clock() + 60,
                device_authorization_endpoint=self._overrides[0],
                token_endpoint=self._overrides[1],
                provider=self.provider,
            )
        return self._endpoints

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

    def _client_auth(
        self, form: dict[str, str | Secret | Sequence[str]]
    ) -> tuple[str, Secret] | None:
        """Client authentication: HTTP Basic when the server advertises it, else the form."""
        if self.client_secret is not None and self.endpoints().supports_client_secret_basic:
            return (self.client_id, self.client_secret)
        form["client_id"] = self.client_id
        if self.client_secret is not None:
            form["client_secret"] = self.client_secret
        return None

    def begin(self, *, deadline: float | None = None) -> DeviceAuthorization:
        """Request a device code (RFC 8628 §3.1-3.2)."""
        deadline = deadline if deadline is not None else self._clock() + 60
        endpoint = self.endpoints(deadline=deadline).device_authorization
        assert endpoint is not None  # discover() raises when there is none
        form: dict[str, str | Secret | Sequence[str]] = dict(self.extra_params)
        if self.scope:
            form["scope"] = self.scope
        if self.resource:
            form["resource"] = list(self.resource)
        basic_auth = self._client_auth(form)
        reply = self.http.request(
            "POST", endpoint, form=form, basic_auth=basic_auth, deadline=deadline
        )
        if reply.status != 200 or reply.error is not None or reply.body is None:
            raise_for_device_authorization(reply)
        assert reply.body is not None
        self.authorization = parse_device_authorization(reply.body, now=self._clock())
        return self.authorization

    def poll_once(self, authorization: DeviceAuthorization, *, deadline: float) -> Reply:
        """One token request. Pacing is the caller's: see :meth:`wait_for_approval`."""
        form: dict[str, str | Secret | Sequence[str]] = {
            "grant_type": DEVICE_CODE_GRANT,
            "device_code": authorization.device_code,
        }
        basic_auth = self._client_auth(form)
        return self.http.request(
            "POST",
            self.endpoints().token,
            form=form,
            dpop=self.dpop,
            basic_auth=basic_auth,
            deadline=deadline,
            retry=False,
        )

    def wait_for_approval(
        self,
        timeout_s: float = 600,
        *,
        on_wait: Callable[[float], None] | None = None,
    ) -> TokenSet:
        """Poll until approval; raises AccessDenied, ExpiredToken, TimedOut, ….

        ``on_wait(seconds_left)`` is called before each wait, for progress reporting.
        """
        authorization = self.authorization
        if authorization is None:
            raise RuntimeError("call begin() before wait_for_approval()")
        poller = Poller(authorization, timeout_s=timeout_s, clock=self._clock)
        while True:
            poll_at = poller.next_poll_at()
            if poll_at >= poller.deadline:
                raise poller.out_of_time()
            if on_wait is not None:
                on_wait(poller.deadline - self._clock())
            delay_s = poll_at - self._clock()
            if delay_s > 0:
                self._sleep(delay_s)
            sent_at = self._clock()
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
