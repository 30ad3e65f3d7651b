"""Messages for people: hostile server or event text cannot inject markdown, HTML, mentions or
workflow commands into the summary, the comment or the log."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from ci_shark.errors import untrusted
from ci_shark.render import (
    ApprovalRequest,
    Outcome,
    RunContext,
    approval_log_lines,
    approval_markdown,
    marker,
    md,
    md_code,
    md_link,
    outcome_markdown,
)

EXPIRES = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)

HOSTILE_TEXTS = [
    "[click me](https://evil.example/phish)",
    "![img](https://evil.example/x.png)",
    "<img src=x onerror=alert(1)>",
    "</code><script>alert(1)</script>",
    "<!-- hidden --> <details open>",
    "@octo-org/admins please approve",
    "`code` **bold** _it_ ~~s~~",
    "line one\n::add-mask::x\n::set-output name=token::stolen",
    "###[error]pwned ##[group]x ##vso[task.setvariable]y",
    "\r\n::error file=x::pwned",
    "text\u202ereversed\u200b\x1b[31mred\x00",
    "[x]: https://evil.example/ref",
    "| a | b |\n|---|---|",
    "> [!CAUTION]\n> trust me",
]


def request(**overrides: object) -> ApprovalRequest:
    fields: dict[str, object] = {
        "link": "https://auth.example/device?user_code=WDJB-MJHT",
        "verification_uri": "https://auth.example/device",
        "user_code": "WDJB-MJHT",
        "expires_at": EXPIRES,
        "scope": "deploy",
        "resource": ("https://api.example/",),
        "dpop_jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
        "context": RunContext(
            platform="github",
            repository="octo/app",
            workflow="deploy",
            job="release",
            run_url="https://github.com/octo/app/actions/runs/1",
            commit="0123456789abcdef",
            actor="octocat",
            change_request="PR #12",
            change_request_url="https://github.com/octo/app/pull/12",
        ),
    }
    fields.update(overrides)
    return ApprovalRequest(**fields)  # type: ignore[arg-type]


def links(markdown: str) -> list[str]:
    """Targets of every markdown inline link: ](target)."""
    return re.findall(r"(?<!\\)\]\(([^)\s]*)", markdown)


def assert_inert_markdown(markdown: str, *, allowed_links: set[str]) -> None:
    assert set(links(markdown)) <= allowed_links
    assert "evil.example" not in " ".join(links(markdown))
    for tag in ("<img", "<script", "</code><", "<details", "<!-- hidden"):
        assert tag not in markdown
    assert re.search(r"(?<![\w&#])@[\w-]", markdown) is None, "an unescaped @mention"
    assert not re.search(r"^\s*>\s*\[!CAUTION\]", markdown, re.MULTILINE)
    assert "##[" not in markdown


def assert_safe_log(lines: list[str]) -> None:
    for line in lines:
        assert "\n" not in line
        assert "\r" not in line
        assert not line.lstrip().startswith("::")
        assert "##[" not in line
        assert "##vso[" not in line
        assert "\x1b" not in line
        assert "\u202e" not in line


# -- the primitives ------------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_md_is_inert(text: str) -> None:
    out = md(text)
    assert "\n" not in out
    assert_inert_markdown(out, allowed_links=set())
    assert "<" not in out


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_untrusted_is_one_safe_log_line(text: str) -> None:
    # `::command::` needs a line start; untrusted text is only ever printed after a prefix.
    assert_safe_log(["ci_shark: " + untrusted(text)])


@pytest.mark.parametrize("hashes", range(2, 9))
def test_untrusted_splits_every_run_of_hashes(hashes: int) -> None:
    out = untrusted("#" * hashes + "[error]pwned")
    assert "##" not in out


def test_untrusted_bounds_the_length() -> None:
    assert len(untrusted("x" * 5000, 100)) == 100


def test_md_code_cannot_be_closed_early() -> None:
    out = md_code("</code><b>x</b>`y`")
    assert out.startswith("<code>")
    assert out.endswith("</code>")
    assert out.count("</code>") == 1
    assert "<b>" not in out


def test_md_link_keeps_safe_urls_and_encodes_markdown_breakers() -> None:
    out = md_link("Approve", "https://auth.example/device?code=A)B](javascript:x) y")
    # The URL has a space: not a URL we link to.
    assert links(out) == []
    out = md_link("Approve", "https://auth.example/device?code=A)B](x")
    (target,) = links(out)
    assert target.startswith("https://auth.example/device?code=A%29B%5D%28x")


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "http://evil.example/device",
        "data:text/html,<script>alert(1)</script>",
        "https://user:pw@auth.example/",
        "https://auth.example/\n[x](https://evil.example)",
    ],
)
def test_md_link_refuses_unsafe_urls(url: str) -> None:
    out = md_link("Approve here", url)
    assert links(out) == []
    assert out == md("Approve here")


# -- approval and outcome messages ---------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_approval_markdown_is_inert_with_hostile_code_scope_and_context(text: str) -> None:
    hostile = request(
        user_code=text,
        scope=text,
        resource=(text,),
        context=RunContext(
            repository=text,
            workflow=text,
            job=text,
            actor=text,
            commit=text,
            run_attempt=text,
            run_url="https://github.com/octo/app/actions/runs/1",
            change_request=text,
            change_request_url="javascript:alert(1)",
        ),
    )
    markdown = approval_markdown(hostile)
    assert_inert_markdown(
        markdown,
        allowed_links={
            "https://auth.example/device?user_code=WDJB-MJHT",
            "https://github.com/octo/app/actions/runs/1",
        },
    )


def test_approval_markdown_with_a_hostile_link_has_no_link() -> None:
    markdown = approval_markdown(request(link="javascript:alert(document.cookie)"))
    assert "javascript:" not in " ".join(links(markdown))


def test_approval_markdown_shows_what_the_approver_needs() -> None:
    markdown = approval_markdown(request())
    assert "](https://auth.example/device?user_code=WDJB-MJHT)" in markdown
    assert "WDJB" in markdown
    assert "MJHT" in markdown
    assert "2026-11-22 12:00:00 UTC" in markdown
    assert "0ZcOCORZNYy" in markdown
    assert "octocat" in markdown
    assert "](https://github.com/octo/app/pull/12)" in markdown


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_outcome_markdown_is_inert(text: str) -> None:
    outcome = Outcome("denied", text, approver=text, at=EXPIRES)
    markdown = outcome_markdown(outcome, request(context=RunContext(actor=text)))
    assert_inert_markdown(markdown, allowed_links=set())
    assert "WDJB" not in markdown  # the code is gone once the flow ended


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_approval_log_lines_are_safe(text: str) -> None:
    lines = approval_log_lines(
        request(
            link="https://auth.example/device?c=" + text.replace(" ", "%20"),
            user_code=text,
            scope=text,
            resource=(text, text),
        )
    )
    assert_safe_log(lines)
    assert lines[0] == "ci_shark: approval needed"


def test_approval_log_lines_show_the_link_code_and_expiry() -> None:
    text = "\n".join(approval_log_lines(request()))
    assert "https://auth.example/device?user_code=WDJB-MJHT" in text
    assert "WDJB-MJHT" in text
    assert "2026-11-22 12:00:00 UTC" in text
    assert "or enter the code at https://auth.example/device" in text


def test_marker_cannot_close_the_html_comment_early() -> None:
    context = RunContext(repository="octo/app --> <b>x</b>", workflow="w", job="j")
    out = marker(context)
    assert out.startswith("<!-- ci-shark:")
    assert out.endswith(" -->")
    assert out.count("-->") == 1
    assert "<b>" not in out


def test_marker_is_stable_per_job_and_differs_between_jobs() -> None:
    one = RunContext(repository="octo/app", workflow="deploy", job="a")
    assert marker(one) == marker(RunContext(repository="octo/app", workflow="deploy", job="a"))
    assert marker(one) != marker(RunContext(repository="octo/app", workflow="deploy", job="b"))


def test_marker_differs_between_matrix_legs_and_stays_inert() -> None:
    def leg(variant: str | None) -> RunContext:
        return RunContext(repository="octo/app", workflow="deploy", job="a", job_variant=variant)

    assert marker(leg("env: prod")) == marker(leg("env: prod"))
    assert marker(leg("env: prod")) != marker(leg("env: staging"))
    assert marker(leg("env: prod")) != marker(leg(None))
    hostile = marker(leg("x --> <img src=x> " + "y" * 500))
    assert hostile.count("-->") == 1
    assert "<img" not in hostile
    assert len(hostile) < 300


def test_the_matrix_leg_is_shown_beside_the_job_inertly() -> None:
    context = RunContext(repository="octo/app", job="deploy", job_variant="env: [prod](x) @team")
    text = approval_markdown(request(context=context))
    assert "job deploy (env: \\[prod\\]\\(x\\) &#64;team)" in text
