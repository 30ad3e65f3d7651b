"""What every platform shares about the notify channels: the webhook URL is masked before
anything else is written, `auto` never means webhook or issue (they need configuration),
and `issue` off GitHub is one warning."""

from __future__ import annotations

import httpx
import pytest

from ci_shark.platforms.azure import AzurePlatform
from ci_shark.platforms.base import Platform
from ci_shark.platforms.github import GitHubPlatform
from ci_shark.platforms.gitlab import GitLabPlatform
from ci_shark.render import Outcome

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
    assert "webhook" not in platform.channels
    assert "issue" not in platform.channels
    assert platform.webhook is None


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
