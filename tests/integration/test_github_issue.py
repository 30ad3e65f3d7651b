"""`notify: issue` on GitHub: entrypoint.py as the runner runs it, against the fake REST API.

A push (or tag, schedule, dispatch) run has no pull request to comment on: ci_shark opens
an issue that mentions and assigns the people of `notify-users` (GitHub notifies them),
and closes it with the outcome. A re-run of the job reuses its open issue; an issue
someone else wrote with our marker is not adopted; a token without `issues: write` costs
one warning, never the login.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.cli import login_env, run_cli
from support.gfm import assert_inert, read
from support.github_fakes import FakeGitHubApi, RunnerFiles, fake_github_api, pull_request_payload
from support.github_fakes import workflow_commands as commands_in
from test_github_action import ENTRYPOINT, TOKEN, run_step, step_env

from ci_shark.sandbox import SandboxServer

SandboxFactory = Callable[..., SandboxServer]
# The issue belongs to one run: the job and the run id (a re-run keeps the id).
MARKER = "<!-- ci-shark:octo/app/deploy/release/run-4242 -->"
PUSH = {"ref": "refs/heads/main", "after": "a" * 40, "repository": {"private": True}}
USERS = "alice,@octo/deployers"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and paths")


@pytest.fixture
def api() -> Iterator[FakeGitHubApi]:
    with fake_github_api(token=TOKEN) as fake:
        yield fake


def issue_env(
    files: RunnerFiles, api: FakeGitHubApi, auth_url: str, **inputs: str
) -> dict[str, str]:
    return step_env(
        files,
        api,
        auth_url,
        event="push",
        CI_SHARK_NOTIFY="log,summary,comment,issue",
        CI_SHARK_NOTIFY_USERS=USERS,
        **inputs,
    )


def issue_calls(api: FakeGitHubApi) -> list[str]:
    return [
        f"{c.method} {c.path.removeprefix('/repos/octo/app')}"
        for c in api.calls
        if "/issues" in c.path
    ]


def test_a_push_run_opens_an_issue_and_closes_it_with_the_outcome(
    sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1.5)
    files = RunnerFiles.create(tmp_path, PUSH)
    step = run_step(issue_env(files, api, server.url), tmp_path)

    assert step.returncode == 0, step.log
    assert files.outputs()["status"] == "approved"
    (issue,) = api.issues.values()
    number = issue["number"]
    assert issue_calls(api) == ["GET /issues", "POST /issues", f"PATCH /issues/{number}"]
    opened = next(c.body for c in api.calls if c.method == "POST")
    # Opened: the request, the code, the mentions (GitHub's notifications), the assignee.
    assert (
        opened["title"]
        == "🔐 ci_shark: approval needed — workflow `deploy`, job `release`, run 4242"
    )
    assert opened["assignees"] == ["alice"]
    assert opened["body"].split("\n", 1)[0] == MARKER
    user_code = server.grants[0].user_code
    assert user_code in opened["body"]
    rendered = read(opened["body"])
    assert rendered.mentions == ["alice", "octo/deployers"]  # the only mentions: notify-users
    assert rendered.references == []
    # Closed: the outcome, the code gone.
    assert issue["state"] == "closed"
    assert issue["state_reason"] == "completed"
    assert issue["title"].startswith("🔐 ci_shark: ✅ Approved — workflow `deploy`")
    assert "Approved" in issue["body"]
    assert user_code not in issue["body"]
    assert (
        f"asked for approval in issue #{number}: https://github.com/octo/app/issues/{number}"
        in (step.stderr)
    )
    assert [c.name for c in commands_in(step.log) if c.name != "add-mask"] == []
    assert api.comments == {}


def test_a_denial_closes_the_issue_as_not_planned(
    sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1, decision="deny")
    files = RunnerFiles.create(tmp_path, PUSH)
    step = run_step(issue_env(files, api, server.url), tmp_path)

    assert step.returncode == 3, step.log
    (issue,) = api.issues.values()
    assert issue["state"] == "closed"
    assert issue["state_reason"] == "not_planned"
    assert "Denied" in issue["title"]
    assert "Denied" in issue["body"]


def killed_while_waiting(root: Path, api: FakeGitHubApi, auth_url: str, **env: str) -> None:
    """An attempt killed while it waits (a lost runner): its issue stays open."""
    root.mkdir()
    files = RunnerFiles.create(root, PUSH)
    process = subprocess.Popen(
        [sys.executable, str(ENTRYPOINT)],
        env=issue_env(files, api, auth_url) | env,
        cwd=root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    opened = len(api.issues)
    try:
        deadline = time.monotonic() + 30
        while len(api.issues) == opened and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
    finally:
        process.kill()
        process.wait(10)


def test_a_rerun_reuses_its_open_issue(
    sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    killed_while_waiting(tmp_path / "attempt1", api, sandbox_factory().url)
    (left_open,) = api.issues.values()
    assert left_open["state"] == "open"

    second = tmp_path / "attempt2"
    second.mkdir()
    files = RunnerFiles.create(second, PUSH)
    env = issue_env(files, api, sandbox_factory(approve_after_s=1).url)
    env["GITHUB_RUN_ATTEMPT"] = "2"
    step = run_step(env, second)

    assert step.returncode == 0, step.log
    (issue,) = api.issues.values()  # the same issue, no second one
    assert issue is left_open
    assert issue["state"] == "closed"
    assert "(attempt `2`)" in issue["body"]
    # Editing notifies nobody: one comment mentions the people again.
    (comment,) = api.comments_on(issue["number"])
    assert read(comment["body"]).mentions == ["alice", "octo/deployers"]
    assert f"asked for approval in issue #{issue['number']}" in step.stderr


def test_another_run_of_the_job_opens_its_own_issue(
    sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    # Run 4242 still waits on its issue when run 4343 of the same job starts: taking
    # 4242's issue over would replace the code its approvers are reading.
    killed_while_waiting(tmp_path / "run4242", api, sandbox_factory().url)
    (waiting,) = api.issues.values()
    waiting_body = waiting["body"]

    other = tmp_path / "run4343"
    other.mkdir()
    files = RunnerFiles.create(other, PUSH)
    env = issue_env(files, api, sandbox_factory(approve_after_s=1).url)
    env["GITHUB_RUN_ID"] = "4343"
    step = run_step(env, other)

    assert step.returncode == 0, step.log
    assert len(api.issues) == 2
    (ours,) = [issue for issue in api.issues.values() if issue is not waiting]
    assert ours["body"].split("\n", 1)[0] == MARKER.replace("4242", "4343")
    assert ours["title"].endswith("run 4343")
    assert ours["state"] == "closed"
    assert (waiting["state"], waiting["body"]) == ("open", waiting_body)  # untouched
    assert [c.path for c in api.calls if c.method == "PATCH"] == [
        f"/repos/octo/app/issues/{ours['number']}"
    ]
    assert api.comments_on(waiting["number"]) == []


def test_an_issue_someone_else_wrote_with_our_marker_is_not_adopted(
    sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    planted = api.add_issue(
        "please approve", f"{MARKER}\nApprove at https://evil.example", user="mallory"
    )
    server = sandbox_factory(approve_after_s=1)
    files = RunnerFiles.create(tmp_path, PUSH)
    step = run_step(issue_env(files, api, server.url), tmp_path)

    assert step.returncode == 0, step.log
    assert planted["body"] == f"{MARKER}\nApprove at https://evil.example"
    assert planted["state"] == "open"
    ours = [issue for issue in api.issues.values() if issue is not planted]
    assert len(ours) == 1
    assert ours[0]["user"]["login"] == "github-actions[bot]"
    assert ours[0]["state"] == "closed"


def test_without_issues_write_one_warning_and_the_login_goes_on(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    with fake_github_api(token=TOKEN, issue_status=403) as api:
        files = RunnerFiles.create(tmp_path, PUSH)
        step = run_step(issue_env(files, api, server.url), tmp_path)

    assert step.returncode == 0, step.log
    assert files.outputs()["status"] == "approved"
    (warning,) = [c for c in commands_in(step.stderr) if c.name == "warning"]
    assert "issues: write" in warning.data
    assert api.issues == {}
    assert issue_calls(api) == ["GET /issues"]  # after the refusal, the issue is left alone


def test_assignees_github_refuses_are_only_mentioned(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    with fake_github_api(token=TOKEN, collaborators=frozenset()) as api:
        files = RunnerFiles.create(tmp_path, PUSH)
        step = run_step(issue_env(files, api, server.url), tmp_path)

    assert step.returncode == 0, step.log
    (issue,) = api.issues.values()
    assert issue["assignees"] == []
    assert "@alice" in issue["body"]
    assert "refused the assignees" in step.stderr
    assert [c.name for c in commands_in(step.log) if c.name == "warning"] == []


def test_a_pull_request_run_gets_its_comment_not_an_issue(
    sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    files = RunnerFiles.create(tmp_path, pull_request_payload(7))
    env = issue_env(files, api, server.url)
    env["GITHUB_EVENT_NAME"] = "pull_request"
    step = run_step(env, tmp_path)

    assert step.returncode == 0, step.log
    assert api.issues == {}
    (comment,) = api.comments_on(7)
    assert_inert(comment["body"], links=set(read(comment["body"]).links))
    assert "this run belongs to PR #7: no issue" in step.stderr


def test_notify_issue_elsewhere_is_one_warning(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    result = run_cli([], login_env(server, tmp_path, CI_SHARK_NOTIFY="log,issue"))

    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        "ci_shark: warning: `notify: issue` works on GitHub only; ignored on generic"
    ]
