"""`notify: webhook` through the CLI, against the loopback sandbox and a loopback webhook.

What a user notices: the chat gets the approval request (link, code, expiry, who asks)
and then the outcome, in the format they chose; a broken, failing or hung webhook costs
one warning per message and never the login; the webhook URL (a credential) is in no log;
hostile server text cannot add a link or a mention to the chat.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from support import gfm, slack_mrkdwn
from support.cli import REPO, clean_env, login_env, run_cli, run_process
from support.github_fakes import (
    HOSTILE_USER_CODE,
    HostileAuthServer,
    RunnerFiles,
    masked_values,
    workflow_commands,
)
from support.loopback_http import free_port
from support.webhook_receiver import WEBHOOK_TOKEN, WebhookReceiver

from ci_shark.config import ExplicitSettings
from ci_shark.platforms.base import Platform
from ci_shark.platforms.webhook import APPROVAL_BUDGET_S, OUTCOME_BUDGET_S
from ci_shark.render import ApprovalRequest, Outcome
from ci_shark.sandbox import SandboxServer
from ci_shark.secret import Secret

SandboxFactory = Callable[..., SandboxServer]
FORMATS = ("slack", "teams", "json")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver().start()
    yield started
    started.stop()


def webhook_env(
    server_url: str, out: Path, hook_url: str, fmt: str, **extra: str
) -> dict[str, str]:
    env = login_env(_Url(server_url), out, **extra)
    env.update(
        {
            "CI_SHARK_NOTIFY": "log,webhook",
            "CI_SHARK_WEBHOOK_URL": hook_url,
            "CI_SHARK_WEBHOOK_FORMAT": fmt,
        }
    )
    return env


class _Url:
    """What login_env reads of a server: its URL (the hostile server is no sandbox)."""

    def __init__(self, url: str) -> None:
        self.url = url


def assert_url_absent(log: str, hook_url: str) -> None:
    for secret in (hook_url, WEBHOOK_TOKEN, WEBHOOK_TOKEN.rsplit("/", 1)[1], "/services/"):
        assert secret not in log, f"the webhook URL leaked: {secret}"


def warnings_in(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.startswith("ci_shark: warning:")]


def slack_text(body: dict[str, Any]) -> slack_mrkdwn.SlackRendered:
    assert set(body) == {"text", "unfurl_links", "unfurl_media"}
    return slack_mrkdwn.read(body["text"])


def card_parts(body: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """A Teams message's TextBlock texts (markdown), TextRun texts (plain), action URLs."""
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    blocks, runs, urls = [], [], []
    stack: list[Any] = [attachment["content"]]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind == "TextBlock":
                blocks.append(node["text"])
            elif kind == "TextRun":
                runs.append(node["text"])
            elif kind == "Action.OpenUrl":
                urls.append(node["url"])
            stack.extend(node.values())
    return blocks, runs, urls


# -- the two messages ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_request_then_the_outcome_reach_the_webhook(
    fmt: str, sandbox_factory: SandboxFactory, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1.5)
    result = run_cli([], webhook_env(server.url, tmp_path, receiver.hook_url, fmt))

    assert result.returncode == 0, result.stderr
    grant = server.grants[0]
    link = f"{server.url}/device?user_code={grant.user_code}"
    assert [post.path for post in receiver.posts] == [f"/services/{WEBHOOK_TOKEN}"] * 2
    for post in receiver.posts:
        assert post.headers["content-type"] == "application/json"
        assert post.headers["user-agent"].startswith("ci_shark/")
    request, outcome = receiver.bodies()
    if fmt == "slack":
        asked, told = slack_text(request), slack_text(outcome)
        assert asked.links == [link]
        assert grant.user_code in asked.code
        assert "openid deploy:write" in asked.code
        assert "Approve at 127.0.0.1" in asked.text
        assert "expires" in asked.text
        assert "✅ Approved" in told.text
        assert "octocat" in told.code
        assert told.links == []
        assert grant.user_code not in told.text
    elif fmt == "teams":
        blocks, runs, urls = card_parts(request)
        assert urls == [link]
        assert grant.user_code in runs
        assert "openid deploy:write" in runs
        assert "🔐 ci_shark: a CI job asks for a credential" in blocks
        blocks, runs, urls = card_parts(outcome)
        assert "🔐 ci_shark: ✅ Approved" in blocks
        assert "octocat" in runs
        assert urls == []
        assert grant.user_code not in json.dumps(outcome)
    else:
        assert request["schema"] == outcome["schema"] == "ci_shark.webhook.v1"
        assert request["event"] == "approval_requested"
        assert request["status"] == "pending"
        assert request["request"]["link"] == link
        assert request["request"]["user_code"] == grant.user_code
        assert request["request"]["scope"] == "openid deploy:write"
        assert request["request"]["dpop_jkt"] == grant.jkt
        assert request["context"]["platform"] == "generic"
        assert outcome["event"] == "finished"
        assert outcome["status"] == "approved"
        assert outcome["outcome"]["approver"] == "octocat"
        assert outcome["request"] is None
        assert grant.user_code not in json.dumps(outcome)
    assert f"sent the approval request to the webhook ({fmt})" in result.stderr
    assert warnings_in(result.stderr) == []
    assert_url_absent(result.log, receiver.hook_url)


def test_a_denial_is_the_outcome_message(
    sandbox_factory: SandboxFactory, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1, decision="deny")
    result = run_cli([], webhook_env(server.url, tmp_path, receiver.hook_url, "json"))

    assert result.returncode == 3, result.stderr
    _, outcome = receiver.bodies()
    assert outcome["status"] == "denied"
    assert "⛔ Denied" in outcome["title"]


def test_no_message_when_notify_leaves_webhook_out(
    sandbox_factory: SandboxFactory, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    env = webhook_env(server.url, tmp_path, receiver.hook_url, "slack")
    env["CI_SHARK_NOTIFY"] = "auto"  # `auto` needs no configuration: never a webhook
    result = run_cli([], env)

    assert result.returncode == 0, result.stderr
    assert receiver.posts == []
    assert_url_absent(result.log, receiver.hook_url)


def test_webhook_without_a_url_is_one_warning(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    result = run_cli([], login_env(server, tmp_path, CI_SHARK_NOTIFY="log,webhook"))

    assert result.returncode == 0, result.stderr
    (warning,) = warnings_in(result.stderr)
    assert "`webhook-url` is not set" in warning


# -- failures are warnings -----------------------------------------------------------------


@pytest.mark.parametrize(("status", "answer"), [(404, b"no_service"), (500, b"<html>oops</html>")])
def test_a_failing_webhook_only_warns(
    status: int, answer: bytes, sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    receiver = WebhookReceiver(status=status, answer=answer).start()
    hook_url = receiver.hook_url
    try:
        result = run_cli([], webhook_env(server.url, tmp_path, hook_url, "slack"))
    finally:
        receiver.stop()

    assert result.returncode == 0, result.stderr
    detail = " (no_service)" if answer == b"no_service" else ""
    assert warnings_in(result.stderr) == [
        f"ci_shark: warning: could not send the request to the webhook: HTTP {status}{detail}",
        f"ci_shark: warning: could not send the outcome to the webhook: HTTP {status}{detail}",
    ]
    assert len(receiver.posts) == 2
    assert "oops" not in result.log
    assert_url_absent(result.log, hook_url)


def test_a_hung_webhook_is_cut_at_its_budget(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    receiver = WebhookReceiver(delay_s=60).start()
    hook_url = receiver.hook_url
    started = time.monotonic()
    try:
        result = run_cli([], webhook_env(server.url, tmp_path, hook_url, "teams"))
    finally:
        elapsed = time.monotonic() - started
        receiver.stop()

    assert result.returncode == 0, result.stderr
    assert [line.rsplit(":", 1)[1] for line in warnings_in(result.stderr)] == [
        " no answer in time"
    ] * 2
    # Both posts waited their whole budget, and not much more: the login went on.
    assert (
        APPROVAL_BUDGET_S + OUTCOME_BUDGET_S <= elapsed < APPROVAL_BUDGET_S + OUTCOME_BUDGET_S + 12
    )
    assert len(receiver.posts) == 2
    assert_url_absent(result.log, hook_url)


def test_a_refused_connection_only_warns(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    hook_url = f"http://127.0.0.1:{free_port()}/services/{WEBHOOK_TOKEN}"
    server = sandbox_factory(approve_after_s=1)
    result = run_cli([], webhook_env(server.url, tmp_path, hook_url, "json"))

    assert result.returncode == 0, result.stderr
    assert [line.rsplit(": ", 1)[1] for line in warnings_in(result.stderr)] == [
        "connection refused"
    ] * 2
    assert_url_absent(result.log, hook_url)


def test_a_redirect_is_not_followed(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory(approve_after_s=1)
    receiver = WebhookReceiver(status=302).start()
    try:
        result = run_cli([], webhook_env(server.url, tmp_path, receiver.hook_url, "slack"))
    finally:
        receiver.stop()

    assert result.returncode == 0, result.stderr
    assert len(receiver.posts) == 2  # one each: nothing went to a Location
    assert all("HTTP 302 (a redirect" in line for line in warnings_in(result.stderr))


def test_httpx_request_log_never_shows_the_webhook_url(
    receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A library user with INFO logging on: httpx logs each request's URL, not this one."""
    caplog.set_level(logging.INFO, logger="httpx")
    settings = ExplicitSettings(
        notify=("webhook",), webhook_url=Secret(receiver.hook_url), webhook_format="json"
    )
    platform = Platform(settings, {}, stderr=_Sink(), stdout=_Sink())
    request = ApprovalRequest(
        link="https://auth.example/device",
        verification_uri="https://auth.example/device",
        user_code="WDJB-MJHT",
        expires_at=datetime.now(timezone.utc),
        scope=None,
        resource=(),
        dpop_jkt=None,
    )
    platform.announce(request)
    platform.finish(Outcome("approved", "credentials exported"), request)
    httpx.post(f"{receiver.url}/elsewhere", json={})  # logging is on: this one is logged

    assert len(receiver.posts) == 3
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert f"{receiver.url}/elsewhere" in logged
    assert WEBHOOK_TOKEN not in logged


class _Sink:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return

    def isatty(self) -> bool:
        return False


# -- hostile server text -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_server_text_adds_no_link_and_no_mention(
    fmt: str, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    server = HostileAuthServer().start()
    try:
        env = webhook_env(server.url, tmp_path, receiver.hook_url, fmt, CI_SHARK_DPOP="false")
        result = run_cli([], env)
    finally:
        server.stop()

    assert result.returncode == 3, result.stderr
    request, outcome = receiver.bodies()

    def ours(link: str) -> bool:  # the approval link, encoded: still to 127.0.0.1
        return urlsplit(link).netloc == "127.0.0.1" and link.startswith("https://127.0.0.1/")

    if fmt == "slack":
        for body in (request, outcome):
            shown = slack_text(body)
            slack_mrkdwn.assert_inert(body["text"], links={x for x in shown.links if ours(x)})
        assert any(HOSTILE_USER_CODE in code for code in slack_text(request).code)
        assert any("@everyone" in code for code in slack_text(outcome).code)
    elif fmt == "teams":
        for body in (request, outcome):
            blocks, _runs, urls = card_parts(body)
            for block in blocks:  # markdown: our words only
                gfm.assert_inert(block)
                assert "evil" not in block
                assert "@" not in block
            assert all(ours(url) for url in urls)
        assert HOSTILE_USER_CODE in card_parts(request)[1]
    else:
        for body in (request, outcome):
            shown = gfm.read(body["markdown"])
            gfm.assert_inert(body["markdown"], links={x for x in shown.links if ours(x)})
        assert request["request"]["user_code"] == HOSTILE_USER_CODE
        assert ours(request["request"]["link"])
    assert "hostile-device-code-CANARY-7f3a" not in json.dumps(receiver.bodies())


# -- GitHub: masked first ------------------------------------------------------------------


def test_on_github_the_url_is_masked_before_anything_else(
    sandbox_factory: SandboxFactory, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    files = RunnerFiles.create(tmp_path, {"ref": "refs/heads/main"})
    env = clean_env(files.env(event_name="push", api_url="http://127.0.0.1:9"))
    env.pop("PYTHONPATH", None)
    env.update(
        {
            "CI_SHARK_AUTH_URL": server.url,
            "CI_SHARK_CLIENT_ID": "ci-shark-action-test",
            "CI_SHARK_NOTIFY": "log,summary,webhook",
            "CI_SHARK_WEBHOOK_URL": receiver.hook_url,
            "CI_SHARK_WEBHOOK_FORMAT": "slack",
            "CI_SHARK_TIMEOUT": "30",
        }
    )
    step = run_process([sys.executable, str(REPO / "entrypoint.py")], env, cwd=tmp_path)

    assert step.returncode == 0, step.log
    assert files.outputs()["status"] == "approved"
    assert len(receiver.posts) == 2
    assert step.stderr.splitlines()[0] == f"::add-mask::{receiver.hook_url}"
    assert receiver.hook_url in masked_values(step.stderr)
    for line in step.log.splitlines()[1:]:
        assert WEBHOOK_TOKEN not in line
    assert WEBHOOK_TOKEN not in files.summary.read_text()
    assert [c.name for c in workflow_commands(step.log) if c.name != "add-mask"] == []
