"""The webhook channel (``notify: webhook``), the same on every CI: the approval request
when it is shown, the outcome when the flow ends, each one POST to ``webhook-url`` in the
``webhook-format`` of :mod:`ci_shark.render.webhook`.

Its rules:

1. The URL is a secret (a Slack or Teams webhook URL is its own credential): the platform
   masks it before anything else (its registration in :mod:`.channels` names
   `webhook-url` a secret), and no message of ours names it, nor its host — the
   path may carry the token, and "the webhook" is all a reader needs. httpx's own INFO
   log line of the request is dropped (a library user may have logging switched on).
2. The approval never depends on it: a refusal, an error status, a timeout or a refused
   connection is one warning, and the flow goes on.
3. Every post is bounded as a whole (:data:`APPROVAL_BUDGET_S`, :data:`OUTCOME_BUDGET_S`)
   by the HTTP base's bounded send. The outcome's budget is short: on a cancellation the
   runner's grace period is a few seconds.
4. The HTTP base's client rules (:mod:`ci_shark.oauth.http`): our User-Agent, no
   redirects (a redirect would send the message elsewhere), the system's trust, a
   loopback hook never through a proxy. A failure is said in its words, which never
   quote the URL.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from ci_shark.oauth.http import Exchange, HttpClient, SendFailed
from ci_shark.platforms.channels import Channel, Unusable
from ci_shark.render import ApprovalRequest, Outcome
from ci_shark.render.webhook import APPROVAL_MESSAGES, OUTCOME_MESSAGES
from ci_shark.secret import Secret

if TYPE_CHECKING:
    from ci_shark.platforms.base import Platform

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


def webhook_channel(platform: Platform) -> Channel:
    """`notify: webhook` on any CI (its registration in :data:`.channels.EVERY_CI`)."""
    settings = platform.settings
    if settings.webhook_url is None:
        return Unusable(
            "`notify` includes webhook but `webhook-url` is not set (a secret that this run "
            "cannot read?): no webhook message",
            platform.warn,
        )
    return Webhook(
        settings.webhook_url,
        settings.webhook_format,
        warn=platform.warn,
        log=platform.log,
        transport=platform.transport,
    )


class Webhook(Channel):
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
        self._http: HttpClient | None = None
        self.announced = False  # an approval message was sent (or tried): the outcome follows

    def announce(self, request: ApprovalRequest) -> None:
        self.announced = True
        if self._post(APPROVAL_MESSAGES[self.format](request), APPROVAL_BUDGET_S, "request"):
            self._log(f"ci_shark: sent the approval request to the webhook ({self.format})")

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        """The outcome, when the webhook was told about the request."""
        if self.announced:
            self._post(OUTCOME_MESSAGES[self.format](outcome, request), OUTCOME_BUDGET_S, "outcome")

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _post(self, payload: dict[str, Any], budget_s: float, what: str) -> bool:
        """POST ``payload``; True on a 2xx answer, else one warning and False."""
        if self._http is None:
            logging.getLogger("httpx").addFilter(_HTTPX_LOG_FILTER)  # once: filters are a set
            self._http = HttpClient(transport=self._transport)
        token = _posting.set(True)
        deadline = time.monotonic() + budget_s
        try:
            request = self._http.build("POST", self._url.reveal(), deadline=deadline, json=payload)
            with self._http.send(request, deadline=deadline) as answer:
                status, start = answer.response.status_code, _start_of(answer)
        except (httpx.InvalidURL, ValueError):
            # ValueError: a host name IDNA refuses (httpx raises it as it is).
            return self._failed(what, "its URL cannot be used (check `webhook-url`)")
        except SendFailed as failure:
            return self._failed(what, "no answer in time" if failure.timed_out else str(failure))
        finally:
            _posting.reset(token)
        if 200 <= status < 300:
            return True
        detail = f" ({start.decode()})" if start is not None else ""
        if 300 <= status < 400:
            detail = " (a redirect, which ci_shark does not follow: give the final URL)"
        return self._failed(what, f"HTTP {status}{detail}")

    def _failed(self, what: str, why: str) -> bool:
        self._warn(f"could not send the {what} to the webhook: {why}")
        return False


def _start_of(answer: Exchange) -> bytes | None:
    """An error code such as Slack's ``no_service``, when that is all the body says."""
    if answer.response.status_code < 400:
        return None
    start = b""
    for chunk in answer.chunks():
        start += chunk
        if len(start) > _MAX_ERROR_BYTES:
            return None
    start = start.strip()
    return start if _ERROR_CODE.fullmatch(start) else None
