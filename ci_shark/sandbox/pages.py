"""The verification page a person opens: enter a code, see what it asks for, approve or deny.

Rules:

- Opening the link decides only in the demo's no-identity mode (``approve_on_open``); with a
  trusted CI issuer it never does: the page shows what this server verified and asks.
- A decision is a POST carrying the form token of a page this server showed for that code
  (random, single use, a few per code): a missing, wrong or used token is refused with 403,
  and nothing changes.
- The HTML, its escaping and its Content-Security-Policy live in ``consent.py``.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Final

from ci_shark.sandbox.consent import (
    ConsentView,
    consent_page,
    entry_page,
    html_reply,
    message_page,
)
from ci_shark.sandbox.endpoints import EndpointGroup
from ci_shark.sandbox.state import (
    MAX_PAGE_TOKENS,
    Decision,
    Grant,
    display_user_code,
    normalise_user_code,
)
from ci_shark.sandbox.wire import VERIFICATION_PATH, OAuthError, Reply, Request, Routes, parse_form

_DECISIONS: Final[dict[str | None, Decision]] = {"approve": "approved", "deny": "denied"}


class VerificationPages(EndpointGroup):
    def routes(self) -> Routes:
        return {VERIFICATION_PATH: {"GET": self.page, "POST": self.action}}

    def page(self, req: Request) -> Reply:
        code = req.query_value("user_code")
        if code is None or not code.strip():
            return html_reply(200, entry_page(server=self._issuer()), "page")
        opening_decides = self._options.approve_on_open and not self._options.trusts_ci
        decision = self._state.automatic_decision if opening_decides else None
        return self._decide(code, decision, page_token=None)

    def action(self, req: Request) -> Reply:
        try:
            form = parse_form(req)
        except OAuthError:
            return self._message(400, "Bad request", "Malformed form.", "bad_request")
        action = form.get("action")
        if action not in _DECISIONS:
            return self._message(
                400, "Bad request", "action must be approve or deny.", "bad_request"
            )
        return self._decide(
            form.get("user_code") or "", _DECISIONS[action], page_token=form.get("page_token") or ""
        )

    def _message(self, status: int, title: str, text: str, outcome: str) -> Reply:
        return html_reply(status, message_page(title, text, server=self._issuer()), outcome)

    def _decide(
        self, user_code: str, decision: Decision | None, *, page_token: str | None
    ) -> Reply:
        """Apply ``decision`` (None: none) to a pending code, then show the code's page.

        ``page_token`` None: the link was opened (a GET); else the form token a POST carried.
        """
        state = self._state
        now = state.clock()
        with state.lock:
            grant = state.grants_by_user_code.get(normalise_user_code(user_code))
            if grant is None:
                return self._message(404, "Unknown code", "No such code.", "unknown_code")
            if page_token is not None and not _take_page_token(grant, page_token):
                return self._message(
                    403,
                    "This page has expired",
                    "The decision did not come from a page this server showed for this code "
                    "(or that page was already used). Open the link again.",
                    "bad_page_token",
                )
            outcome = "page"
            if decision is not None and state.status_locked(grant, now) == "pending":
                grant.status = decision
                outcome = grant.status
            status = state.status_locked(grant, now)
            view = ConsentView(
                server=self._issuer(),
                user_code=display_user_code(grant.user_code),
                client_id=grant.client_id,
                scope=grant.scope,
                resources=grant.resources,
                extra_params=dict(grant.extra_params),
                identity=grant.ci_identity,
                status=status,
                expires_in_s=grant.expires_at - now,
                page_token=_new_page_token(grant) if status == "pending" else None,
            )
        return html_reply(200, consent_page(view), outcome)


def _new_page_token(grant: Grant) -> str:
    token = secrets.token_urlsafe(24)
    grant.page_tokens = [*grant.page_tokens, token][-MAX_PAGE_TOKENS:]
    return token


def _take_page_token(grant: Grant, token: str) -> bool:
    for known in grant.page_tokens:
        if hmac.compare_digest(known.encode(), token.encode()):
            grant.page_tokens = [t for t in grant.page_tokens if t != known]
            return True
    return False
