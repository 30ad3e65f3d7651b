"""What an approver reads, written once: the facts of a request and the words around them.

Every format (:mod:`.gfm`, :mod:`.slack`, :mod:`.teams`, :mod:`.json_message`, and
:mod:`.log_lines` for the request's facts: the log is the run's own page) shows these
facts and adds only its own syntax and escaping, so a fact added here reaches every
message, and no format can forget one. The rules:

- A :class:`Fact` is a label of ours and a value we did not write, maybe a link and a
  detail. Values are untrusted (server, CI event, an approver's account): each format
  escapes them by its own rule from :mod:`ci_shark.safe_text`. The flags say what a fact
  *is* (the subject of the message, a value that names itself, a person's name); how that
  looks is each format's business.
- Unknown facts are left out here, once; the order of a tuple is the reading order.
- Facts come in :class:`FactGroup` s, one per source, titled by who vouches for them:
  first what the job says about itself (its CI's environment: the job could fake any of
  it), then the groups others vouch for (:attr:`ApprovalRequest.vouched`: the claims of
  the CI's OIDC token, :func:`ci_token_facts`, which the server verifies before it takes
  the request). Every format shows each group apart, under its title; the job's own group
  goes untitled while it is alone, as there is nothing to tell it from.
- Our words (labels, titles, hints, the shared sentences below) are plain: no character
  any format gives a meaning to, so every format writes them as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from ci_shark.render.domain import ApprovalRequest, RunContext

APPROVAL_TITLE = "🔐 ci_shark: a CI job asks for a credential"
CAUTION = "Approve only a run you expect, and only if the page shows the code"
TRUST_HOST = "Approve only if you trust that host."
NO_CONTEXT = "a CI job"  # who asks, when the run told us nothing about itself
JOB_SAYS = "what the job says about itself"
PROVED_BY_CI = "proved to the server by the CI's OIDC token"
CODE_LIMIT = 80  # a user code is short (RFC 8628 §6.1): anything longer is cut
OUTCOME_WORDS = {
    "approved": "✅ Approved",
    "denied": "⛔ Denied",
    "expired": "⌛ Expired",
    "timeout": "⌛ Not approved in time",
    "cancelled": "🚫 Cancelled",
    "refused": "🛑 Refused by policy",
    "error": "❌ Failed",
}
_PLAIN_HOST = re.compile(r"[a-z0-9.:-]{1,253}")


@dataclass(frozen=True)
class Fact:
    """One thing about a request the approver should know."""

    name: str  # its field in the json message (its link is `<name>_url` there)
    label: str  # our words for it: "workflow", "triggered by"
    value: str | tuple[str, ...] | None = None  # what we did not write; a tuple: several
    url: str | None = None  # where it links: the job, the run, the pull request
    aside: Fact | None = None  # a detail, shown after it in parentheses: the attempt
    limit: int = 200  # how much of each value a person is shown
    short: int = 0  # people see only the first `short` characters (a commit); data keeps all
    otherwise: str = ""  # our words when there is no value: "server default"
    hint: str = ""  # our words on the label, where a format has room: "RFC 7638 thumbprint"
    bare: bool = False  # the value says what it is (`octo/app`, `PR #12`): no label
    lead: bool = False  # what the message is about (the repository), or must be checked
    person: bool = False  # someone's name: plain words where a format can show them safely

    @property
    def shown(self) -> tuple[str, ...]:
        """The values a person sees (none when unknown)."""
        values = self.value if isinstance(self.value, tuple) else (self.value,)
        return tuple(value[: self.short] if self.short else value for value in values if value)

    @property
    def has_text(self) -> bool:
        """Something to read besides a link: a value, our words for none, or a detail."""
        return bool(self.shown or self.otherwise or (self.aside and self.aside.has_text))

    @property
    def known(self) -> bool:
        return self.has_text or self.url is not None

    @property
    def long_label(self) -> str:
        return f"{self.label} ({self.hint})" if self.hint else self.label


@dataclass(frozen=True)
class FactGroup:
    """Facts from one source, under words that say who vouches for them."""

    name: str  # its object in the json message: "context" for what the job says
    title: str  # our words for who vouches (the provenance); "" for the job's, when alone
    facts: tuple[Fact, ...]


def asking(request: ApprovalRequest) -> tuple[FactGroup, ...]:
    """Who asks: what the job says about itself, then what others vouch for; each group
    that has facts. The job's own words carry a title only beside someone else's."""
    vouched = tuple(group for group in request.vouched if group.facts)
    job = FactGroup("context", JOB_SAYS if vouched else "", job_facts(request.context))
    return tuple(group for group in (job, *vouched) if group.facts)


def job_facts(context: RunContext) -> tuple[Fact, ...]:
    """What the CI's environment says about the run: the job could have set any of it."""
    variant = Fact("job_variant", "matrix", context.job_variant, limit=120, bare=True)
    attempt = Fact("run_attempt", "attempt", context.run_attempt)
    facts = (
        Fact("repository", "repository", context.repository, bare=True, lead=True),
        Fact("workflow", "workflow", context.workflow),
        Fact("job", "job", context.job, url=context.job_url, aside=variant),
        Fact("run", "run", url=context.run_url, aside=attempt),
        Fact("commit", "commit", context.commit, short=12),
        Fact("actor", "triggered by", context.actor, person=True),
        Fact(
            "change_request",
            "pull/merge request",
            context.change_request,
            url=context.change_request_url,
            bare=True,
        ),
    )
    return tuple(fact for fact in facts if fact.known)


# Each fact of a CI's OIDC token, by the claims that carry it on GitHub, GitLab, Buildkite
# and Azure Pipelines (the first one present wins).
_CI_CLAIMS = {
    "repository": ("repository", "project_path", "rpo_uri"),
    "ref": ("ref", "build_branch", "rpo_ref"),
    "commit": ("sha", "build_commit", "rpo_ver"),
    "workflow": ("workflow_ref", "ci_config_ref_uri", "pipeline_slug", "workflow"),
    "run": ("run_id", "pipeline_id", "build_number"),
    "attempt": ("run_attempt",),
    "actor": ("actor", "user_login"),
}


def ci_token_facts(claims: Mapping[str, object]) -> FactGroup:
    """What the CI's OIDC token says about the run: the CI signed it, and the server checks
    the signature before it takes the request, so the job cannot choose any of it. Claims
    are read as the token carries them (strings and whole numbers; anything else is left
    out) and are as untrusted as any value: a branch name is anyone's text."""

    def claim(*names: str) -> str | None:
        for name in names:
            value = claims.get(name)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                return str(value)
        return None

    def fact(name: str) -> str | None:
        return claim(*_CI_CLAIMS.get(name, (name,)))

    organization, pipeline = claim("organization_slug"), claim("pipeline_slug")
    # Buildkite's token names no repository: its pipeline stands for one, as in RunContext.
    buildkite = f"{organization}/{pipeline}" if organization and pipeline else None
    repository = fact("repository") or buildkite
    attempt = Fact("run_attempt", "attempt", fact("attempt"))
    facts = (
        Fact("repository", "repository", repository, lead=True),
        Fact("ref", "ref", fact("ref")),
        Fact("commit", "commit", fact("commit"), short=12),
        Fact("workflow", "workflow", fact("workflow"), limit=300),
        Fact("run_id", "run", fact("run"), aside=attempt),
        Fact("actor", "triggered by", fact("actor"), person=True),
        Fact("subject", "subject", fact("sub"), limit=300),
        Fact("issuer", "issuer", fact("iss")),
    )
    return FactGroup("ci_token", PROVED_BY_CI, tuple(fact for fact in facts if fact.known))


def requested(request: ApprovalRequest) -> tuple[Fact, ...]:
    """What the credential would allow, and the key it would be bound to."""
    facts = (
        Fact("scope", "scope", request.scope, limit=300, otherwise="server default"),
        Fact("resource", "resource", request.resource),
        Fact("dpop_jkt", "DPoP key", request.dpop_jkt, hint="RFC 7638 thumbprint"),
    )
    return tuple(fact for fact in facts if fact.known)


# -- our words, the same in every format ------------------------------------------------


def utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def sentence(words: str) -> str:
    """Our words with a capital first letter (str.capitalize would lower the rest)."""
    return words[:1].upper() + words[1:]


def outcome_words(status: str) -> str:
    return OUTCOME_WORDS.get(status, status)


def outcome_title(status: str) -> str:
    return f"🔐 ci_shark: {outcome_words(status)}"


def foreign_host(page_host: str, server_host: str) -> str:
    """The warning for an approval page on another host, with each host already escaped
    by the format: it is what device-code phishing looks like."""
    return f"the approval page is on {page_host}, not on the authorization server {server_host}"


def page_host(request: ApprovalRequest) -> str:
    """The approval page's host for a label where no value can be escaped (a link's label
    in Slack, a button in Teams): a plain host name, else our words."""
    host = request.link_host
    return host if _PLAIN_HOST.fullmatch(host) else "the authorization server"
