"""A Teams message with one Adaptive Card (version 1.4): what Teams incoming webhooks and
the Workflows "when a Teams webhook request is received" flow accept.

- A ``TextBlock`` is markdown: it holds our words only (titles, notes, group titles).
- A value we did not write is a ``TextRun`` of a ``RichTextBlock`` (plain text, shown as
  it is), through :func:`card_text`.
- Links are ``Action.OpenUrl`` buttons, to URLs from :func:`safe_url`: the approval page,
  then each fact's link ("Open the run"). No mention entity is ever sent.

Layout: the title, a line per fact (the run's, each group under its title when there are
several), the code and expiry, the requested facts, the caution; the buttons below.
"""

from __future__ import annotations

from typing import Any

from ci_shark.render import facts
from ci_shark.render.domain import ApprovalRequest, Outcome
from ci_shark.safe_text import card_text, safe_url

Payload = dict[str, Any]  # a JSON object


def teams_approval(request: ApprovalRequest) -> Payload:
    groups = facts.asking(request)
    code = facts.Fact("user_code", "code", request.user_code, limit=facts.CODE_LIMIT, lead=True)
    body = [
        _title(facts.APPROVAL_TITLE),
        *_group_lines(groups),
        _line(code),
        _line(facts.Fact("expires_at", "expires", facts.utc(request.expires_at))),
    ]
    if request.foreign_link:
        body += [
            _line(facts.Fact("link_host", "approval page on", request.link_host)),
            _line(facts.Fact("server_host", "authorization server", request.server_host)),
            _note("⚠️ The approval page is not on the authorization server."),
        ]
    body += [_line(fact) for fact in facts.requested(request)]
    body.append(_note(f"{facts.CAUTION} above."))
    approve = _open(f"Approve at {facts.page_host(request)}", request.link)
    return _message(body, approve + _links(groups))


def teams_outcome(outcome: Outcome, request: ApprovalRequest | None) -> Payload:
    groups = facts.asking(request) if request is not None else ()
    body = [
        _title(facts.outcome_title(outcome.status)),
        *_group_lines(groups),
        _line(facts.Fact("message", "outcome", outcome.message, limit=300)),
        _line(facts.Fact("at", "at", facts.utc(outcome.at))),
    ]
    if outcome.approver:
        body.append(_line(facts.Fact("approver", "approved by", outcome.approver)))
    return _message(body, _links(groups))


def _title(words: str) -> Payload:
    return {"type": "TextBlock", "text": words, "weight": "Bolder", "size": "Medium", "wrap": True}


def _note(words: str) -> Payload:
    return {"type": "TextBlock", "text": words, "wrap": True, "isSubtle": True}


def _group_lines(groups: tuple[facts.FactGroup, ...]) -> list[Payload]:
    lines = []
    for group in groups:
        if group.title:
            lines.append({"type": "TextBlock", "text": facts.sentence(group.title), "wrap": True})
        lines += [_line(fact) for fact in group.facts if fact.has_text]
    return lines


def _line(fact: facts.Fact) -> Payload:
    return {"type": "RichTextBlock", "inlines": _runs(fact, ": ")}


def _runs(fact: facts.Fact, after_label: str) -> list[Payload]:
    """``label: value (detail)``, each value a run of its own in monospace."""
    runs = [] if fact.bare else [_plain(fact.long_label + after_label)]
    for index, value in enumerate(fact.shown):
        runs += [_plain(", ")] if index else []
        run = {"type": "TextRun", "text": card_text(value, fact.limit), "fontType": "Monospace"}
        if fact.lead:
            run["weight"] = "Bolder"
        runs.append(run)
    if not fact.shown and fact.otherwise:
        runs.append(_plain(fact.otherwise))
    if fact.aside is not None and fact.aside.has_text:
        detail = _runs(fact.aside, " ")
        runs += [_plain(" ("), *detail, _plain(")")] if fact.shown else detail
    return runs


def _plain(words: str) -> Payload:
    return {"type": "TextRun", "text": words}


def _links(groups: tuple[facts.FactGroup, ...]) -> list[Payload]:
    return [
        action
        for group in groups
        for fact in group.facts
        for action in _open(f"Open the {fact.label}", fact.url)
    ]


def _open(title: str, url: str | None) -> list[Payload]:
    target = safe_url(url)
    return [{"type": "Action.OpenUrl", "title": title, "url": target}] if target else []


def _message(body: list[Payload], actions: list[Payload]) -> Payload:
    card: Payload = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    if actions:
        card["actions"] = actions
    attachment = {
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": None,
        "content": card,
    }
    return {"type": "message", "attachments": [attachment]}
