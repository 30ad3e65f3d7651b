"""The approval request and the outcome as webhook messages: ``slack``, ``teams``, ``json``.

Webhooks cannot edit what they posted, so each run posts two messages: the request (link,
code, expiry, who is asking), then the outcome (no code, no link). The words are those of
:mod:`ci_shark.render`; each format has its rule for text we did not write, from
:mod:`ci_shark.safe_text`:

- ``slack``: one mrkdwn ``text`` (what Slack, Mattermost, Rocket.Chat and Discord's
  ``/slack`` endpoint all read), server and CI values only as :func:`slack_code`, links only
  from :func:`slack_link`.
- ``teams``: a message with one Adaptive Card (what Teams incoming webhooks and the
  Workflows "when a Teams webhook request is received" flow accept). ``TextBlock`` texts
  (markdown) hold our words only; values are ``TextRun`` s; links are ``Action.OpenUrl``.
- ``json``: :data:`JSON_SCHEMA`, the same fields in both messages (null when they do not
  apply), for any receiver. Values are data, not markup: ``markdown`` is the PR comment's
  text, inert under GitHub's rendering; everything else must be escaped by whoever shows it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ci_shark.render import (
    APPROVAL_TITLE,
    CAUTION,
    OUTCOME_TITLES,
    ApprovalRequest,
    Outcome,
    RunContext,
    approval_markdown,
    outcome_markdown,
    utc,
)
from ci_shark.safe_text import card_text, one_line, safe_url, slack_code, slack_escape, slack_link

JSON_SCHEMA = "ci_shark.webhook.v1"
_HOST = re.compile(r"[a-z0-9.:-]{1,253}")

Payload = dict[str, Any]


@dataclass(frozen=True)
class Fact:
    """One thing about the run: a label of ours, a value we did not write, maybe a link."""

    label: str
    value: str  # "" when the label and the link say it all
    url: str | None = None


def context_facts(context: RunContext) -> list[Fact]:
    facts = []
    if context.repository:
        facts.append(Fact("repository", context.repository))
    if context.workflow:
        facts.append(Fact("workflow", context.workflow))
    if context.job:
        job = f"{context.job} ({context.job_variant})" if context.job_variant else context.job
        facts.append(Fact("job", job, context.job_url))
    if context.run_url or context.run_attempt:
        attempt = f"attempt {context.run_attempt}" if context.run_attempt else ""
        facts.append(Fact("run", attempt, context.run_url))
    if context.commit:
        facts.append(Fact("commit", context.commit[:12]))
    if context.actor:
        facts.append(Fact("triggered by", context.actor))
    if context.change_request:
        facts.append(Fact("change", context.change_request, context.change_request_url))
    return facts


def request_facts(request: ApprovalRequest) -> list[Fact]:
    facts = [Fact("scope", request.scope) if request.scope else Fact("scope: server default", "")]
    if request.resource:
        facts.append(Fact("resource", " ".join(request.resource)))
    if request.dpop_jkt:
        facts.append(Fact("DPoP key", request.dpop_jkt))
    return facts


def host_label(request: ApprovalRequest) -> str:
    """The approval page's host for a link label (our words): a plain host name, or none."""
    host = request.link_host
    return host if _HOST.fullmatch(host) else "the authorization server"


def outcome_title(outcome: Outcome) -> str:
    return f"🔐 ci_shark: {OUTCOME_TITLES.get(outcome.status, 'Finished')}"


# -- slack ---------------------------------------------------------------------------------


def _slack_facts(facts: list[Fact]) -> str:
    parts = []
    for fact in facts:
        if not fact.value:
            parts.append(slack_link(fact.label, fact.url) if fact.url else slack_escape(fact.label))
            continue
        part = f"{fact.label} {slack_code(fact.value)}"
        if fact.url and safe_url(fact.url):
            part += f" ({slack_link('open', fact.url)})"
        parts.append(part)
    return " · ".join(parts)


def slack_approval(request: ApprovalRequest) -> Payload:
    code = slack_code(request.user_code, 80)
    lines = [
        f"*{slack_escape(APPROVAL_TITLE)}*",
        _slack_facts(context_facts(request.context)) or "a CI job",
        f"*{slack_link(f'Approve at {host_label(request)}', request.link)}* with code {code}"
        f" — expires {utc(request.expires_at)}",
    ]
    if request.foreign_link:
        lines.append(
            f"⚠️ The approval page is on {slack_code(request.link_host)}, not on the "
            f"authorization server {slack_code(request.server_host)}. Approve only if you "
            "trust that host."
        )
    lines += [_slack_facts(request_facts(request)), f"{slack_escape(CAUTION)} {code}."]
    return _slack_message(lines)


def slack_outcome(outcome: Outcome, request: ApprovalRequest | None) -> Payload:
    lines = [f"*{slack_escape(outcome_title(outcome))}*"]
    if request is not None:
        lines.append(_slack_facts(context_facts(request.context)) or "a CI job")
    lines.append(f"{slack_code(outcome.message, 300)} — {utc(outcome.at)}")
    if outcome.approver:
        lines.append(f"Approved by {slack_code(outcome.approver)}.")
    return _slack_message(lines)


def _slack_message(lines: list[str]) -> Payload:
    # No unfurling: a preview would have Slack's crawler open the approval link.
    return {"text": "\n".join(lines), "unfurl_links": False, "unfurl_media": False}


# -- teams ---------------------------------------------------------------------------------


def _title_block(title: str) -> Payload:
    return {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": True}


def _note_block(words: str) -> Payload:
    """Our own words (a TextBlock is markdown: never text we did not write)."""
    return {"type": "TextBlock", "text": words, "wrap": True, "isSubtle": True}


def _fact_line(label: str, value: str, *, strong: bool = False) -> Payload:
    """``label: value`` with the value as plain text (a TextRun has no markdown); the
    label alone when there is no value."""
    if not value:
        return {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": label}]}
    run: Payload = {"type": "TextRun", "text": card_text(value, 300), "fontType": "Monospace"}
    if strong:
        run["weight"] = "Bolder"
    return {
        "type": "RichTextBlock",
        "inlines": [{"type": "TextRun", "text": f"{label}: "}, run],
    }


def _open(title: str, url: str | None) -> list[Payload]:
    target = safe_url(url)
    return [{"type": "Action.OpenUrl", "title": title, "url": target}] if target else []


def _teams_context(context: RunContext) -> tuple[list[Payload], list[Payload]]:
    lines = [_fact_line(fact.label, fact.value) for fact in context_facts(context) if fact.value]
    actions = _open("Open the run", context.run_url)
    actions += _open("Open the pull/merge request", context.change_request_url)
    return lines, actions


def teams_approval(request: ApprovalRequest) -> Payload:
    context_lines, context_actions = _teams_context(request.context)
    body = [
        _title_block(APPROVAL_TITLE),
        *context_lines,
        _fact_line("code", request.user_code, strong=True),
        _fact_line("expires", utc(request.expires_at)),
    ]
    if request.foreign_link:
        body += [
            _fact_line("approval page on", request.link_host),
            _fact_line("authorization server", request.server_host or ""),
            _note_block("⚠️ The approval page is not on the authorization server."),
        ]
    body += [_fact_line(fact.label, fact.value) for fact in request_facts(request)]
    body.append(_note_block(f"{CAUTION} above."))
    actions = _open(f"Approve at {host_label(request)}", request.link) + context_actions
    return _teams_message(body, actions)


def teams_outcome(outcome: Outcome, request: ApprovalRequest | None) -> Payload:
    body = [_title_block(outcome_title(outcome))]
    actions: list[Payload] = []
    if request is not None:
        context_lines, actions = _teams_context(request.context)
        body += context_lines
    body += [_fact_line("outcome", outcome.message), _fact_line("at", utc(outcome.at))]
    if outcome.approver:
        body.append(_fact_line("approved by", outcome.approver))
    return _teams_message(body, actions)


def _teams_message(body: list[Payload], actions: list[Payload]) -> Payload:
    card: Payload = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if actions:
        card["actions"] = actions
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


# -- json ----------------------------------------------------------------------------------


def _value(text: object, limit: int = 300) -> str | None:
    return one_line(text, limit) if text else None


def _json_context(context: RunContext | None) -> Payload | None:
    if context is None:
        return None
    return {
        "platform": _value(context.platform),
        "repository": _value(context.repository),
        "workflow": _value(context.workflow),
        "job": _value(context.job),
        "job_variant": _value(context.job_variant),
        "job_url": safe_url(context.job_url),
        "run_url": safe_url(context.run_url),
        "run_attempt": _value(context.run_attempt),
        "commit": _value(context.commit),
        "actor": _value(context.actor),
        "change_request": _value(context.change_request),
        "change_request_url": safe_url(context.change_request_url),
    }


def json_approval(request: ApprovalRequest) -> Payload:
    code = one_line(request.user_code, 80)
    return {
        "schema": JSON_SCHEMA,
        "event": "approval_requested",
        "status": "pending",
        "title": APPROVAL_TITLE,
        "text": f"Approve at {safe_url(request.link) or 'the authorization server'} with code "
        f"{code}, before {utc(request.expires_at)}. {CAUTION} {code}.",
        "markdown": approval_markdown(request),
        "request": {
            "link": safe_url(request.link),
            "verification_uri": safe_url(request.verification_uri),
            "user_code": code,
            "expires_at": request.expires_at.isoformat(timespec="seconds"),
            "scope": _value(request.scope),
            "resource": [one_line(item, 300) for item in request.resource],
            "dpop_jkt": _value(request.dpop_jkt),
            "server_host": _value(request.server_host),
            "foreign_link": request.foreign_link,
        },
        "outcome": None,
        "context": _json_context(request.context),
    }


def json_outcome(outcome: Outcome, request: ApprovalRequest | None) -> Payload:
    title = outcome_title(outcome)
    return {
        "schema": JSON_SCHEMA,
        "event": "finished",
        "status": outcome.status,
        "title": title,
        "text": f"{title}: {one_line(outcome.message, 300)}",
        "markdown": outcome_markdown(outcome, request),
        "request": None,
        "outcome": {
            "status": outcome.status,
            "message": one_line(outcome.message, 300),
            "approver": _value(outcome.approver),
            "at": outcome.at.isoformat(timespec="seconds"),
        },
        "context": _json_context(request.context if request else None),
    }


APPROVAL_MESSAGES: dict[str, Callable[[ApprovalRequest], Payload]] = {
    "slack": slack_approval,
    "teams": teams_approval,
    "json": json_approval,
}
OUTCOME_MESSAGES: dict[str, Callable[[Outcome, ApprovalRequest | None], Payload]] = {
    "slack": slack_outcome,
    "teams": teams_outcome,
    "json": json_outcome,
}
