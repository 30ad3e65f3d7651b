"""The approval page's HTML: what an approver reads before choosing Approve or Deny.

Rules:

- Two kinds of facts, never mixed: what this server verified from the CI's OIDC token (under
  a heading that says so), and what the client merely sent (the client id without workload
  identity, scope, resources, extra parameters such as a binding message), labelled "not
  verified". Without a CI token the page says plainly that nothing on it is verified.
- Every value is escaped (``html.escape``, quotes too): claims, parameters and codes all come
  from the request. A character a reader would not see for what it is (a zero width, a bidi
  override, a space other than U+0020) is shown by its name, ``[U+200B]``. The page loads
  nothing: one inline stylesheet, allowed by its hash in a strict Content-Security-Policy
  (no scripts, no framing, forms post only here).
- The buttons post the page's own form token: a decision needs a page this server showed.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ci_shark.sandbox.ci_trust import CiIdentity
from ci_shark.sandbox.wire import NO_STORE, VERIFICATION_PATH, Reply

VERIFIED_HEADING: Final = "Verified by this server from the CI\u2019s OIDC token"
SENT_HEADING: Final = "Sent by the client, not verified"

_STYLE: Final = """
*{box-sizing:border-box}
body{margin:0;background:#eef1f5;color:#1f2328;font:16px/1.5 system-ui,-apple-system,
"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:640px;margin:32px auto;background:#fff;border-radius:12px;
box-shadow:0 1px 3px rgba(0,0,0,.12),0 8px 24px rgba(0,0,0,.06);padding:28px 32px}
.brand{margin:0 0 4px;color:#59636e;font-size:14px}
h1{margin:0 0 8px;font-size:24px}
h2{margin:0 0 8px;font-size:16px}
.lede{margin:0 0 16px;color:#31373d}
.code{font:700 40px/1.2 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
letter-spacing:.12em;text-align:center;padding:14px;margin:8px 0 6px;border:2px dashed #8c959f;
border-radius:10px;background:#f6f8fa}
.status{margin:0 0 20px;text-align:center;color:#59636e;font-size:14px}
.approved{color:#1a7f37;font-weight:600}.denied{color:#cf222e;font-weight:600}
section{margin:0 0 18px;padding:14px 16px;border-radius:8px}
.verified{background:#eef9f0;border-left:4px solid #1a7f37}
.unverified{background:#fff8e6;border-left:4px solid #bf8700}
.sent{background:#f6f8fa;border-left:4px solid #8c959f}
table{width:100%;border-collapse:collapse;font-size:14px}
th{width:32%;text-align:left;vertical-align:top;color:#59636e;font-weight:500;padding:4px 8px 4px 0}
td{padding:4px 0;overflow-wrap:anywhere;font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
details{margin-top:8px;font-size:14px}
.fine{margin:8px 0 0;color:#59636e;font-size:13px}
.actions{display:flex;gap:12px;margin:22px 0 8px}
button{flex:1;font:inherit;font-weight:600;padding:12px;border-radius:8px;cursor:pointer}
.approve{background:#1a7f37;border:1px solid #1a7f37;color:#fff}
.deny{background:#fff;border:1px solid #cf222e;color:#cf222e}
input[name=user_code]{font:600 20px ui-monospace,monospace;padding:8px;width:12em}
.host{margin:16px 0 0;color:#59636e;font-size:13px;border-top:1px solid #d0d7de;padding-top:12px}
"""

_STYLE_HASH: Final = base64.b64encode(hashlib.sha256(_STYLE.encode("utf-8")).digest()).decode()
CONTENT_SECURITY_POLICY: Final = (
    f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def escape(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return html.escape("".join(map(_visible, text)), quote=True)


def _visible(char: str) -> str:
    """``char``, or its name when a reader would not see it for what it is: a control, a
    format character (zero widths, bidi overrides, tags), a space other than U+0020, a
    blank filler or a variation selector. ``main`` plus a zero-width space, or ``niam``
    turned around by U+202E, is another branch, and must not read as ``main``."""
    category = unicodedata.category(char)
    code = ord(char)
    hidden = (
        category in ("Cc", "Cf", "Zl", "Zp")
        or (category == "Zs" and char != " ")
        or char in _BLANK_LETTERS
        or 0xFE00 <= code <= 0xFE0F
        or 0xE0100 <= code <= 0xE01EF
    )
    return f"[U+{code:04X}]" if hidden else char


_BLANK_LETTERS: Final = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u3164\uffa0")


def html_reply(status: int, page: str, outcome: str) -> Reply:
    headers = [
        *NO_STORE,
        ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
    ]
    return Reply(status, page.encode("utf-8"), "text/html; charset=utf-8", headers, outcome)


def page(title: str, body_html: str, *, server: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)} \u2013 ci_shark sandbox</title><style>{_STYLE}</style></head>"
        f'<body><main><p class="brand">ci_shark sandbox \u00b7 authorization server</p>'
        f"{body_html}"
        f'<p class="host">Check your browser\u2019s address bar: this page must come from '
        f"your own authorization server (here: {escape(server)}).</p></main></body></html>\n"
    )


def message_page(title: str, message: str, *, server: str) -> str:
    return page(title, f"<h1>{escape(title)}</h1><p>{escape(message)}</p>", server=server)


def entry_page(*, server: str) -> str:
    form = (
        f'<form method="get" action="{VERIFICATION_PATH}"><label>Code '
        '<input name="user_code" autocomplete="off" autofocus></label> '
        '<button class="approve">Continue</button></form>'
    )
    return page(
        "Device authorization",
        f"<h1>Enter the code the job shows</h1>{form}",
        server=server,
    )


def _table(rows: Sequence[tuple[str, object]]) -> str:
    cells = "".join(
        f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>" for name, value in rows
    )
    return f"<table>{cells}</table>"


def _first(claims: Mapping[str, Any], *names: str) -> Any:
    return next((claims[name] for name in names if claims.get(name) not in (None, "")), None)


def verified_facts(identity: CiIdentity) -> list[tuple[str, object]]:
    """The claims an approver checks, in plain words (GitHub's names, else GitLab's)."""
    claims = identity.claims
    ref, ref_type = claims.get("ref"), claims.get("ref_type")
    run = _first(claims, "run_id")
    if run is not None and claims.get("run_attempt"):
        run = f"{run} (attempt {claims['run_attempt']})"
    elif claims.get("pipeline_id") is not None:
        run = f"pipeline {claims['pipeline_id']}, job {claims.get('job_id')}"
    actor = _first(claims, "actor", "user_login")
    trigger = _first(claims, "event_name", "pipeline_source")
    rows: list[tuple[str, object]] = [
        ("Repository", _first(claims, "repository", "project_path")),
        ("Branch or tag", f"{ref} ({ref_type})" if ref and ref_type else ref),
        ("Commit", claims.get("sha")),
        ("Workflow", _first(claims, "workflow_ref", "ci_config_ref_uri", "workflow")),
        ("Run", run),
        ("Triggered by", f"{actor} ({trigger})" if actor and trigger else actor),
        ("Environment", claims.get("environment")),
        ("Subject (sub)", claims.get("sub")),
        ("Issuer", identity.issuer),
    ]
    return [(name, value) for name, value in rows if value not in (None, "")]


def _verified_section(identity: CiIdentity | None, client_id: str) -> str:
    if identity is None:
        return (
            '<section class="unverified"><h2>Nothing on this page is verified</h2>'
            "<p>This request carries no CI token: anyone who knows the client id could have "
            "started it and sent you the link. Approve only a request you started yourself, "
            "just now.</p></section>"
        )
    rows = [("Client", client_id), *verified_facts(identity)]
    every_claim = sorted(identity.claims.items())
    return (
        f'<section class="verified"><h2>\u2713 {escape(VERIFIED_HEADING)}</h2>{_table(rows)}'
        f"<details><summary>Every verified claim</summary>{_table(every_claim)}</details>"
        '<p class="fine">Checked by this server: the token\u2019s signature with the issuer\u2019s '
        "keys, its audience, its lifetime, that it was used once, and this server\u2019s rules "
        "for the client.</p></section>"
    )


@dataclass(frozen=True)
class ConsentView:
    """Everything one approval page shows."""

    server: str
    user_code: str  # as displayed, XXXX-XXXX
    client_id: str
    scope: str
    resources: tuple[str, ...]
    extra_params: Mapping[str, str]
    identity: CiIdentity | None
    status: str
    expires_in_s: float
    page_token: str | None  # None: no buttons (the grant is decided)


_STATUS_TEXT: Final = {
    "approved": ("approved", "Approved. The job can now collect its token."),
    "denied": ("denied", "Denied. The job will be told."),
    "expired": ("denied", "This code has expired."),
    "redeemed": ("approved", "Approved, and the job has collected its token."),
}


def _status_line(view: ConsentView) -> str:
    if view.status == "pending":
        minutes = max(1, round(view.expires_in_s / 60))
        return f'<p class="status">Waiting for your decision \u00b7 expires in {minutes} min</p>'
    css, text = _STATUS_TEXT.get(view.status, ("", view.status))
    return f'<p class="status {css}">{escape(text)}</p>'


def consent_page(view: ConsentView) -> str:
    sent: list[tuple[str, object]] = [] if view.identity else [("Client", view.client_id)]
    sent += [
        ("Scope", view.scope or "(none)"),
        ("Resources", " ".join(view.resources) or "(none)"),
        *sorted(view.extra_params.items()),
    ]
    buttons = ""
    if view.page_token is not None:
        buttons = (
            f'<form method="post" action="{VERIFICATION_PATH}" class="actions">'
            f'<input type="hidden" name="user_code" value="{escape(view.user_code)}">'
            f'<input type="hidden" name="page_token" value="{escape(view.page_token)}">'
            '<button class="approve" name="action" value="approve">Approve</button>'
            '<button class="deny" name="action" value="deny">Deny</button></form>'
        )
    body = (
        "<h1>A CI job asks for access</h1>"
        '<p class="lede">Approve only if this code is the one the job shows, and the run '
        "below is one you expect.</p>"
        f'<div class="code" id="user-code">{escape(view.user_code)}</div>{_status_line(view)}'
        f"{_verified_section(view.identity, view.client_id)}"
        f'<section class="sent"><h2>{escape(SENT_HEADING)}</h2>{_table(sent)}</section>'
        f"{buttons}"
    )
    return page("Approve access?", body, server=view.server)
