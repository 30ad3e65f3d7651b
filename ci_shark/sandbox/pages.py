"""The verification page a person opens: enter a code, see what it asks for, approve or deny.

Every value on it comes from the client's request: it is escaped, and the page forbids
scripts and framing.
"""

from __future__ import annotations

import html
from typing import Final

from ci_shark.sandbox.endpoints import EndpointGroup
from ci_shark.sandbox.state import (
    Decision,
    Grant,
    display_user_code,
    normalise_user_code,
)
from ci_shark.sandbox.wire import (
    NO_STORE,
    VERIFICATION_PATH,
    OAuthError,
    Reply,
    Request,
    Routes,
    parse_form,
)


def _page(title: str, body_html: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body_html}</body></html>\n"
    )


def _message_page(title: str, message: str) -> str:
    return _page(title, f"<p>{html.escape(message)}</p>")


_ENTRY_FORM: Final = _page(
    "Device authorization",
    f'<form method="get" action="{VERIFICATION_PATH}"><label>Code '
    '<input name="user_code" autocomplete="off" autofocus></label> '
    "<button>Continue</button></form>",
)
_UNKNOWN_CODE: Final = _message_page("Unknown code", "No such code.")


def _html_reply(status: int, page: str, outcome: str) -> Reply:
    headers = [
        *NO_STORE,
        # The page shows untrusted request data: no scripts, no framing, forms only to us.
        (
            "Content-Security-Policy",
            "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        ("X-Frame-Options", "DENY"),
    ]
    return Reply(status, page.encode("utf-8"), "text/html; charset=utf-8", headers, outcome)


def _grant_page(grant: Grant, status: str) -> str:
    rows = [
        ("Code", display_user_code(grant.user_code)),
        ("Client", grant.client_id),
        ("Scope", grant.scope or "(none)"),
        ("Resources", " ".join(grant.resources) or "(none)"),
        *sorted(grant.extra_params.items()),
        ("Status", status),
    ]
    table = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
        for name, value in rows
    )
    buttons = ""
    if status == "pending":
        code = html.escape(display_user_code(grant.user_code))
        buttons = (
            f'<form method="post" action="{VERIFICATION_PATH}">'
            f'<input type="hidden" name="user_code" value="{code}">'
            '<button name="action" value="approve">Approve</button> '
            '<button name="action" value="deny">Deny</button></form>'
        )
    return _page("Device authorization", f"<table>{table}</table>{buttons}")


class VerificationPages(EndpointGroup):
    def routes(self) -> Routes:
        return {VERIFICATION_PATH: {"GET": self.page, "POST": self.action}}

    def page(self, req: Request) -> Reply:
        code = req.query_value("user_code")
        if code is None or not code.strip():
            return _html_reply(200, _ENTRY_FORM, "page")
        decision = self._state.automatic_decision if self._state.options.approve_on_open else None
        return self._decide(code, decision)

    def action(self, req: Request) -> Reply:
        try:
            form = parse_form(req)
        except OAuthError:
            return _html_reply(400, _message_page("Bad request", "Malformed form."), "bad_request")
        decisions: dict[str | None, Decision] = {"approve": "approved", "deny": "denied"}
        action = form.get("action")
        if action not in decisions:
            body = _message_page("Bad request", "action must be approve or deny.")
            return _html_reply(400, body, "bad_request")
        return self._decide(form.get("user_code") or "", decisions[action])

    def _decide(self, user_code: str, decision: Decision | None) -> Reply:
        """Apply ``decision`` (None: none) to a pending code, then show the code's page."""
        state = self._state
        now = state.clock()
        with state.lock:
            grant = state.grants_by_user_code.get(normalise_user_code(user_code))
            if grant is None:
                return _html_reply(404, _UNKNOWN_CODE, "unknown_code")
            outcome = "page"
            if decision is not None and state.status_locked(grant, now) == "pending":
                grant.status = decision
                outcome = grant.status
            page = _grant_page(grant, state.status_locked(grant, now))
        return _html_reply(200, page, outcome)
