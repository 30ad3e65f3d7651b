"""Which GitHub events may run a pull request's code, judged as entrypoint.py runs them:
an event payload file, the fake REST API, the sandbox as the authorization server.

An event that may carry a fork's code and cannot be judged — a PR number missing or not a
number, a PR the API does not show, no token to ask with — ends with exit 6 before any
device code exists, and the message names the event (issue 20, item 3). A PR run whose
`github-token` is empty still logs in, with one warning that it cannot comment (issue 23).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.github_fakes import (
    FakeGitHubApi,
    RunnerFiles,
    fake_github_api,
    pull_request_payload,
    workflow_commands,
)
from test_github_action import TOKEN, SandboxFactory, run_step, step_env

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and paths")

ON_A_PR = {"url": "https://api.github.com/repos/octo/app/pulls/9"}


@pytest.fixture
def api() -> Iterator[FakeGitHubApi]:
    with fake_github_api(token=TOKEN) as fake:
        yield fake


def comment_on_pr(number: object) -> dict[str, Any]:
    issue: dict[str, Any] = {"pull_request": ON_A_PR, "title": "Deploy"}
    if number is not ...:
        issue["number"] = number
    return {"action": "created", "issue": issue, "comment": {"body": "/deploy"}}


def pull(number: int, head_repo: str | None) -> dict[str, Any]:
    return {"number": number, "head": {"repo": {"full_name": head_repo} if head_repo else None}}


def login(
    tmp_path: Path,
    api: FakeGitHubApi,
    auth_url: str,
    event: str,
    payload: dict[str, Any],
    **inputs: str,
) -> tuple[Any, RunnerFiles]:
    files = RunnerFiles.create(tmp_path, payload)
    return run_step(step_env(files, api, auth_url, event=event, **inputs), tmp_path), files


def assert_refused_before_any_device_code(
    step: Any, files: RunnerFiles, server: Any, *words: str
) -> None:
    assert step.returncode == 6, step.log
    assert server.stats.requests == ()  # not even the metadata: no device code exists
    assert files.outputs() == {"status": "refused"}
    refusal = next(line for line in step.stderr.splitlines() if "ci_shark: error:" in line)
    for word in words:
        assert word in refusal


@pytest.mark.parametrize(
    "number",
    [..., None, "9", 9.0, True, 0, -9, [9], {"n": 9}],
    ids=["missing", "null", "string", "float", "bool", "zero", "negative", "list", "object"],
)
def test_an_issue_comment_on_a_pr_without_a_pr_number_is_refused(
    number: object, sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    step, files = login(tmp_path, api, server.url, "issue_comment", comment_on_pr(number))

    assert_refused_before_any_device_code(step, files, server, "issue_comment", "issue.number")
    assert api.calls == []


def test_an_issue_comment_on_a_fork_pr_is_refused_after_reading_the_pr(
    sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    api.pulls[9] = pull(9, "mallory/app")
    server = sandbox_factory(approve_after_s=1)
    step, files = login(tmp_path, api, server.url, "issue_comment", comment_on_pr(9))

    assert_refused_before_any_device_code(step, files, server, "PR #9", "mallory/app")
    assert [(c.method, c.path) for c in api.calls] == [("GET", "/repos/octo/app/pulls/9")]


def test_an_issue_comment_on_a_pr_of_this_repository_logs_in_and_comments_there(
    sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    api.pulls[9] = pull(9, "octo/app")
    server = sandbox_factory(approve_after_s=1)
    step, files = login(tmp_path, api, server.url, "issue_comment", comment_on_pr(9))

    assert step.returncode == 0, step.log
    assert files.outputs()["status"] == "approved"
    (comment,) = api.comments_on(9)
    assert "Approved" in comment["body"]
    assert "/pull/9" in comment["body"]


@pytest.mark.parametrize(
    ("inputs", "why"),
    [
        # The CLI spells the input out: "`github-token` (CI_SHARK_GITHUB_TOKEN) is empty".
        ({"CI_SHARK_GITHUB_TOKEN": ""}, ("`github-token`", "is empty")),
        ({}, ("could not be read through the API (HTTP 404",)),  # the fake has no PR #9
    ],
    ids=["no-token", "api-error"],
)
def test_an_issue_comment_on_a_pr_the_api_cannot_show_is_refused(
    inputs: dict[str, str],
    why: tuple[str, ...],
    sandbox_factory: SandboxFactory,
    api: FakeGitHubApi,
    tmp_path: Path,
) -> None:
    server = sandbox_factory(approve_after_s=1)
    step, files = login(tmp_path, api, server.url, "issue_comment", comment_on_pr(9), **inputs)

    assert_refused_before_any_device_code(step, files, server, "issue_comment", "PR #9", *why)


@pytest.mark.parametrize(
    ("event", "payload", "words"),
    [
        ("pull_request", {"action": "opened", "number": 3}, "pull request number"),
        ("pull_request_target", {"pull_request": {"number": "3"}}, "pull request number"),
        ("pull_request_review", {"review": {}, "pull_request": None}, "pull request number"),
        ("pull_request_review_comment", {"comment": {}}, "pull request number"),
        ("merge_group", {"merge_group": {"head_ref": "refs/heads/main"}}, "head_ref"),
        ("workflow_run", {"workflow_run": {"pull_requests": []}}, "head repository"),
        ("check_run", {"check_run": {"check_suite": {"head_branch": None}}}, "head branch"),
        ("check_suite", {"check_suite": {}}, "head branch"),
    ],
)
def test_every_event_that_may_carry_pr_code_and_cannot_be_judged_is_refused(
    event: str,
    payload: dict[str, Any],
    words: str,
    sandbox_factory: SandboxFactory,
    api: FakeGitHubApi,
    tmp_path: Path,
) -> None:
    server = sandbox_factory(approve_after_s=1)
    step, files = login(tmp_path, api, server.url, event, payload)

    assert_refused_before_any_device_code(step, files, server, f"the {event} event", words)


def test_a_merge_group_of_a_fork_pr_is_refused(
    sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    api.pulls[12] = pull(12, "mallory/app")
    ref = "refs/heads/gh-readonly-queue/main/pr-12-" + "e" * 40
    server = sandbox_factory(approve_after_s=1)
    step, files = login(
        tmp_path, api, server.url, "merge_group", {"merge_group": {"head_ref": ref}}
    )

    assert_refused_before_any_device_code(step, files, server, "PR #12", "mallory/app")


def test_a_pr_run_with_an_empty_github_token_warns_once_and_logs_in(
    sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    step, files = login(
        tmp_path,
        api,
        server.url,
        "pull_request",
        pull_request_payload(7),
        CI_SHARK_GITHUB_TOKEN="",
    )

    assert step.returncode == 0, step.log
    assert files.outputs()["status"] == "approved"
    (warning,) = [c for c in workflow_commands(step.stderr) if c.name == "warning"]
    assert "no comment on PR #7" in warning.data
    assert "`github-token` is empty" in warning.data
    assert "permissions: pull-requests: write" in warning.data
    assert api.calls == []
    assert "Approved" in files.summary.read_text()


SHA = "d" * 40


def deployed(event: str, sha: object = SHA) -> dict[str, Any]:
    """A deployment (or its status, or a commit status) for ``sha``, as a preview bot makes."""
    if event == "status":
        return {"sha": sha, "state": "success", "context": "preview"}
    deployment = {"sha": sha, "ref": "feature", "environment": "preview"}
    return {"deployment": deployment} | ({"deployment_status": {}} if "status" in event else {})


def open_pull(number: int, head_repo: str, sha: str = SHA) -> dict[str, Any]:
    return {
        "number": number,
        "state": "open",
        "head": {"sha": sha, "repo": {"full_name": head_repo}},
    }


@pytest.mark.parametrize("event", ["deployment", "deployment_status", "status"])
def test_a_deployment_of_a_fork_prs_head_commit_is_refused(
    event: str, sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    # A preview bot deploys every PR's head; the deployment workflow checks that commit out.
    api.commit_pulls[SHA] = [open_pull(21, "mallory/app")]
    server = sandbox_factory(approve_after_s=1)
    step, files = login(tmp_path, api, server.url, event, deployed(event))

    assert_refused_before_any_device_code(step, files, server, "PR #21", "mallory/app")
    assert [(c.method, c.path) for c in api.calls] == [
        ("GET", f"/repos/octo/app/commits/{SHA}/pulls")
    ]


@pytest.mark.parametrize("event", ["deployment", "status"])
def test_a_deployment_of_a_commit_no_fork_pr_heads_logs_in(
    event: str, sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    api.commit_pulls[SHA] = [open_pull(22, "octo/app")]  # a branch of this repository
    server = sandbox_factory(approve_after_s=1)
    step, files = login(tmp_path, api, server.url, event, deployed(event))

    assert step.returncode == 0, step.log
    assert files.outputs()["status"] == "approved"


@pytest.mark.parametrize(
    ("payload", "inputs", "words"),
    [
        (deployed("deployment", sha=None), {}, ("names no commit",)),
        (deployed("deployment", sha="main"), {}, ("names no commit",)),
        (deployed("deployment"), {"CI_SHARK_GITHUB_TOKEN": ""}, ("`github-token`", "is empty")),
    ],
    ids=["no-sha", "not-a-sha", "no-token"],
)
def test_a_deployment_that_cannot_be_judged_is_refused(
    payload: dict[str, Any],
    inputs: dict[str, str],
    words: tuple[str, ...],
    sandbox_factory: SandboxFactory,
    api: FakeGitHubApi,
    tmp_path: Path,
) -> None:
    server = sandbox_factory(approve_after_s=1)
    step, files = login(tmp_path, api, server.url, "deployment", payload, **inputs)

    assert_refused_before_any_device_code(step, files, server, "the deployment event", *words)
