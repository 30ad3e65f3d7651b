"""The ``json`` webhook format: :data:`JSON_SCHEMA`, for a receiver of your own.

- The same fields in both messages, null where they do not apply; the fields of schema
  v1 (docs/notify.md) are there even when unknown. Fields are only ever added to a
  version: a new fact appears under its name.
- Values are data, not markup: one line (:func:`one_line`, which also takes every secret
  of the run out), at most 300 characters (not cut short for display: a commit is whole),
  URLs only through :func:`safe_url`. Whoever shows them escapes them. ``markdown`` is the
  PR comment's text, inert under GitHub's rendering.
- A fact is its value under its name, its link under ``<name>_url``, its detail under the
  detail's name; a group of facts is an object named as the group (``context``: what the
  job says about itself).
"""

from __future__ import annotations

from typing import Any

from ci_shark.render import facts
from ci_shark.render.domain import ApprovalRequest, Outcome
from ci_shark.render.gfm import approval_markdown, outcome_markdown
from ci_shark.safe_text import one_line, safe_url

JSON_SCHEMA = "ci_shark.webhook.v1"
VALUE_LIMIT = 300
V1_CONTEXT = (
    "platform",
    "repository",
    "workflow",
    "job",
    "job_variant",
    "job_url",
    "run_url",
    "run_attempt",
    "commit",
    "actor",
    "change_request",
    "change_request_url",
)

Payload = dict[str, Any]  # a JSON object


def json_approval(request: ApprovalRequest) -> Payload:
    code = one_line(request.user_code, facts.CODE_LIMIT)
    return {
        "schema": JSON_SCHEMA,
        "event": "approval_requested",
        "status": "pending",
        "title": facts.APPROVAL_TITLE,
        "text": f"Approve at {safe_url(request.link) or 'the authorization server'} with code "
        f"{code}, before {facts.utc(request.expires_at)}. {facts.CAUTION} {code}.",
        "markdown": approval_markdown(request),
        "request": {
            "link": safe_url(request.link),
            "verification_uri": safe_url(request.verification_uri),
            "user_code": code,
            "expires_at": request.expires_at.isoformat(timespec="seconds"),
            "scope": None,  # schema v1's fields of the requested facts, when unknown
            "resource": [],
            "dpop_jkt": None,
            **_fields(facts.requested(request)),
            "server_host": _text(request.server_host),
            "foreign_link": request.foreign_link,
        },
        "outcome": None,
        **_groups(request),
    }


def json_outcome(outcome: Outcome, request: ApprovalRequest | None) -> Payload:
    title = facts.outcome_title(outcome.status)
    return {
        "schema": JSON_SCHEMA,
        "event": "finished",
        "status": outcome.status,
        "title": title,
        "text": f"{title}: {one_line(outcome.message, VALUE_LIMIT)}",
        "markdown": outcome_markdown(outcome, request),
        "request": None,
        "outcome": {
            "status": outcome.status,
            "message": one_line(outcome.message, VALUE_LIMIT),
            "approver": _text(outcome.approver),
            "at": outcome.at.isoformat(timespec="seconds"),
        },
        **_groups(request),
    }


def _groups(request: ApprovalRequest | None) -> Payload:
    """Who asks: ``context`` (schema v1's fields, null when unknown), then one object per
    other group of facts."""
    if request is None:
        return {"context": None}
    context = dict.fromkeys(V1_CONTEXT) | {"platform": _text(request.context.platform)}
    groups: Payload = {"context": context}
    for group in facts.asking(request):
        if group.name == "context":
            context.update(_fields(group.facts))
        else:
            groups[group.name] = _fields(group.facts)
    return groups


def _fields(items: tuple[facts.Fact, ...]) -> Payload:
    fields: Payload = {}
    for fact in items:
        if isinstance(fact.value, tuple):
            fields[fact.name] = [one_line(value, VALUE_LIMIT) for value in fact.value]
        elif fact.value:
            fields[fact.name] = one_line(fact.value, VALUE_LIMIT)
        if fact.url is not None:
            fields[f"{fact.name}_url"] = safe_url(fact.url)
        if fact.aside is not None:
            fields |= _fields((fact.aside,))
    return fields


def _text(value: str | None) -> str | None:
    return one_line(value, VALUE_LIMIT) if value else None
