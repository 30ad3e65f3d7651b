"""What people read: the approval request and the outcome, as log lines and as markdown.

The domain values (:class:`RunContext`, :class:`ApprovalRequest`, :class:`Outcome`) are
plain data; this module words them. Everything that came from the server or the CI event
payload is untrusted and reaches markdown only as :func:`ci_shark.safe_text.md_code`
(shown verbatim, never a link, mention or reference) or through
:func:`ci_shark.safe_text.md_link` (a URL that passed the https rule); it reaches the log
only through :func:`ci_shark.safe_text.untrusted`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlsplit

from ci_shark.safe_text import md_code, md_link, md_text, untrusted

MARKER_PREFIX = "ci-shark:"


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
    server_host: str | None = None  # the authorization server's (auth-url / issuer)

    @property
    def link_host(self) -> str:
        return (urlsplit(self.link).hostname or "").lower()

    @property
    def foreign_link(self) -> bool:
        """The approval page is on another host than the authorization server: shown as a
        warning, as it is what device-code phishing looks like (and what some servers do)."""
        return self.server_host is not None and self.link_host != self.server_host.lower()


@dataclass(frozen=True)
class Outcome:
    status: str  # approved, denied, expired, timeout, cancelled, refused, error
    message: str  # ours, one line (server text in it already passed through `untrusted`)
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


def utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _context_line(context: RunContext) -> str:
    parts = []
    if context.repository:
        parts.append(f"**{md_code(context.repository)}**")
    if context.workflow:
        parts.append(f"workflow {md_code(context.workflow)}")
    if context.job:
        job = md_code(context.job)
        job = md_link(job, context.job_url) if context.job_url else job
        variant = f" ({md_code(context.job_variant, 120)})" if context.job_variant else ""
        parts.append(f"job {job}{variant}")
    if context.run_url:
        attempt = f" (attempt {md_code(context.run_attempt)})" if context.run_attempt else ""
        parts.append(md_link("run", context.run_url) + attempt)
    if context.commit:
        parts.append(f"commit {md_code(context.commit[:12])}")
    if context.actor:
        parts.append(f"triggered by {md_text(context.actor)}")
    if context.change_request:
        label = md_code(context.change_request)
        url = context.change_request_url
        parts.append(md_link(label, url) if url else label)
    return " · ".join(parts) if parts else "a CI job"


APPROVAL_TITLE = "🔐 ci_shark: a CI job asks for a credential"
CAUTION = "Approve only a run you expect, and only if the page shows the code"


def approval_markdown(request: ApprovalRequest) -> str:
    """The job summary / PR comment / MR note body while the approval is pending."""
    host = md_code(request.link_host or "the authorization server")
    lines = [
        f"### {APPROVAL_TITLE}",
        "",
        _context_line(request.context),
        "",
        f"**{md_link(f'Approve at {host}', request.link)}** with code "
        f"{md_code(request.user_code)} — expires {utc(request.expires_at)}",
        "",
    ]
    if request.foreign_link:
        lines += [
            "> [!WARNING]",
            f"> The approval page is on {host}, not on the authorization server "
            f"{md_code(request.server_host)}. Approve only if you trust that host.",
            "",
        ]
    lines += [
        "| requested | |",
        "|---|---|",
        "| scope | "
        + (md_code(request.scope, 300, in_table=True) if request.scope else "server default")
        + " |",
    ]
    if request.resource:
        resources = ", ".join(md_code(item, 200, in_table=True) for item in request.resource)
        lines.append(f"| resource | {resources} |")
    if request.dpop_jkt:
        lines.append(f"| DPoP key (RFC 7638 thumbprint) | {md_code(request.dpop_jkt)} |")
    lines += [
        "",
        "> [!IMPORTANT]",
        f"> {CAUTION} {md_code(request.user_code)}.",
    ]
    return "\n".join(lines) + "\n"


def outcome_markdown(outcome: Outcome, request: ApprovalRequest | None) -> str:
    """The same message once the flow ended; the code and the link are gone."""
    title = OUTCOME_TITLES.get(outcome.status, outcome.status)
    lines = [f"### 🔐 ci_shark: {title}", ""]
    if request is not None:
        lines += [_context_line(request.context), ""]
    lines.append(f"{md_text(outcome.message, 300)} — {utc(outcome.at)}")
    if outcome.approver:
        lines.append(f"\nApproved by {md_text(outcome.approver)}.")
    return "\n".join(lines) + "\n"


def marker(context: RunContext) -> str:
    return f"<!-- {MARKER_PREFIX}{context.marker_key()} -->"


# A GitHub login, or an org/team, as `notify-users` takes them (config.py checks them too).
GITHUB_NAME = re.compile(r"@?[A-Za-z0-9][A-Za-z0-9-]{0,38}(?:/[A-Za-z0-9_.-]+)?")


def mentions(users: tuple[str, ...]) -> str:
    """The only mentions ci_shark ever writes: the people the workflow's author listed in
    `notify-users`, as a paragraph for an issue body; "" when none."""
    names = [f"@{user.lstrip('@')}" for user in users if GITHUB_NAME.fullmatch(user)]
    return f"\ncc {' '.join(names)}\n" if names else ""


def issue_title(context: RunContext, run_id: str | None, status: str | None = None) -> str:
    """The issue's title: what it is about (workflow, job, run), and how it ended."""
    state = "approval needed" if status is None else OUTCOME_TITLES.get(status, status)
    parts = [f"workflow {md_code(context.workflow or 'unnamed', 80)}"]
    if context.job:
        parts.append(f"job {md_code(context.job, 80)}")
    if run_id and run_id.isascii() and run_id.isdigit():
        parts.append(f"run {run_id}")
    return f"🔐 ci_shark: {state} — {', '.join(parts)}"


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
    if request.foreign_link:
        lines.append(
            f"  warning:  the approval page is on {untrusted(request.link_host)}, not on the "
            f"authorization server {untrusted(request.server_host)}"
        )
    if request.scope:
        lines.append(f"  scope:    {untrusted(request.scope, 300)}")
    if request.resource:
        lines.append(f"  resource: {untrusted(' '.join(request.resource), 500)}")
    if request.dpop_jkt:
        lines.append(f"  dpop jkt: {request.dpop_jkt}")
    lines.append("  Approve only a run you expect, and check that the code matches.")
    return lines
