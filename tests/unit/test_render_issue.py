"""The issue of `notify: issue`: its title names the workflow, job and run and stays inert;
its only mentions are the `notify-users` the workflow's author listed."""

from __future__ import annotations

import pytest
from support.gfm import assert_inert, read
from test_render import HOSTILE_TEXTS

from ci_shark.render import RunContext, issue_title, mentions


def test_title_names_the_workflow_job_and_run() -> None:
    context = RunContext(workflow="deploy", job="release")
    assert issue_title(context, "4242") == (
        "🔐 ci_shark: approval needed — workflow `deploy`, job `release`, run 4242"
    )
    assert issue_title(context, "4242", "denied").startswith("🔐 ci_shark: ⛔ Denied — ")


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
def test_title_is_inert_with_hostile_names(text: str) -> None:
    title = issue_title(RunContext(workflow=text, job=text), "12 @admin #3")
    assert "\n" not in title
    assert "@admin" not in title  # a run id that is not a number is left out
    assert_inert(title)


def test_mentions_are_the_listed_users_and_teams_only() -> None:
    paragraph = mentions(("alice", "@octo/deployers", "bob-2"))
    assert read(paragraph).mentions == ["alice", "octo/deployers", "bob-2"]
    assert mentions(()) == ""


def test_a_name_that_is_no_github_name_is_never_written() -> None:
    # config.py refuses these; the renderer does not rely on it.
    assert mentions(("alice bob", "[x](https://evil.example)", "@everyone!")) == ""
