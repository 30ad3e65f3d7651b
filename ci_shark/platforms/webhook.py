"""The webhook channel (``notify: webhook``), the same on every CI: the approval request
when it is shown, the outcome when the flow ends, each one POST to ``webhook-url`` in the
``webhook-format`` of :mod:`ci_shark.render.webhook`.

Its rules:

1. The URL is a secret (a Slack or Teams webhook URL is its own credential): the platform
   masks it before anything else, and no message of ours names it, nor its host — the
   path may carry the token, and "the webhook" is all a reader needs. httpx's own INFO
   log line of the request is dropped (a library user may have logging switched on).
2. The approval never depends on it: a refusal, an error status, a timeout or a refused
   connection is one warning, and the flow goes on.
3. Every post is bounded as a whole (:data:`APPROVAL_BUDGET_S`, :data:`OUTCOME_BUDGET_S`):
   httpx's timeouts are per read, so the socket is shut at the deadline (the OAuth
   client's watchdog). The outcome's budget is short: on a cancellation the runner's
   grace period is a few seconds.
4. The CI APIs' client rules (:func:`api_client`): our User-Agent, no redirects (a
   redirect would send the message elsewhere), the system's trust.
"""

from __future__ import annotations

import contextvars
import logging
import re
from collections.abc import Callable
from typing import Any

import httpx

from ci_shark.oauth.tls import context_for
from ci_shark.oauth.watchdog import Sockets, Watchdog
from ci_shark.platforms.common import api_client
from ci_shark.render import ApprovalRequest, Outcome
from ci_shark.render.webhook import APPROVAL_MESSAGES, OUTCOME_MESSAGES
from ci_shark.secret import Secret

APPROVAL_BUDGET_S = 5.0
OUTCOME_BUDGET_S = 3.0
# What a webhook answers with a refusal that is worth repeating: Slack's error codes
# (no_service, invalid_token, channel_is_archived...). Anything else is not shown.
_ERROR_CODE = re.compile(rb"[a-z_]{3,40}")
_MAX_ERROR_BYTES = 64

_posting: contextvars.ContextVar[bool] = contextvars.ContextVar("ci_shark_webhook", default=False)


class _NoWebhookRequestLog(logging.Filter):
    """httpx logs every request's URL at INFO: not ours, which is a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _posting.get()


_HTTPX_LOG_FILTER = _NoWebhookRequestLog()


class Webhook:
    """Posts a run's two messages to one webhook; failures become warnings."""

    def __init__(
        self,
        url: Secret,
        message_format: str,
        *,
        warn: Callable[[str], None],
        log: Callable[[str], None],
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._url = url
        self.format = message_format
        self._warn = warn
        self._log = log
        self._transport = transport
        self._client: httpx.Client | None = None
        self._sockets = Sockets()
        self.announced = False  # an approval message was sent (or tried): the outcome follows

    def announce(self, request: ApprovalRequest) -> None:
        self.announced = True
        if self._post(APPROVAL_MESSAGES[self.format](request), APPROVAL_BUDGET_S, "request"):
            self._log(f"ci_shark: sent the approval request to the webhook ({self.format})")

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        """The outcome, when the webhook was told about the request; then the connection
        goes. Never raises."""
        try:
            if self.announced:
                self._post(
                    OUTCOME_MESSAGES[self.format](outcome, request), OUTCOME_BUDGET_S, "outcome"
                )
        finally:
            self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _post(self, payload: dict[str, Any], budget_s: float, what: str) -> bool:
        """POST ``payload``; True on a 2xx answer, else one warning and False."""
        if self._client is None:
            logging.getLogger("httpx").addFilter(_HTTPX_LOG_FILTER)  # once: filters are a set
            self._client = api_client(
                headers={},
                transport=self._transport,
                trust=lambda: context_for(None),
                timeout=httpx.Timeout(budget_s),
            )
        token = _posting.set(True)
        watchdog = Watchdog(self._sockets, budget_s)
        try:
            request = self._client.build_request(
                "POST",
                self._url.reveal(),
                json=payload,
                timeout=httpx.Timeout(budget_s),
                extensions={"trace": self._sockets.trace},
            )
            response = self._client.send(request, stream=True)
            try:
                status, start = response.status_code, _start_of(response)
            finally:
                response.close()
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as failure:
            # ValueError: a host name IDNA refuses (httpx raises it as it is).
            self._warn(f"could not send the {what} to the webhook: {_why(failure, watchdog)}")
            return False
        finally:
            watchdog.disarm()
            _posting.reset(token)
        if 200 <= status < 300:
            return True
        detail = f" ({start.decode()})" if start is not None else ""
        if 300 <= status < 400:
            detail = " (a redirect, which ci_shark does not follow: give the final URL)"
        self._warn(f"could not send the {what} to the webhook: HTTP {status}{detail}")
        return False


def _start_of(response: httpx.Response) -> bytes | None:
    """An error code such as Slack's ``no_service``, when that is all the body says."""
    if response.status_code < 400:
        return None
    start = b""
    for chunk in response.iter_raw():
        start += chunk
        if len(start) > _MAX_ERROR_BYTES:
            return None
    start = start.strip()
    return start if _ERROR_CODE.fullmatch(start) else None


def _why(failure: Exception, watchdog: Watchdog) -> str:
    """What went wrong, in our words only: httpx's text may quote the URL."""
    if isinstance(failure, (httpx.InvalidURL, ValueError)):
        return "its URL cannot be used (check `webhook-url`)"
    if watchdog.fired or isinstance(failure, httpx.TimeoutException):
        return "no answer in time"
    if isinstance(failure, httpx.ConnectError):
        text = str(failure).lower()
        if "refused" in text:
            return "connection refused"
        if "certificate" in text or "ssl" in text or "tls" in text:
            return "TLS failed (is its certificate trusted by the system?)"
        if "name" in text and ("resolution" in text or "service" in text or "known" in text):
            return "its host name does not resolve"
        return "could not connect"
    return f"{type(failure).__name__}"
