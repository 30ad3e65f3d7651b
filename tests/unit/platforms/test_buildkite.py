"""BuildkitePlatform with a fake ``buildkite-agent`` on PATH that records argv and stdin."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ci_shark.errors import PolicyRefused
from ci_shark.platforms import detect
from ci_shark.platforms.base import Platform
from ci_shark.platforms.buildkite import BuildkitePlatform
from ci_shark.render import Outcome
from ci_shark.secret import Secret

from .platform_fakes import (
    ACCESS_TOKEN,
    DEVICE_CODE,
    REFRESH_TOKEN,
    Streams,
    agent_calls,
    credentials,
    enforce_policy,
    fake_buildkite_agent,
    request,
    settings,
)

ENV = {
    "BUILDKITE": "true",
    "BUILDKITE_ORGANIZATION_SLUG": "acme",
    "BUILDKITE_PIPELINE_SLUG": "deploy",
    "BUILDKITE_LABEL": ":rocket: ship",
    "BUILDKITE_BUILD_URL": "https://buildkite.com/acme/deploy/builds/42",
    "BUILDKITE_COMMIT": "0123456789abcdef0123456789abcdef01234567",
    "BUILDKITE_BUILD_CREATOR": "Maria",
    "BUILDKITE_REPO": "git@github.com:acme/app.git",
    "BUILDKITE_PULL_REQUEST": "false",
}


def platform(
    tmp_path: Path, env: dict[str, str], streams: Streams, *, agent: bool = True, **values: Any
) -> tuple[BuildkitePlatform, Path]:
    bin_dir, log = fake_buildkite_agent(tmp_path)
    path = (str(bin_dir) + os.pathsep if agent else "") + "/usr/bin:/bin"
    return BuildkitePlatform(settings(**values), {**env, "PATH": path}, **streams.kwargs()), log


def test_detected_by_buildkite() -> None:
    assert detect({"BUILDKITE": "true"}) is BuildkitePlatform


def test_context() -> None:
    context = BuildkitePlatform(settings(), ENV).context()
    assert context.repository == "acme/deploy"
    assert context.job == ":rocket: ship"
    assert context.run_url == ENV["BUILDKITE_BUILD_URL"]
    assert context.actor == "Maria"
    assert context.change_request is None
    assert not context.is_fork


def test_every_secret_goes_to_the_redactor_on_stdin_never_argv(tmp_path: Path) -> None:
    streams = Streams()
    buildkite, log = platform(tmp_path, ENV, streams)
    creds = credentials()
    buildkite.mask([Secret(DEVICE_CODE)])
    buildkite.mask(creds.secrets())
    calls = agent_calls(log)
    assert all(call["argv"] == ["redactor", "add"] for call in calls)
    given = [call["stdin"] for call in calls]
    assert DEVICE_CODE in given
    assert ACCESS_TOKEN in given
    assert REFRESH_TOKEN in given
    pem = creds.dpop_key.private_pem().reveal() if creds.dpop_key else ""
    assert pem in given
    # and each body line of the PEM on its own, since the log is redacted line by line
    body_lines = [line for line in pem.splitlines() if not line.startswith("-----")]
    assert all(line in given for line in body_lines)
    for call in calls:
        assert not any(secret in " ".join(call["argv"]) for secret in (DEVICE_CODE, ACCESS_TOKEN))
    assert ACCESS_TOKEN not in streams.all()


def test_annotation_shows_the_link_then_the_outcome_in_the_same_context(tmp_path: Path) -> None:
    streams = Streams()
    buildkite, log = platform(tmp_path, ENV, streams)
    approval = request(buildkite.context())
    buildkite.announce(approval)
    buildkite.finish(Outcome("approved", "credentials exported"), approval)
    calls = [call for call in agent_calls(log) if call["argv"][0] == "annotate"]
    assert len(calls) == 2
    first, last = calls
    assert first["argv"][first["argv"].index("--style") + 1] == "info"
    assert last["argv"][last["argv"].index("--style") + 1] == "success"
    context_of = [call["argv"][call["argv"].index("--context") + 1] for call in calls]
    assert context_of[0] == context_of[1]
    assert context_of[0].startswith("ci-shark-")
    assert "WDJB-MJHT" in first["stdin"]
    assert "auth.example.com" in first["stdin"]
    assert "WDJB-MJHT" not in last["stdin"]
    assert "Approved" in last["stdin"]
    assert all("WDJB" not in " ".join(call["argv"]) for call in calls)  # body on stdin only


def test_notify_log_means_no_annotation(tmp_path: Path) -> None:
    buildkite, log = platform(tmp_path, ENV, Streams(), notify="log")
    approval = request(buildkite.context())
    buildkite.announce(approval)
    buildkite.finish(Outcome("denied", "denied"), approval)
    assert agent_calls(log) == []


def test_without_the_agent_it_warns_once_and_behaves_generically(tmp_path: Path) -> None:
    streams = Streams()
    buildkite, log = platform(tmp_path, ENV, streams, agent=False)
    approval = request(buildkite.context())
    buildkite.mask([Secret(DEVICE_CODE)])
    buildkite.announce(approval)
    buildkite.finish(Outcome("approved", "ok"), approval)
    text = streams.stderr.getvalue()
    assert text.count("buildkite-agent is not on PATH") == 1
    assert "WDJB-MJHT" in text  # the log still shows the link and code
    assert agent_calls(log) == []


def test_failing_redactor_is_one_warning(tmp_path: Path) -> None:
    bin_dir, _log = fake_buildkite_agent(tmp_path, exit_code=1)
    streams = Streams()
    buildkite = BuildkitePlatform(
        settings(), {**ENV, "PATH": f"{bin_dir}:/usr/bin:/bin"}, **streams.kwargs()
    )
    buildkite.mask([Secret(DEVICE_CODE), Secret(ACCESS_TOKEN)])
    text = streams.stderr.getvalue()
    assert text.count("redactor add` failed") == 1
    assert DEVICE_CODE not in text
    assert ACCESS_TOKEN not in text


@pytest.mark.parametrize(
    ("pr_repo", "fork"),
    [
        ("https://github.com/acme/app.git", False),
        ("git@github.com:acme/app", False),
        ("https://github.com/mallory/app.git", True),
    ],
)
def test_fork_pull_requests_are_refused(pr_repo: str, fork: bool) -> None:
    env = {**ENV, "BUILDKITE_PULL_REQUEST": "5", "BUILDKITE_PULL_REQUEST_REPO": pr_repo}
    buildkite = BuildkitePlatform(settings(), env)
    context = buildkite.context()
    assert context.change_request == "PR #5"
    assert context.is_fork is fork
    if fork:
        with pytest.raises(PolicyRefused):
            enforce_policy(buildkite, context)
        enforce_policy(BuildkitePlatform(settings(allow_fork=True), env), context)
    else:
        enforce_policy(buildkite, context)


def test_exports_are_the_generic_ones(tmp_path: Path) -> None:
    buildkite, _ = platform(tmp_path, ENV, Streams(), output_file=str(tmp_path / "out.env"))
    assert isinstance(buildkite, Platform)
    buildkite.export(credentials())
    assert f"SHARK_ACCESS_TOKEN={ACCESS_TOKEN}" in (tmp_path / "out.env").read_text()


def test_each_parallel_copy_of_a_step_has_its_own_annotation(tmp_path: Path) -> None:
    contexts = []
    for index in ("0", "1"):
        env = {**ENV, "BUILDKITE_PARALLEL_JOB": index, "BUILDKITE_PARALLEL_JOB_COUNT": "2"}
        (tmp_path / index).mkdir()
        buildkite, log = platform(tmp_path / index, env, Streams())
        approval = request(buildkite.context())
        buildkite.announce(approval)
        (call,) = [call for call in agent_calls(log) if call["argv"][0] == "annotate"]
        contexts.append(call["argv"][call["argv"].index("--context") + 1])
        assert f"(`parallel job {int(index) + 1} of 2`)" in call["stdin"]
    assert contexts[0] != contexts[1]
    # a step without parallelism keeps the plain context
    assert BuildkitePlatform(settings(), ENV).context().job_variant is None


@pytest.mark.parametrize(("index", "count"), [("²", "3"), ("3", "3"), ("1", ""), ("-1", "3")])
def test_odd_parallel_job_numbers_are_ignored(index: str, count: str) -> None:
    env = {**ENV, "BUILDKITE_PARALLEL_JOB": index, "BUILDKITE_PARALLEL_JOB_COUNT": count}
    assert BuildkitePlatform(settings(), env).context().job_variant is None
