"""entrypoint.py run as the Actions runner runs it, against loopback servers.

The runner's side is reproduced with files in a temp dir (GITHUB_OUTPUT, GITHUB_ENV,
GITHUB_STEP_SUMMARY, GITHUB_EVENT_PATH, RUNNER_TEMP), read back with the runner's
heredoc rules; GITHUB_API_URL points at a fake REST API; the sandbox is the
authorization server. stdout and stderr are checked the way the runner reads them.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support.cli import REPO, CliJob, CliResult, clean_env, run_process
from support.gfm import assert_inert, read
from support.github_fakes import (
    HOSTILE_USER_CODE,
    FakeGitHubApi,
    HostileAuthServer,
    RunnerFiles,
    fake_github_api,
    masked_values,
    pull_request_payload,
    workflow_commands,
)
from support.waits import until

from ci_shark.sandbox import SandboxServer

ENTRYPOINT = REPO / "entrypoint.py"
HOSTILE_LINK = "https://127.0.0.1/device"  # the hostile verification_uri_complete
TOKEN = "ghs_integration_token_9c9c9c9c"
CANARY = "canary-client-secret-5b1d0c7e"  # a secret input: masked, then never printed
SandboxFactory = Callable[..., SandboxServer]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and paths")


Step = CliResult


@pytest.fixture
def api() -> Iterator[FakeGitHubApi]:
    with fake_github_api(token=TOKEN) as fake:
        yield fake


def step_env(
    files: RunnerFiles, api: FakeGitHubApi, auth_url: str, *, event: str, **inputs: str
) -> dict[str, str]:
    """What action.yml hands to entrypoint.py: the runner's variables and CI_SHARK_*."""
    env = clean_env(files.env(event_name=event, api_url=api.url))
    env.pop("PYTHONPATH", None)  # entrypoint.py finds ci_shark beside itself
    env.update(
        {
            "CI_SHARK_AUTH_URL": auth_url,
            "CI_SHARK_CLIENT_ID": "ci-shark-action-test",
            "CI_SHARK_SCOPE": "deploy:write",
            "CI_SHARK_TIMEOUT": "30",
            "CI_SHARK_GITHUB_TOKEN": TOKEN,
            # action.yml passes every input, "" when unset
            "CI_SHARK_CLIENT_SECRET": "",
            "CI_SHARK_RESOURCE": "",
            "CI_SHARK_NOTIFY": "",
            "CI_SHARK_ALLOW_FORK": "",
            "CI_SHARK_EXPORT_ENV": "",
            **inputs,
        }
    )
    return env


def run_step(env: dict[str, str], cwd: Path, timeout_s: float = 60) -> Step:
    """What action.yml's run step does: the runner's python on entrypoint.py."""
    return run_process([sys.executable, str(ENTRYPOINT)], env, cwd=cwd, timeout_s=timeout_s)


def assert_secrets_only_on_mask_lines(step: Step, secrets: list[str]) -> None:
    masked = set(masked_values(step.stderr))
    for secret in secrets:
        assert secret in masked, "a secret was not masked"
        for line in step.log.splitlines():
            if secret in line:
                assert line.startswith("::add-mask::"), f"secret printed: {line[:40]}"


def test_approved_pr_run(
    sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1.5)
    files = RunnerFiles.create(tmp_path, pull_request_payload(7))
    step = run_step(
        step_env(
            files,
            api,
            server.url,
            event="pull_request",
            CI_SHARK_EXPORT_ENV="true",
            CI_SHARK_CLIENT_SECRET=CANARY,
        ),
        tmp_path,
    )

    assert step.returncode == 0, step.log
    outputs = files.outputs()
    assert outputs["status"] == "approved"
    assert outputs["token-type"] == "DPoP"
    assert outputs["dpop-jkt"] == server.grants[0].jkt
    assert outputs["dpop-private-key"].startswith("-----BEGIN")
    assert Path(outputs["dpop-key-file"]).read_text() == outputs["dpop-private-key"]
    assert Path(outputs["dpop-key-file"]).parent == files.temp
    assert files.exported_env()["SHARK_ACCESS_TOKEN"] == outputs["access-token"]
    # the comment was posted while waiting, then edited: approved, the code gone
    (comment,) = api.comments_on(7)
    user_code = server.grants[0].user_code
    assert "Approved" in comment["body"]
    assert user_code not in comment["body"]
    assert [c.method for c in api.calls if "comments" in c.path] == ["GET", "POST", "PATCH"]
    summary = files.summary.read_text()
    assert "Approved" in summary
    assert user_code in step.stderr  # the live log carried the code
    assert step.stdout == ""  # commands and log share stderr, one ordered stream
    secrets = [
        outputs[name]
        for name in ("access-token", "refresh-token", "dpop-jwk", "dpop-private-key")
        if outputs[name]
    ]
    secrets += [line for line in outputs["dpop-private-key"].splitlines() if "PRIVATE" not in line]
    assert_secrets_only_on_mask_lines(step, [*secrets, TOKEN, CANARY])
    assert all(c.name in ("add-mask",) for c in workflow_commands(step.log))


def test_rerun_edits_the_same_comment(
    sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    for attempt in ("1", "2"):
        root = tmp_path / f"attempt{attempt}"
        root.mkdir()
        files = RunnerFiles.create(root, pull_request_payload(7))
        env = step_env(files, api, server.url, event="pull_request")
        env["GITHUB_RUN_ATTEMPT"] = attempt
        step = run_step(env, root)
        assert step.returncode == 0, step.log
    (comment,) = api.comments_on(7)
    assert "(attempt `2`)" in comment["body"]
    assert [c.method for c in api.calls if "comments" in c.path] == [
        "GET",
        "POST",
        "PATCH",
        "GET",
        "PATCH",
        "PATCH",
    ]


def test_fork_is_refused_before_any_device_code(
    sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    files = RunnerFiles.create(tmp_path, pull_request_payload(3, head_repo="mallory/app"))
    step = run_step(step_env(files, api, server.url, event="pull_request"), tmp_path)

    assert step.returncode == 6, step.log
    assert "mallory/app" in step.log
    assert "allow-fork" in step.log
    assert server.grants == ()
    assert server.stats.requests == ()
    assert files.outputs() == {"status": "refused"}
    assert "Refused" in files.summary.read_text()
    assert api.comments_on(3) == []


def test_bad_input_still_writes_the_status_output(api: FakeGitHubApi, tmp_path: Path) -> None:
    files = RunnerFiles.create(tmp_path, pull_request_payload(3))
    env = step_env(files, api, "https://auth.example.com", event="pull_request")
    env["CI_SHARK_TIMEOUT"] = "soon"
    step = run_step(env, tmp_path)

    assert step.returncode == 2, step.log
    assert "`timeout` (CI_SHARK_TIMEOUT" in step.log
    assert files.outputs() == {"status": "error"}
    assert "Failed" in files.summary.read_text()


def test_forbidden_comment_warns_and_still_approves(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    with fake_github_api(token=TOKEN, comment_status=403) as api:
        files = RunnerFiles.create(tmp_path, pull_request_payload(7))
        step = run_step(step_env(files, api, server.url, event="pull_request"), tmp_path)

    assert step.returncode == 0, step.log
    warnings = [c for c in workflow_commands(step.stderr) if c.name == "warning"]
    assert len(warnings) == 1
    assert "pull-requests: write" in warnings[0].data
    assert files.outputs()["status"] == "approved"


def test_push_finds_its_pr_through_the_commit(
    sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    sha = "d" * 40
    api.commit_pulls[sha] = [
        {"number": 21, "state": "open", "head": {"sha": sha, "repo": {"full_name": "octo/app"}}}
    ]
    server = sandbox_factory(approve_after_s=1)
    files = RunnerFiles.create(tmp_path, {"ref": "refs/heads/feature", "after": sha})
    env = step_env(files, api, server.url, event="push")
    env["GITHUB_SHA"] = sha
    step = run_step(env, tmp_path)

    assert step.returncode == 0, step.log
    (comment,) = api.comments_on(21)
    assert "/pull/21" in comment["body"]
    assert "Approved" in comment["body"]


def test_hostile_server_texts_stay_inert(api: FakeGitHubApi, tmp_path: Path) -> None:
    server = HostileAuthServer().start()
    try:
        files = RunnerFiles.create(tmp_path, pull_request_payload(7))
        step = run_step(
            step_env(files, api, server.url, event="pull_request", CI_SHARK_DPOP="false"),
            tmp_path,
        )
    finally:
        server.stop()

    assert step.returncode == 3, step.log
    assert files.outputs() == {"status": "denied"}
    # Our own commands only: the masks and one annotation, no forged error/warning.
    assert sorted(c.name for c in workflow_commands(step.log) if c.name != "add-mask") == ["error"]
    bodies = [c.body["body"] for c in api.calls if c.body] + [files.summary.read_text()]
    ours = {"https://github.com/octo/app/actions/runs/4242", "https://github.com/octo/app/pull/7"}
    for text in bodies:  # as GitHub renders them: shown as text, nothing live
        approval_links = {link for link in read(text).links if link.startswith(HOSTILE_LINK)}
        shown = assert_inert(text, links=ours | approval_links)
        assert not any("evil.example" in urlsplit(link).netloc for link in shown.links)
    assert "hostile-device-code-CANARY-7f3a" in masked_values(step.stderr)
    assert_secrets_only_on_mask_lines(step, ["hostile-device-code-CANARY-7f3a"])
    assert HOSTILE_USER_CODE.split()[0] not in files.summary.read_text()


def test_sigterm_mid_wait_exits_143_and_the_comment_says_cancelled(
    sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    server = sandbox_factory()  # never approves
    files = RunnerFiles.create(tmp_path, pull_request_payload(7))
    env = step_env(files, api, server.url, event="pull_request")
    with CliJob([], env, cwd=tmp_path, command=[sys.executable, str(ENTRYPOINT)]) as job:
        # Waiting: the comment is posted and its answer read (the fake records the comment
        # before it answers, so seeing it there is not enough: a signal then would come
        # before the job knows which comment to edit).
        job.wait_for(re.compile("asked for approval in a comment on PR #7"), timeout_s=30)
        job.process.send_signal(signal.SIGTERM)
        returncode = job.wait(30)
    stdout = job.stdout
    assert returncode == 143, job.transcript()
    assert stdout == ""
    (comment,) = api.comments_on(7)
    assert "Cancelled" in comment["body"]
    assert server.grants[0].user_code not in comment["body"]
    assert files.outputs() == {"status": "cancelled"}
    assert "Cancelled" in files.summary.read_text()


def test_sigterm_while_the_comment_is_posted_still_says_cancelled_in_it(
    sandbox_factory: SandboxFactory, api: FakeGitHubApi, tmp_path: Path
) -> None:
    """The job is cancelled while GitHub has the comment but has not answered yet (so the
    job does not know its id): it ends at once all the same, and the comment it finds by
    its marker says so, instead of asking for an approval nobody waits for."""
    api.comments_answered = threading.Event()
    server = sandbox_factory()  # never approves
    files = RunnerFiles.create(tmp_path, pull_request_payload(7))
    env = step_env(files, api, server.url, event="pull_request")
    try:
        with CliJob([], env, cwd=tmp_path, command=[sys.executable, str(ENTRYPOINT)]) as job:
            until(lambda: bool(api.comments_on(7)), "the comment posted", within_s=30)
            job.process.send_signal(signal.SIGTERM)
            returncode = job.wait(8)  # the post's answer still held: not waited for
    finally:
        api.comments_answered.set()
    assert returncode == 143, job.transcript()
    (comment,) = api.comments_on(7)
    assert "Cancelled" in comment["body"]
    assert server.grants[0].user_code not in comment["body"]
    assert files.outputs() == {"status": "cancelled"}
