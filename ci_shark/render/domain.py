"""What a message is about: the run that asks, its approval request, and how it ended.

Plain data, no words: :mod:`ci_shark.render.facts` says what people read of it, and each
format module writes that. Every text here that came from the server or the CI event
payload is untrusted; only the formats' escaping (:mod:`ci_shark.safe_text`) makes it
safe to show.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from ci_shark.render.facts import FactGroup


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
    # Why the CI could not tell where the change comes from (then it counts as a fork),
    # naming the event: "the issue_comment event is on PR #9, which could not be read…"
    fork_doubt: str | None = None
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
    # Facts about the run that someone other than the job vouches for, each group titled
    # with who does (issue 19: the claims the server verified from the CI's OIDC token).
    vouched: tuple[FactGroup, ...] = ()

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
