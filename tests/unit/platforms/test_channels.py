"""What every platform shares about the notify channels: the webhook URL is masked before
anything else is written, `auto` never means webhook or issue (they need configuration),
a channel this CI lacks is one warning, the log always comes first, and a failing channel
is one warning that never reaches the flow."""

from __future__ import annotations

import importlib
from typing import ClassVar

import httpx
import pytest

from ci_shark.config import NOTIFY_CHANNELS, Settings
from ci_shark.errors import Cancelled, CiSharkError, ExitCode
from ci_shark.platforms import known_platforms
from ci_shark.platforms.azure import AzurePlatform
from ci_shark.platforms.base import Platform
from ci_shark.platforms.channels import EVERY_CI, Channel, Channels, Registered
from ci_shark.platforms.github import GitHubPlatform
from ci_shark.platforms.gitlab import GitLabPlatform
from ci_shark.render import ApprovalRequest, Outcome, RunContext

from .platform_fakes import Streams, request, settings

HOOK = "https://hooks.slack.com/services/T000/B000/xoxSECRETpath0123"
GITHUB_ENV = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "octo/app"}


def refuse(_: httpx.Request) -> httpx.Response:
    raise AssertionError("nothing may be sent")


@pytest.mark.parametrize(
    ("platform_class", "env", "mask_line"),
    [
        (GitHubPlatform, GITHUB_ENV, f"::add-mask::{HOOK}"),
        (AzurePlatform, {"TF_BUILD": "True"}, f"##vso[task.setsecret]{HOOK}"),
    ],
)
def test_the_webhook_url_is_masked_first(
    platform_class: type[Platform], env: dict[str, str], mask_line: str
) -> None:
    streams = Streams()
    platform_class(settings(webhook_url=HOOK), env, **streams.kwargs())

    assert streams.all().splitlines() == [mask_line]


@pytest.mark.parametrize("platform_class", [Platform, GitHubPlatform, GitLabPlatform])
def test_auto_never_posts_to_a_webhook(platform_class: type[Platform]) -> None:
    platform = platform_class(
        settings(webhook_url=HOOK),
        GITHUB_ENV,
        transport=httpx.MockTransport(refuse),
        **Streams().kwargs(),
    )
    assert "webhook" not in platform.channels.names
    assert "issue" not in platform.channels.names
    assert platform.channels.get("webhook") is None


@pytest.mark.parametrize(
    ("platform_class", "env", "expected"),
    [
        (GitHubPlatform, GITHUB_ENV, ("log", "summary", "comment", "webhook")),
        (GitLabPlatform, {"GITLAB_CI": "true"}, ("log", "comment", "webhook")),
        (Platform, {}, ("log", "webhook")),
    ],
)
def test_auto_plus_a_named_channel_keeps_both(
    platform_class: type[Platform], env: dict[str, str], expected: tuple[str, ...]
) -> None:
    # `notify: auto,webhook` once meant auto alone: the webhook was dropped without a word.
    platform = platform_class(
        settings(webhook_url=HOOK, notify=("auto", "webhook")),
        env,
        transport=httpx.MockTransport(refuse),
        **Streams().kwargs(),
    )
    assert platform.channels.names == expected


def test_issue_off_github_is_one_warning_and_nothing_else() -> None:
    streams = Streams()
    platform = GitLabPlatform(
        settings(notify=("log", "issue")),
        {"GITLAB_CI": "true"},
        transport=httpx.MockTransport(refuse),
        **streams.kwargs(),
    )
    approval = request(platform.context())
    platform.announce(approval)
    platform.announce(approval)  # a renewal: not said again

    warnings = [line for line in streams.all().splitlines() if "warning" in line]
    assert warnings == [
        "ci_shark: warning: `notify: issue` works on GitHub only; ignored on gitlab"
    ]


def test_a_webhook_url_httpx_cannot_use_is_a_warning_not_a_crash() -> None:
    streams = Streams()
    platform = Platform(
        settings(notify=("log", "webhook"), webhook_url="https://xn--/services/T0/B0/SECRETpath"),
        {},
        **streams.kwargs(),
    )
    approval = request(platform.context())
    platform.announce(approval)
    platform.finish(Outcome("approved", "credentials exported"), approval)

    warnings = [line for line in streams.all().splitlines() if "warning" in line]
    assert warnings == [
        f"ci_shark: warning: could not send the {what} to the webhook: its URL cannot be used "
        "(check `webhook-url`)"
        for what in ("request", "outcome")
    ]
    assert "SECRETpath" not in streams.all()


class Recording(Channel):
    """A channel that records its calls and fails where it is told to."""

    def __init__(self, calls: list[str], name: str, fail: str = "", error: Exception | None = None):
        self.calls, self.name, self.fail = calls, name, fail
        self.error = error or RuntimeError(f"{name} broke at https://hooks.example/SECRETpath")

    def announce(self, request: ApprovalRequest) -> None:
        self._call("announce")

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        self._call("finish")

    def close(self) -> None:
        self._call("close")

    def _call(self, what: str) -> None:
        self.calls.append(f"{self.name}.{what}")
        if what == self.fail:
            raise self.error


def test_a_failing_channel_is_one_warning_and_then_left_alone() -> None:
    calls: list[str] = []
    warnings: list[str] = []
    channels = Channels(
        [
            (name, Recording(calls, name, fail="announce" if name == "comment" else ""))
            for name in ("log", "comment", "webhook")
        ],
        warnings.append,
    )
    approval = request(RunContext())
    channels.announce(approval)
    channels.announce(approval)  # a renewal: the broken channel is not asked again
    channels.finish(Outcome("approved", "credentials exported"), approval)

    assert calls == [
        "log.announce",
        "comment.announce",
        "webhook.announce",
        "log.announce",
        "webhook.announce",
        "log.finish",
        "webhook.finish",
        "log.close",
        "comment.close",
        "webhook.close",
    ]
    # Its words only: an unexpected error's text may quote a URL or a secret.
    assert warnings == [
        "the comment channel failed (RuntimeError); the approval does not depend on it"
    ]


def test_finish_never_raises_and_closes_every_channel() -> None:
    calls: list[str] = []
    warnings: list[str] = []
    channels = Channels(
        [
            ("summary", Recording(calls, "summary", fail="finish", error=OSError("disk full"))),
            ("comment", Recording(calls, "comment", fail="close")),
            ("issue", Recording(calls, "issue", fail="finish", error=CiSharkError("ours"))),
        ],
        warnings.append,
    )
    channels.finish(Outcome("error", "the first error"), None)  # no exception

    assert calls == [
        "summary.finish",
        "comment.finish",
        "issue.finish",
        "summary.close",
        "comment.close",
        "issue.close",
    ]
    assert warnings == [
        "the summary channel failed (OSError); the approval does not depend on it",
        "the issue channel failed (ours); the approval does not depend on it",
    ]


def test_a_cancellation_while_announcing_ends_the_wait() -> None:
    cancelled = Cancelled("SIGTERM", ExitCode.SIGTERM)
    calls: list[str] = []
    channels = Channels(
        [("comment", Recording(calls, "comment", fail="announce", error=cancelled))],
        lambda _: None,
    )
    with pytest.raises(Cancelled):
        channels.announce(request(RunContext()))


def test_the_log_comes_first_even_with_notify_none() -> None:
    streams = Streams()
    platform = Platform(settings(notify=("none",)), {}, **streams.kwargs())
    assert platform.channels.names == ("log",)
    platform.announce(request(platform.context()))
    assert "WDJB-MJHT" in streams.stderr.getvalue()


@pytest.mark.parametrize(
    ("platform_class", "env", "notify", "warning"),
    [
        (
            GitLabPlatform,
            {"GITLAB_CI": "true"},
            "summary",
            "`notify: summary` works on GitHub, Buildkite and Azure Pipelines only; "
            "ignored on gitlab",
        ),
        (
            AzurePlatform,
            {"TF_BUILD": "True"},
            "comment",
            "`notify: comment` works on GitHub and GitLab only; ignored on azure",
        ),
        (Platform, {}, "issue", "`notify: issue` works on GitHub only; ignored on generic"),
    ],
)
def test_a_channel_this_ci_lacks_says_where_it_works(
    platform_class: type[Platform], env: dict[str, str], notify: str, warning: str
) -> None:
    streams = Streams()
    platform = platform_class(settings(notify=("log", notify)), env, **streams.kwargs())
    platform.announce(request(platform.context()))
    assert warning in streams.all()


def test_every_registered_channel_can_be_built() -> None:
    registered = [*EVERY_CI.values()]
    for platform_class in known_platforms():
        registered += platform_class.own_channels.values()
        assert set(platform_class.auto_channels) - {"log"} <= set(platform_class.own_channels)
    for entry in registered:
        assert callable(getattr(importlib.import_module(entry.module), entry.builder))
        assert all(field in Settings.model_fields for field in entry.secrets)
    assert {"summary", "comment", "issue", "webhook"} <= set(NOTIFY_CHANNELS)


def test_a_channel_that_cannot_be_set_up_is_one_warning() -> None:
    class Broken(Platform):
        own_channels: ClassVar[dict[str, Registered]] = {
            "summary": Registered("ci_shark.platforms.webhook", "no_such_builder"),
        }

    streams = Streams()
    platform = Broken(settings(notify=("log", "summary")), {}, **streams.kwargs())
    approval = request(platform.context())
    platform.announce(approval)
    platform.finish(Outcome("approved", "credentials exported"), approval)

    warnings = [line for line in streams.all().splitlines() if "warning" in line]
    assert warnings == [
        "ci_shark: warning: the summary channel could not be set up (AttributeError); "
        "the approval does not depend on it"
    ]
    assert "WDJB-MJHT" in streams.all()
