"""What people read: the approval request and the outcome, as log lines and as markdown.

Everything that came from the server or the CI event payload is untrusted. It reaches
markdown only through :func:`md` (escaped, so it cannot add links, HTML, or mentions) and
:func:`md_link` (a URL that passed the https rule, percent-encoded where markdown cares),
and reaches the log only through :func:`ci_shark.errors.untrusted`.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import quote, urlsplit

from ci_shark.errors import untrusted
from ci_shark.urls import url_problem

MARKER_PREFIX = "ci-shark:"
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


@dataclass(frozen=True)
class RunContext:
    """Who is asking: shown to the approver so they can judge the request."""

    platform: str = "local"
    repository: str | None = None
    workflow: str | None = None
    job: str | None = None
    job_url: str | None = None  # a link to the job itself, beside run_url (GitLab)
    job_variant: str | None = None  # which matrix leg: "env: prod, os: linux" (GitHub)
    run_url: str | None = None
    run_attempt: str | None = None
    commit: str | None = None
    actor: str | None = None
    event: str | None = None
    change_request: str | None = None  # "PR #12", "MR !34"
    change_request_url: str | None = None
    is_fork: bool = False
    fork_source: str | None = None
    public: bool = False  # anyone can read the log, the summary and the PR comment

    def marker_key(self) -> str:
        """Stable across re-runs of the same job, so a re-run edits its own comment; each
        matrix leg has its own, or legs waiting side by side would overwrite each other."""
        raw = "/".join(part or "-" for part in (self.repository, self.workflow, self.job))
        key = re.sub(r"[^A-Za-z0-9._/-]", "_", raw)[:200]
        if self.job_variant:
            key += "/" + hashlib.sha256(self.job_variant.encode()).hexdigest()[:16]
        return key


@dataclass(frozen=True)
class ApprovalRequest:
    link: str
    verification_uri: str
    user_code: str
    expires_at: datetime
    scope: str | None
    resource: tuple[str, ...]
    dpop_jkt: str | None
    context: RunContext = field(default_factory=RunContext)


@dataclass(frozen=True)
class Outcome:
    status: str  # approved, denied, expired, timeout, cancelled, refused, error
    message: str  # ours, one line
    approver: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


OUTCOME_TITLES = {
    "approved": "✅ Approved",
    "denied": "⛔ Denied",
    "expired": "⌛ Expired",
    "timeout": "⌛ Not approved in time",
    "cancelled": "🚫 Cancelled",
    "refused": "🛑 Refused by policy",
    "error": "❌ Failed",
}


def md(text: object, limit: int = 200) -> str:
    """Untrusted text as inert markdown: escaped, one line, no HTML, no @mentions."""
    flat = untrusted(text, limit)
    escaped = _MD_SPECIAL.sub(r"\\\1", html.escape(flat, quote=True))
    return escaped.replace("@", "&#64;")  # no notifications to whoever the text names


def md_code(text: object, limit: int = 80) -> str:
    """Untrusted text in monospace. Markdown is still parsed between HTML tags, so the
    content is escaped exactly as :func:`md` escapes it."""
    return f"<code>{md(text, limit)}</code>"


def md_link(label: str, url: str) -> str:
    """A link to a URL that passed the https rule; otherwise just the escaped label."""
    if url_problem(url):
        return md(label)
    safe_url = quote(url, safe=":/?#&=%+~,;@!$'*")
    safe_url = safe_url.replace("(", "%28").replace(")", "%29").replace("'", "%27")
    return f"[{md(label)}]({safe_url})"


def utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _context_line(context: RunContext) -> str:
    parts = []
    if context.repository:
        parts.append(f"**{md(context.repository)}**")
    if context.workflow:
        parts.append(f"workflow {md(context.workflow)}")
    if context.job:
        job = md_link(context.job, context.job_url) if context.job_url else md(context.job)
        variant = f" ({md(context.job_variant, 120)})" if context.job_variant else ""
        parts.append(f"job {job}{variant}")
    if context.run_url:
        attempt = f" (attempt {md(context.run_attempt)})" if context.run_attempt else ""
        parts.append(md_link("run", context.run_url) + attempt)
    if context.commit:
        parts.append(f"commit {md_code(context.commit[:12])}")
    if context.actor:
        parts.append(f"triggered by {md(context.actor)}")
    if context.change_request:
        label = context.change_request
        parts.append(
            md_link(label, context.change_request_url) if context.change_request_url else md(label)
        )
    return " · ".join(parts) if parts else "a CI job"


def approval_markdown(request: ApprovalRequest) -> str:
    """The job summary / PR comment / MR note body while the approval is pending."""
    host = urlsplit(request.link).hostname or "the authorization server"
    lines = [
        "### 🔐 ci_shark: a CI job asks for a credential",
        "",
        _context_line(request.context),
        "",
        f"**{md_link(f'Approve at {host}', request.link)}** with code "
        f"{md_code(request.user_code)} — expires {utc(request.expires_at)}",
        "",
        "| requested | |",
        "|---|---|",
        f"| scope | {md_code(request.scope) if request.scope else 'server default'} |",
    ]
    if request.resource:
        resources = ", ".join(md_code(item, 200) for item in request.resource)
        lines.append(f"| resource | {resources} |")
    if request.dpop_jkt:
        lines.append(f"| DPoP key (RFC 7638 thumbprint) | {md_code(request.dpop_jkt)} |")
    lines += [
        "",
        "> [!IMPORTANT]",
        "> Approve only a run you expect, and only if the page shows the code "
        f"{md_code(request.user_code)}.",
    ]
    return "\n".join(lines) + "\n"


def outcome_markdown(outcome: Outcome, request: ApprovalRequest | None) -> str:
    """The same message once the flow ended; the code and the link are gone."""
    title = OUTCOME_TITLES.get(outcome.status, outcome.status)
    lines = [f"### 🔐 ci_shark: {title}", ""]
    if request is not None:
        lines += [_context_line(request.context), ""]
    detail = md(outcome.message, 300)
    lines.append(f"{detail} — {utc(outcome.at)}")
    if outcome.approver:
        lines.append(f"\nApproved by {md(outcome.approver)}.")
    return "\n".join(lines) + "\n"


def marker(context: RunContext) -> str:
    return f"<!-- {MARKER_PREFIX}{context.marker_key()} -->"


def approval_log_lines(request: ApprovalRequest) -> list[str]:
    """The log's version: plain text, every server value passed through ``untrusted``."""
    lines = [
        "ci_shark: approval needed",
        f"  open:     {untrusted(request.link, 500)}",
        f"  code:     {untrusted(request.user_code, 80)}",
        f"  expires:  {utc(request.expires_at)}",
    ]
    if request.verification_uri != request.link:
        lines.append(f"  or enter the code at {untrusted(request.verification_uri, 500)}")
    if request.scope:
        lines.append(f"  scope:    {untrusted(request.scope, 300)}")
    if request.resource:
        lines.append(f"  resource: {untrusted(' '.join(request.resource), 500)}")
    if request.dpop_jkt:
        lines.append(f"  dpop jkt: {request.dpop_jkt}")
    lines.append("  Approve only a run you expect, and check that the code matches.")
    return lines
