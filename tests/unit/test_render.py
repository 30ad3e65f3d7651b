"""Messages for people: hostile server or event text cannot inject markdown, HTML, mentions,
references, autolinks or workflow commands into the summary, the comment or the log.

Markdown is checked as GitHub renders it (cmark-gfm and GitHub's mention and reference
filters, tests/support/gfm.py), never with string matching on the markdown source.
"""

from __future__ import annotations

from datetime import datetime, timezone
from itertools import dropwhile, takewhile
from pathlib import Path

import pytest
from support.gfm import assert_inert, read, render

from ci_shark.render import (
    ApprovalRequest,
    Outcome,
    RunContext,
    approval_log_lines,
    approval_markdown,
    marker,
    outcome_markdown,
)
from ci_shark.safe_text import md_code, md_link, md_text, one_line, untrusted
from ci_shark.secret import Secret

EXPIRES = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
APPROVE = "https://auth.example/device?user_code=WDJB-MJHT"
RUN = "https://github.com/octo/app/actions/runs/1"
PULL = "https://github.com/octo/app/pull/12"

HOSTILE_TEXTS = [
    "[click me](https://evil.example/phish)",
    "![img](https://evil.example/x.png)",
    "<img src=x onerror=alert(1)>",
    "</code><script>alert(1)</script>",
    "<!-- hidden --> <details open>",
    "@octo-org/admins please approve",
    "&#64;octo-org/admins please approve",  # decoded to a live mention by GitHub
    "\\#1 and #2 and octo/app#3 and GH-4",  # references
    "see https://evil.example/x and www.evil.example",
    "http://2130706433/ and http://localhost:8080/x",  # decimal IPv4 and localhost
    "mail mallory@evil.example",  # e-mail autolink
    "<https://evil.example>",
    "`code` **bold** _it_ ~~s~~",
    "``` `` ` backticks ` `` ```",
    "line one\n::add-mask::x\n::set-output name=token::stolen",
    "###[error]pwned ##[group]x ##vso[task.setvariable]y",
    "\r\n::error file=x::pwned",
    "text\u202ereversed\u200b\x1b[31mred\x00",
    "[x]: https://evil.example/ref",
    "| a | b |\n|---|---|",
    "> [!CAUTION]\n> trust me",
    ":+1: :shipit:",
]


def request(**overrides: object) -> ApprovalRequest:
    fields: dict[str, object] = {
        "link": APPROVE,
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
            run_url=RUN,
            commit="0123456789abcdef",
            actor="octocat",
            change_request="PR #12",
            change_request_url=PULL,
        ),
        "server_host": "auth.example",
    }
    fields.update(overrides)
    return ApprovalRequest(**fields)  # type: ignore[arg-type]


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
def test_md_code_shows_the_text_verbatim_and_inert(text: str) -> None:
    shown = assert_inert(f"a {md_code(text, 500)} b")
    assert shown.code == [one_line(text, 500)]


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_md_code_in_a_table_cell_stays_in_its_cell(text: str) -> None:
    markdown = f"| a | b |\n|---|---|\n| x | {md_code(text, 500, in_table=True)} |\n"
    shown = assert_inert(markdown)
    assert shown.tags >= {"table", "td"}
    assert len(shown.code) == 1


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_md_text_is_plain_only_when_nothing_can_act_on_it(text: str) -> None:
    shown = assert_inert(f"a {md_text(text, 500)} b")
    assert one_line(text, 500) in shown.text


def test_plain_words_stay_plain() -> None:
    assert md_text("credentials exported") == "credentials exported"
    assert md_text("alice") == "alice"
    assert md_text("- a list?") == "`- a list?`"
    assert md_text("a.b") == "`a.b`"


def test_a_resource_url_reads_as_sent_without_backslashes() -> None:
    shown = assert_inert(md_code("https://api.example.com/"))
    assert shown.code == ["https://api.example.com/"]
    assert "\\" not in shown.text


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


def test_every_secret_of_the_run_is_redacted_from_server_text() -> None:
    device_code = Secret("dc-5f9d0a7b3c1e")
    client_secret = Secret("cs-a1b2-c3d4")
    echoed = f"bad device_code {device_code.reveal()} for client secret {client_secret.reveal()}"
    for text in (untrusted(echoed), read(md_code(echoed)).text):
        assert device_code.reveal() not in text
        assert client_secret.reveal() not in text
        assert "***" in text


def test_md_link_keeps_safe_urls_and_encodes_markdown_breakers() -> None:
    shown = read(md_link("Approve", "https://auth.example/device?code=A)B](javascript:x) y"))
    assert shown.links == []  # the URL has a space: not a URL we link to
    shown = read(md_link("Approve", "https://auth.example/device?code=A)B](x"))
    assert shown.links == ["https://auth.example/device?code=A%29B%5D%28x"]
    assert shown.text.strip() == "Approve"


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
    assert md_link("Approve here", url) == "Approve here"


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
            job_variant=text,
            actor=text,
            commit=text,
            run_attempt=text,
            run_url=RUN,
            change_request=text,
            change_request_url="javascript:alert(1)",
        ),
    )
    assert_inert(approval_markdown(hostile), links={APPROVE, RUN})


def test_approval_markdown_with_a_hostile_link_has_no_link() -> None:
    shown = read(approval_markdown(request(link="javascript:alert(document.cookie)")))
    assert not any("javascript" in link for link in shown.links)


def test_approval_markdown_shows_what_the_approver_needs() -> None:
    shown = assert_inert(approval_markdown(request()), links={APPROVE, RUN, PULL})
    assert APPROVE in shown.links
    assert "WDJB-MJHT" in shown.code
    assert "2026-11-22 12:00:00 UTC" in shown.text
    assert "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" in shown.code
    assert "triggered by octocat" in shown.text
    assert "https://api.example/" in shown.code  # as sent: no backslashes
    assert "\\" not in shown.text
    assert "another host" not in shown.text


def test_an_approval_page_on_another_host_is_flagged() -> None:
    phishy = request(link="https://auth-example.evil/device?user_code=WDJB-MJHT")
    shown = read(approval_markdown(phishy))
    assert "The approval page is on auth-example.evil, not on the authorization server" in (
        " ".join(shown.text.split())
    )
    log = " ".join(approval_log_lines(phishy))
    assert "the approval page is on auth-example.evil, not on the authorization server" in log


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_outcome_markdown_is_inert(text: str) -> None:
    outcome = Outcome("denied", text, approver=text, at=EXPIRES)
    shown = assert_inert(outcome_markdown(outcome, request(context=RunContext(actor=text))))
    assert "WDJB" not in shown.text  # the code is gone once the flow ended


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
    assert APPROVE in text
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
    shown = assert_inert(approval_markdown(request(context=context)), links={APPROVE})
    assert "env: [prod](x) @team" in shown.code


REPO = Path(__file__).resolve().parents[2]


def shown_comment(doc: str, after: str) -> str:
    """The comment a doc shows after the words ``after``, as markdown: its block quote,
    unquoted."""
    text = (REPO / doc).read_text(encoding="utf-8")
    lines = text[text.index(after) :].split("\n")
    quote = takewhile(
        lambda line: line.startswith(">"), dropwhile(lambda line: not line.startswith(">"), lines)
    )
    return "\n".join(line.removeprefix(">").removeprefix(" ") for line in quote) + "\n"


def documented_request() -> ApprovalRequest:
    context = RunContext(
        platform="github",
        repository="octo/app",
        workflow="deploy",
        job="release",
        run_url="https://github.com/octo/app/actions/runs/4242",
        run_attempt="1",
        commit="b" * 40,
        actor="maintainer",
        change_request="PR #7",
        change_request_url="https://github.com/octo/app/pull/7",
    )
    return request(
        link="https://auth.example.com/device?user_code=WDJB-MJHT",
        expires_at=datetime(2026, 11, 22, 12, 10, tzinfo=timezone.utc),
        scope="deploy:write",
        resource=(),
        dpop_jkt="NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs",
        context=context,
        server_host="auth.example.com",
    )


@pytest.mark.parametrize(
    ("doc", "after"),
    [
        ("README.md", "The PR comment (and job summary) it posts"),
        ("docs/github.md", "What the comment looks like while it waits"),
    ],
)
def test_the_docs_show_the_comment_as_github_renders_it(doc: str, after: str) -> None:
    assert render(shown_comment(doc, after)) == render(approval_markdown(documented_request()))


def test_the_github_guide_shows_the_approved_comment_as_github_renders_it() -> None:
    at = datetime(2026, 11, 22, 12, 3, tzinfo=timezone.utc)
    approved = Outcome("approved", "credentials exported", "alice", at)
    expected = outcome_markdown(approved, documented_request())
    assert render(shown_comment("docs/github.md", "and once approved")) == render(expected)
