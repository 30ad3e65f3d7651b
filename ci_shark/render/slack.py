"""Slack mrkdwn: one ``text``, what Slack, Mattermost, Rocket.Chat and Discord's ``/slack``
endpoint all read.

- A value we did not write is only ever an inline code span (:func:`slack_code`):
  ``<…>`` sequences, mentions and autolinks are dead there, in every one of those
  receivers. Our words pass through :func:`slack_escape`.
- A link comes only from :func:`slack_link`, with a label of our words: a fact's own link
  is ``(open)`` after its value, or its label when it has no value.
- No unfurling: a preview would have Slack's crawler open the approval link.

Layout as the PR comment's: the run's facts on a line (a line per group, under its title
when there are several), the link and the code, the requested facts, the caution.
"""

from __future__ import annotations

from typing import Any

from ci_shark.render import facts
from ci_shark.render.domain import ApprovalRequest, Outcome
from ci_shark.safe_text import safe_url, slack_code, slack_escape, slack_link


def slack_approval(request: ApprovalRequest) -> dict[str, Any]:
    code = slack_code(request.user_code, facts.CODE_LIMIT)
    lines = [
        f"*{slack_escape(facts.APPROVAL_TITLE)}*",
        *_asking(facts.asking(request)),
        f"*{slack_link(f'Approve at {facts.page_host(request)}', request.link)}* with code {code}"
        f" — expires {facts.utc(request.expires_at)}",
    ]
    if request.foreign_link:
        hosts = slack_code(request.link_host), slack_code(request.server_host)
        lines.append(f"⚠️ {facts.sentence(facts.foreign_host(*hosts))}. {facts.TRUST_HOST}")
    lines += [_line(facts.requested(request)), f"{slack_escape(facts.CAUTION)} {code}."]
    return _message(lines)


def slack_outcome(outcome: Outcome, request: ApprovalRequest | None) -> dict[str, Any]:
    lines = [f"*{slack_escape(facts.outcome_title(outcome.status))}*"]
    if request is not None:
        lines += _asking(facts.asking(request))
    lines.append(f"{slack_code(outcome.message, 300)} — {facts.utc(outcome.at)}")
    if outcome.approver:
        lines.append(f"Approved by {slack_code(outcome.approver)}.")
    return _message(lines)


def _message(lines: list[str]) -> dict[str, Any]:
    return {"text": "\n".join(lines), "unfurl_links": False, "unfurl_media": False}


def _asking(groups: tuple[facts.FactGroup, ...]) -> list[str]:
    titled = (
        (f"*{slack_escape(facts.sentence(group.title))}:* " if group.title else "")
        + _line(group.facts)
        for group in groups
    )
    return list(titled) or [facts.NO_CONTEXT]


def _line(items: tuple[facts.Fact, ...]) -> str:
    return " · ".join(_fact(fact) for fact in items)


def _fact(fact: facts.Fact) -> str:
    if fact.shown:
        values = ", ".join(slack_code(value, fact.limit) for value in fact.shown)
        values = f"*{values}*" if fact.lead else values
        text = values if fact.bare else f"{slack_escape(fact.label)} {values}"
    else:  # the label says it, and carries the link
        words = f"{fact.label}: {fact.otherwise}" if fact.otherwise else fact.label
        text = slack_link(words, fact.url) if fact.url else slack_escape(words)
    if fact.aside is not None and fact.aside.has_text:
        text += f" ({_fact(fact.aside)})"
    if fact.shown and fact.url and safe_url(fact.url):
        text += f" ({slack_link('open', fact.url)})"
    return text
