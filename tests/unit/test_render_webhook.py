"""Webhook messages: hostile server or CI text cannot add a link or a mention in any format.

Slack mrkdwn is read with tests/slack_mrkdwn.py (what Slack, Mattermost, Rocket.Chat or
Discord's /slack endpoint would link or mention); the markdown parts (Teams' TextBlocks,
the json format's `markdown`) as GitHub renders them (tests/support/gfm.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from support import gfm, slack_mrkdwn
from test_render import APPROVE, HOSTILE_TEXTS, PULL, RUN, request

from ci_shark.render import Outcome, RunContext
from ci_shark.render.json_message import JSON_SCHEMA, json_approval, json_outcome
from ci_shark.render.slack import slack_approval, slack_outcome
from ci_shark.render.teams import teams_approval, teams_outcome
from ci_shark.safe_text import one_line, slack_code, slack_link
from ci_shark.secret import Secret

OURS = frozenset({APPROVE, RUN, PULL})
AT = datetime(2026, 11, 22, 12, 3, tzinfo=timezone.utc)


def hostile_context(text: str) -> RunContext:
    return RunContext(
        platform="github",
        repository=text,
        workflow=text,
        job=text,
        job_variant=text,
        run_url=RUN,
        run_attempt=text,
        commit=text,
        actor=text,
        change_request=text,
        change_request_url=PULL,
    )


def hostile_request(text: str) -> Any:
    return request(
        user_code=text, scope=text, resource=(text,), dpop_jkt=text, context=hostile_context(text)
    )


def walk(node: object) -> Iterator[dict[str, Any]]:
    """Every JSON object in a card, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def card(payload: dict[str, Any]) -> dict[str, Any]:
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    content: dict[str, Any] = attachment["content"]
    assert content["type"] == "AdaptiveCard"
    return content


# -- slack ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_slack_code_shows_the_text_and_nothing_live(text: str) -> None:
    shown = slack_mrkdwn.assert_inert(f"scope {slack_code(text)} here")
    assert shown.code == [one_line(text).replace("`", "\u02cb")]


@pytest.mark.parametrize(
    "text", ["<!channel>", "<@U0123|admin>", "<https://evil.example|click>", "<!here> @here"]
)
def test_slack_control_sequences_are_escaped(text: str) -> None:
    assert "<" not in slack_code(text)
    slack_mrkdwn.assert_inert(slack_code(text))


def test_slack_link_encodes_what_would_end_it() -> None:
    link = slack_link("open", "https://auth.example/device?a=1|2&b=[x]")
    assert link == "<https://auth.example/device?a=1%7C2&amp;b=%5Bx%5D|open>"
    found = slack_mrkdwn.read(link)
    assert found.links == ["https://auth.example/device?a=1%7C2&b=%5Bx%5D"]


def test_slack_link_to_an_unsafe_url_is_just_the_label() -> None:
    assert slack_link("open", "http://evil.example/") == "open"


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_slack_approval_is_inert_with_hostile_texts(text: str) -> None:
    message = slack_approval(hostile_request(text))
    shown = slack_mrkdwn.assert_inert(message["text"], links=OURS)
    assert APPROVE in shown.links
    assert message["unfurl_links"] is False


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_slack_outcome_is_inert_with_hostile_texts(text: str) -> None:
    outcome = Outcome("denied", text, approver=text, at=AT)
    message = slack_outcome(outcome, hostile_request(text))
    shown = slack_mrkdwn.assert_inert(message["text"], links=OURS)
    assert APPROVE not in shown.links  # the outcome has no link to approve, no code
    assert "⛔ Denied" in shown.text


def test_slack_approval_shows_what_the_approver_needs() -> None:
    shown = slack_mrkdwn.read(slack_approval(request())["text"])
    assert shown.links == [RUN, PULL, APPROVE]
    for value in ("WDJB-MJHT", "octo/app", "deploy", "release", "0123456789ab", "octocat"):
        assert value in shown.code
    assert "2026-11-22 12:00:00 UTC" in shown.text
    assert "Approve at auth.example" in shown.text


# -- teams ---------------------------------------------------------------------------------


OUR_TEXT_BLOCKS = {
    "🔐 ci_shark: a CI job asks for a credential",
    "Approve only a run you expect, and only if the page shows the code above.",
    "⚠️ The approval page is not on the authorization server.",
    "🔐 ci_shark: ⛔ Denied",
}


def assert_card_inert(payload: dict[str, Any], text: str) -> None:
    content = card(payload)
    objects = list(walk(content))
    for obj in objects:
        assert "msteams" not in obj
        assert "entities" not in obj
        if obj.get("type") == "TextBlock":  # markdown: our words only
            assert obj["text"] in OUR_TEXT_BLOCKS
            gfm.assert_inert(obj["text"])
    urls = {obj["url"] for obj in objects if obj.get("type") == "Action.OpenUrl"}
    assert urls <= OURS
    runs = [obj["text"] for obj in objects if obj.get("type") == "TextRun"]
    assert any(one_line(text) in run for run in runs if one_line(text))


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_teams_approval_keeps_hostile_text_in_plain_text_runs(text: str) -> None:
    payload = teams_approval(hostile_request(text))
    assert_card_inert(payload, text)
    actions = card(payload)["actions"]
    assert actions[0] == {
        "type": "Action.OpenUrl",
        "title": "Approve at auth.example",
        "url": APPROVE,
    }


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_teams_outcome_keeps_hostile_text_in_plain_text_runs(text: str) -> None:
    payload = teams_outcome(Outcome("denied", text, approver=text, at=AT), hostile_request(text))
    assert_card_inert(payload, text)
    assert APPROVE not in json.dumps(payload)


def test_teams_card_flags_an_approval_page_on_another_host() -> None:
    payload = teams_approval(request(server_host="auth.other"))
    runs = [obj.get("text") for obj in walk(card(payload)) if obj.get("type") == "TextRun"]
    assert "auth.other" in runs
    assert "⚠️ The approval page is not on the authorization server." in json.dumps(
        payload, ensure_ascii=False
    )


# -- json ----------------------------------------------------------------------------------


def test_json_approval_has_every_field() -> None:
    payload = json_approval(request())
    assert payload["schema"] == JSON_SCHEMA
    assert payload["event"] == "approval_requested"
    assert payload["status"] == "pending"
    assert payload["outcome"] is None
    assert payload["request"] == {
        "link": APPROVE,
        "verification_uri": "https://auth.example/device",
        "user_code": "WDJB-MJHT",
        "expires_at": "2026-11-22T12:00:00+00:00",
        "scope": "deploy",
        "resource": ["https://api.example/"],
        "dpop_jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
        "server_host": "auth.example",
        "foreign_link": False,
    }
    assert payload["context"]["repository"] == "octo/app"
    assert payload["context"]["run_url"] == RUN
    assert payload["context"]["change_request_url"] == PULL
    gfm.assert_inert(payload["markdown"], links=OURS)


def test_json_outcome_has_the_same_fields_and_no_code() -> None:
    approval = json_approval(request())
    payload = json_outcome(Outcome("approved", "credentials exported", "alice", AT), request())
    assert payload.keys() == approval.keys()
    assert payload["event"] == "finished"
    assert payload["status"] == "approved"
    assert payload["request"] is None
    assert payload["outcome"] == {
        "status": "approved",
        "message": "credentials exported",
        "approver": "alice",
        "at": "2026-11-22T12:03:00+00:00",
    }
    assert "WDJB-MJHT" not in json.dumps(payload)


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_json_markdown_is_inert_and_values_are_one_line(text: str) -> None:
    approval = json_approval(hostile_request(text))
    outcome = json_outcome(Outcome("denied", text, approver=text, at=AT), hostile_request(text))
    for payload in (approval, outcome):
        gfm.assert_inert(payload["markdown"], links=OURS)
        for obj in walk(payload):
            for value in obj.values():
                if isinstance(value, str) and value is not obj.get("markdown"):
                    assert "\n" not in value
                    assert "\r" not in value
                    assert "\x1b" not in value


def test_every_format_redacts_the_secrets_of_the_run() -> None:
    secret = Secret("device-code-SECRET-5e8a")
    text = f"denied: {secret.reveal()} was wrong"
    outcome = Outcome("denied", text, at=AT)
    for payload in (
        slack_outcome(outcome, request()),
        teams_outcome(outcome, request()),
        json_outcome(outcome, request()),
    ):
        assert secret.reveal() not in json.dumps(payload)
