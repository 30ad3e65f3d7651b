"""GitHubPlatform against the runner's rules and a mocked REST API (httpx.MockTransport)."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.gfm import assert_inert
from support.github_fakes import (
    HOSTILE_DESCRIPTION,
    HOSTILE_URI,
    HOSTILE_USER_CODE,
    FileCommandError,
    RunnerFiles,
    masked_values,
    parse_file_commands,
    pull_request_payload,
    unescape_command_data,
    workflow_commands,
)

from ci_shark.errors import ConfigError, ExitCode, PolicyRefused
from ci_shark.platforms import Platform, detect
from ci_shark.platforms.github import GitHubPlatform, matrix_leg
from ci_shark.platforms.github_outputs import render_file_commands
from ci_shark.platforms.log import neutralise
from ci_shark.render import ApprovalRequest, Outcome, marker
from ci_shark.secret import Secret

from .platform_fakes import (
    ACCESS_TOKEN,
    REFRESH_TOKEN,
    Streams,
    credentials,
    enforce_policy,
    request,
    settings,
)

TOKEN = "ghs_unit_test_token_5a5a5a"
REPO = "octo/app"


class Api:
    """A MockTransport with a tiny comments store, recording every request."""

    def __init__(self, *, comment_status: int | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.comments: dict[int, dict[str, Any]] = {}
        self.comment_status = comment_status
        self.pulls: dict[int, dict[str, Any]] = {}
        self.commit_pulls: dict[str, list[dict[str, Any]]] = {}
        self.on_request: Callable[[httpx.Request], None] | None = None
        self.transport = httpx.MockTransport(self.handle)

    def handle(self, req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/user"):  # GITHUB_TOKEN may not ask who it is
            return httpx.Response(403, json={"message": "Resource not accessible by integration"})
        self.requests.append(req)
        if self.on_request is not None:
            self.on_request(req)
        path = req.url.path.partition(f"/repos/{REPO}")[2]
        if "comments" in path and self.comment_status:
            return httpx.Response(self.comment_status, json={"message": "nope"})
        if path.startswith("/pulls/"):
            pull = self.pulls.get(int(path.rsplit("/", 1)[1]))
            return httpx.Response(200, json=pull) if pull else httpx.Response(404, json={})
        if path.startswith("/commits/"):
            return httpx.Response(200, json=self.commit_pulls.get(path.split("/")[2], []))
        if path.endswith("/comments") and req.method == "GET":
            number = int(path.split("/")[2])
            found = [c for c in self.comments.values() if c["issue"] == number]
            return httpx.Response(200, json=found)
        if path.endswith("/comments") and req.method == "POST":
            number = int(path.split("/")[2])
            return httpx.Response(201, json=self.add(number, json.loads(req.content)["body"]))
        if req.method == "PATCH":
            comment = self.comments[int(path.rsplit("/", 1)[1])]
            comment["body"] = json.loads(req.content)["body"]
            return httpx.Response(200, json=comment)
        return httpx.Response(404, json={})

    def add(
        self, number: int, body: str, *, user_type: str = "Bot", login: str = "github-actions[bot]"
    ) -> dict[str, Any]:
        comment_id = 100 + len(self.comments)
        self.comments[comment_id] = {
            "id": comment_id,
            "issue": number,
            "body": body,
            "user": {"login": login, "type": user_type},
        }
        return self.comments[comment_id]

    def methods(self) -> list[str]:
        return [f"{r.method} {r.url.path.removeprefix(f'/repos/{REPO}')}" for r in self.requests]


@pytest.fixture
def make(tmp_path: Path) -> Callable[..., tuple[GitHubPlatform, RunnerFiles, Streams]]:
    counter = iter(range(100))

    def build(
        payload: dict[str, Any] | None = None,
        *,
        event: str = "pull_request",
        api: Api | None = None,
        token: str | None = TOKEN,
        extra_env: dict[str, str] | None = None,
        **options: Any,
    ) -> tuple[GitHubPlatform, RunnerFiles, Streams]:
        root = tmp_path / f"step{next(counter)}"
        root.mkdir()
        files = RunnerFiles.create(root, payload if payload is not None else {})
        env = files.env(event_name=event, api_url="https://api.github.com") | (extra_env or {})
        if token is not None:
            options["github_token"] = token
        streams = Streams()
        platform = GitHubPlatform(
            settings(**options),
            env,
            transport=api.transport if api else httpx.MockTransport(lambda r: httpx.Response(500)),
            **streams.kwargs(),
        )
        return platform, files, streams

    return build


def approval(platform: GitHubPlatform, **kwargs: Any) -> ApprovalRequest:
    return request(platform.context(), **kwargs)


# -- detection and context -------------------------------------------------------------------


def test_detected_by_github_actions_true() -> None:
    assert detect({"GITHUB_ACTIONS": "true"}) is GitHubPlatform
    assert detect({"GITHUB_ACTIONS": "false"}) is Platform


def test_context_of_a_pull_request_run(make: Callable[..., Any]) -> None:
    platform, _, _ = make(pull_request_payload(12))
    context = platform.context()
    assert context.platform == "github"
    assert context.repository == REPO
    assert (context.workflow, context.job, context.run_attempt) == ("deploy", "release", "1")
    assert context.run_url == f"https://github.com/{REPO}/actions/runs/4242"
    assert context.commit == "b" * 40  # the PR head, not the merge commit
    assert context.actor == "maintainer"
    assert context.change_request == "PR #12"
    assert context.change_request_url == f"https://github.com/{REPO}/pull/12"
    assert not context.is_fork


def test_fork_pull_request_is_refused_with_exit_6(make: Callable[..., Any]) -> None:
    platform, _, _ = make(pull_request_payload(3, head_repo="mallory/app"))
    context = platform.context()
    assert context.is_fork
    assert context.fork_source == "mallory/app"
    with pytest.raises(PolicyRefused) as refused:
        enforce_policy(platform, context)
    assert refused.value.exit_code == ExitCode.REFUSED
    assert "mallory/app" in refused.value.message
    assert "anyone can open a pull or merge request" in refused.value.message.lower()
    assert "allow-fork" in (refused.value.hint or "")


def test_fork_allowed_with_allow_fork(make: Callable[..., Any]) -> None:
    platform, _, _ = make(pull_request_payload(3, head_repo="mallory/app"), allow_fork=True)
    enforce_policy(platform, platform.context())


def test_deleted_fork_counts_as_a_fork(make: Callable[..., Any]) -> None:
    platform, _, _ = make(pull_request_payload(3, head_repo=None))
    with pytest.raises(PolicyRefused):
        enforce_policy(platform, platform.context())


def test_pull_request_target_fork_is_refused(make: Callable[..., Any]) -> None:
    payload = pull_request_payload(5, head_repo="Mallory/App")
    platform, _, _ = make(payload, event="pull_request_target")
    with pytest.raises(PolicyRefused):
        enforce_policy(platform, platform.context())


def test_same_repository_compared_case_insensitively(make: Callable[..., Any]) -> None:
    platform, _, _ = make(pull_request_payload(5, head_repo="Octo/App"))
    assert not platform.context().is_fork


def test_issue_comment_asks_the_api_where_the_pr_comes_from(make: Callable[..., Any]) -> None:
    api = Api()
    api.pulls[9] = {"number": 9, "head": {"repo": {"full_name": "mallory/app"}}}
    payload = {"issue": {"number": 9, "pull_request": {"url": "x"}}, "comment": {"body": "/go"}}
    platform, _, _ = make(payload, event="issue_comment", api=api)
    context = platform.context()
    assert context.change_request == "PR #9"
    assert context.is_fork
    assert api.methods() == ["GET /pulls/9"]


def test_issue_comment_unreadable_pr_is_treated_as_fork(make: Callable[..., Any]) -> None:
    payload = {"issue": {"number": 9, "pull_request": {"url": "x"}}}
    platform, _, streams = make(payload, event="issue_comment", api=Api())
    assert platform.context().is_fork
    assert "treated as a fork" in streams.stderr.getvalue()


def test_issue_comment_on_a_plain_issue_has_no_pr(make: Callable[..., Any]) -> None:
    api = Api()
    platform, _, _ = make({"issue": {"number": 4}}, event="issue_comment", api=api)
    context = platform.context()
    assert context.change_request is None
    assert not context.is_fork


def test_push_finds_its_open_pr_through_the_commit(make: Callable[..., Any]) -> None:
    api = Api()
    api.commit_pulls["a" * 40] = [
        {"number": 1, "state": "closed", "head": {"sha": "a" * 40}},
        {"number": 2, "state": "open", "head": {"sha": "f" * 40, "repo": {"full_name": REPO}}},
        {"number": 3, "state": "open", "head": {"sha": "a" * 40, "repo": {"full_name": REPO}}},
    ]
    platform, files, streams = make({"ref": "refs/heads/main"}, event="push", api=api)
    req = approval(platform, user_code="WDJB-MJHT")  # the context, before the link
    assert api.requests == []  # the PR is only for the comment: looked up after the link

    def link_is_out_first(request: httpx.Request) -> None:
        assert "WDJB-MJHT" in streams.stderr.getvalue()

    api.on_request = link_is_out_first
    platform.announce(req)
    shown = platform.run.shown(req).context  # the request as the channels show it
    assert shown.change_request == "PR #3"
    assert shown.change_request_url == f"https://github.com/{REPO}/pull/3"
    context = platform.context()
    assert context.change_request is None  # the run's facts are not rewritten after the fact
    assert not context.is_fork  # a push happens in this repository
    (comment,) = api.comments.values()
    assert comment["issue"] == 3
    assert "/pull/3" in comment["body"]
    assert "/pull/3" in files.summary.read_text()
    platform.finish(Outcome("approved", "approved"), req)
    assert "/pull/3" in files.summary.read_text()  # the outcome still names the PR
    assert api.methods()[0] == f"GET /commits/{'a' * 40}/pulls"
    assert api.methods().count(f"GET /commits/{'a' * 40}/pulls") == 1


def test_a_renewed_code_on_push_keeps_the_pr_in_the_comment(make: Callable[..., Any]) -> None:
    api = Api()
    api.commit_pulls["a" * 40] = [
        {"number": 3, "state": "open", "head": {"sha": "a" * 40, "repo": {"full_name": REPO}}}
    ]
    platform, files, _ = make({"ref": "refs/heads/main"}, event="push", api=api)
    first = approval(platform, user_code="FIRST")
    platform.announce(first)
    renewed = request(first.context, user_code="RENEWED")  # flow's context: from before
    platform.announce(renewed)
    (comment,) = api.comments.values()
    assert "RENEWED" in comment["body"]
    assert "/pull/3" in comment["body"]
    assert "/pull/3" in files.summary.read_text()
    assert api.methods().count(f"GET /commits/{'a' * 40}/pulls") == 1


def test_a_failed_pr_lookup_on_push_only_costs_the_comment(make: Callable[..., Any]) -> None:
    api = Api()
    platform, files, streams = make({"ref": "refs/heads/main"}, event="push", api=api)

    def refuse(request: httpx.Request) -> None:
        if "/commits/" in request.url.path:
            raise httpx.ConnectError("no route")

    api.on_request = refuse
    req = approval(platform, user_code="WDJB-MJHT")
    platform.announce(req)
    platform.finish(Outcome("approved", "approved"), req)
    assert api.comments == {}
    assert "WDJB-MJHT" in streams.stderr.getvalue()  # the link is in the log
    assert "no PR found for commit" in streams.stderr.getvalue()
    assert "Approved" in files.summary.read_text()
    assert files.outputs()["status"] == "approved"


def test_push_without_a_token_looks_nothing_up(make: Callable[..., Any]) -> None:
    api = Api()
    platform, _, _ = make({}, event="workflow_dispatch", api=api, token=None)
    assert platform.context().change_request is None
    assert api.requests == []


def test_unreadable_event_payload_is_a_warning(make: Callable[..., Any]) -> None:
    platform, files, streams = make({}, event="push", token=None)
    files.event.write_text("{not json")
    assert platform.context().repository == REPO
    assert "::warning" in streams.stderr.getvalue()


# -- masking and the log ---------------------------------------------------------------------


def test_add_mask_escapes_percent_cr_lf(make: Callable[..., Any]) -> None:
    value = "50%0A off\r\nnext%25"
    platform, _, streams = make({})
    platform.mask([Secret("a%b")])
    assert streams.stderr.getvalue() == "::add-mask::a%25b\n"
    platform.mask([Secret(value)])
    full, *lines = streams.stderr.getvalue().splitlines()[1:]
    assert full == "::add-mask::50%250A off%0D%0Anext%2525"
    assert unescape_command_data(full.removeprefix("::add-mask::")) == value
    assert [unescape_command_data(line.split("::", 2)[2]) for line in lines] == [
        "50%0A off",
        "next%25",
    ]


def test_multi_line_secret_masks_the_whole_and_each_line(make: Callable[..., Any]) -> None:
    pem = "-----BEGIN PRIVATE KEY-----\nAAAA\nBBBB\n\n-----END PRIVATE KEY-----\n"
    platform, _, streams = make({})
    platform.mask([Secret(pem), Secret("  "), Secret("")])
    values = masked_values(streams.stderr.getvalue())
    assert values[0] == pem
    assert values[1:] == [
        "-----BEGIN PRIVATE KEY-----",
        "AAAA",
        "BBBB",
        "-----END PRIVATE KEY-----",
    ]


def test_mask_goes_to_stderr_one_line_per_command(make: Callable[..., Any]) -> None:
    platform, _, streams = make({})
    platform.mask([Secret("tok%en\nline2")])
    platform.mask([Secret("tok%en\nline2")])  # once is enough
    assert streams.stdout.getvalue() == ""
    assert masked_values(streams.stderr.getvalue()) == ["tok%en\nline2", "tok%en", "line2"]


@pytest.mark.parametrize(
    "hostile",
    [
        "::error::forged",
        "   ::add-mask::x",
        "\t::set-output name=a::b",
        "text ##[error]forged",
        "##[group]x",
        "a\n::error::second line",
        "a\r::warning::cr",
    ],
)
def test_log_lines_never_start_a_workflow_command(make: Callable[..., Any], hostile: str) -> None:
    platform, _, streams = make({})
    platform.log(hostile)
    assert workflow_commands(streams.stderr.getvalue()) == []
    assert workflow_commands(neutralise(hostile)) == []


def test_warning_is_a_workflow_command_with_escaped_text(make: Callable[..., Any]) -> None:
    platform, _, streams = make({})
    platform.warn("100% sure\n::error::no ##[error]no")
    (command,) = workflow_commands(streams.stderr.getvalue())
    assert command.name == "warning"
    assert command.data == "100% sure\n::error::no # #[error]no"


def test_github_token_is_masked_and_never_printed(make: Callable[..., Any]) -> None:
    api = Api()
    platform, _, streams = make(pull_request_payload(), api=api)
    platform.context()
    platform.announce(approval(platform))
    out = streams.all()
    assert masked_values(out) == [TOKEN]
    assert all(TOKEN not in line for line in out.splitlines() if "::add-mask::" not in line)
    assert api.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert api.requests[0].headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert api.requests[0].headers["Accept"] == "application/vnd.github+json"


# -- outputs ---------------------------------------------------------------------------------


def test_render_file_commands_round_trips_through_the_runner_parser() -> None:
    values = {
        "plain": "x",
        "empty": "",
        "multi": "a\nb\n",
        "equals": "k=v<<x",
        "unicode": "é✓",
        "crlf": "a\r\nb",
    }
    text = render_file_commands(values)
    assert parse_file_commands(text) == values
    assert text.count("ghadelimiter_") == 2 * len(values)


def test_a_value_containing_the_delimiter_is_refused() -> None:
    delimiter = "ghadelimiter_fixed"
    with pytest.raises(Exception, match="delimiter"):
        render_file_commands({"a": f"x\n{delimiter}\nevil=1"}, delimiter)


def test_parser_follows_runner_rules() -> None:
    assert parse_file_commands("a=1\n\nb<<EOF\nx\nEOF\n") == {"a": "1", "b": "x"}
    assert parse_file_commands("a<<EOF\nEOF\n") == {"a": ""}
    assert parse_file_commands("a<<E\r\nx\r\nE\r\n", windows=True) == {"a": "x"}
    with pytest.raises(FileCommandError):
        parse_file_commands("a<<EOF\nnever closed\n")
    with pytest.raises(FileCommandError):
        parse_file_commands("just text\n")


def test_export_writes_every_step_output(make: Callable[..., Any]) -> None:
    platform, files, streams = make({})
    files.output.write_text("earlier=kept\n")
    creds = credentials()
    platform.mask(creds.secrets())
    exported = platform.export(creds)
    platform.finish(Outcome("approved", "approved"), None)
    outputs = files.outputs()
    assert outputs["earlier"] == "kept"  # append mode
    assert outputs["access-token"] == ACCESS_TOKEN
    assert outputs["refresh-token"] == REFRESH_TOKEN
    assert outputs["token-type"] == "DPoP"
    assert outputs["expires-in"] == "300"
    assert outputs["expires-at"].endswith("Z")
    assert outputs["scope"] == "deploy"
    assert outputs["id-token"] == ""
    assert creds.dpop_key is not None
    assert outputs["dpop-jkt"] == creds.dpop_key.jkt
    assert outputs["dpop-private-key"] == creds.dpop_key.private_pem().reveal()
    assert json.loads(outputs["dpop-jwk"])["d"]
    assert outputs["status"] == "approved"
    assert outputs["approver"] == ""
    key_file = Path(outputs["dpop-key-file"])
    assert key_file.parent == files.temp
    assert exported.dpop_key_file == str(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text() == outputs["dpop-private-key"]
    assert files.env_file.read_text() == ""  # export-env is off
    # every secret was masked before the files were written, and never printed
    secrets = {s.reveal() for s in creds.secrets()}
    assert secrets <= set(masked_values(streams.stderr.getvalue()))
    for line in streams.all().splitlines():
        if "::add-mask::" not in line:
            assert all(secret not in line for secret in secrets)


def test_export_env_writes_shark_variables(make: Callable[..., Any]) -> None:
    platform, files, _ = make({}, export_env=True)
    platform.export(credentials(dpop=False))
    exported = files.exported_env()
    assert exported["SHARK_ACCESS_TOKEN"] == ACCESS_TOKEN
    assert exported["SHARK_TOKEN_TYPE"] == "Bearer"
    assert exported["SHARK_DPOP_KEY_FILE"] == ""
    assert "SHARK_STATUS" not in exported
    assert files.outputs()["dpop-private-key"] == ""


def test_outputs_all_or_none_when_github_env_fails(make: Callable[..., Any]) -> None:
    platform, files, _ = make({}, export_env=True)
    files.output.write_text("earlier=kept\n")
    files.env_file.unlink()
    files.env_file.mkdir()  # appending to it fails
    with pytest.raises(Exception, match="nothing was written"):
        platform.export(credentials())
    assert files.output.read_text() == "earlier=kept\n"
    assert list(files.temp.iterdir()) == []  # the key file is gone too


def test_missing_github_output_is_a_config_error(make: Callable[..., Any]) -> None:
    platform, _, _ = make({})
    platform.env = {k: v for k, v in platform.env.items() if k != "GITHUB_OUTPUT"}
    with pytest.raises(ConfigError, match="GITHUB_OUTPUT is not set"):
        platform.check_outputs()  # before a device code exists
    with pytest.raises(ConfigError, match="GITHUB_OUTPUT is not set"):
        platform.export(credentials())


def test_other_output_formats_use_the_generic_files(
    make: Callable[..., Any], tmp_path: Path
) -> None:
    target = tmp_path / "out.json"
    platform, files, _ = make({}, output_format="json", output_file=str(target))
    platform.export(credentials())
    assert json.loads(target.read_text())["SHARK_ACCESS_TOKEN"] == ACCESS_TOKEN
    assert files.output.read_text() == ""


@pytest.mark.parametrize(
    "status", ["denied", "expired", "timeout", "cancelled", "refused", "error"]
)
def test_status_output_on_every_outcome(make: Callable[..., Any], status: str) -> None:
    platform, files, _ = make({})
    platform.finish(Outcome(status, "it ended"), None)
    assert files.outputs() == {"status": status}


# -- summary and comment ---------------------------------------------------------------------


def test_pr_comment_posted_then_edited_with_the_outcome(make: Callable[..., Any]) -> None:
    api = Api()
    platform, files, _ = make(pull_request_payload(7), api=api)
    req = approval(platform, user_code="WDJB-MJHT")
    platform.announce(req)
    (comment,) = api.comments.values()
    assert comment["body"].startswith(marker(req.context))
    assert "WDJB" in comment["body"]
    assert "WDJB" in files.summary.read_text()
    platform.finish(Outcome("approved", "approved", approver="alice"), req)
    (comment,) = api.comments.values()
    assert "Approved" in comment["body"]
    assert "alice" in comment["body"]
    assert "WDJB" not in comment["body"]  # the code is gone
    assert comment["body"].startswith(marker(req.context))
    summary = files.summary.read_text()
    assert "Approved" in summary
    assert "WDJB" not in summary
    assert api.methods() == [
        "GET /issues/7/comments",
        "POST /issues/7/comments",
        f"PATCH /issues/comments/{comment['id']}",
    ]


def test_each_matrix_leg_has_its_own_comment(make: Callable[..., Any]) -> None:
    # Legs wait side by side: sharing one comment, each would overwrite the other's code.
    api = Api()
    legs = [
        make(pull_request_payload(7), api=api, extra_env={"CI_SHARK_MATRIX": matrix})[0]
        for matrix in ('{"env": "staging"}', '{"env": "prod"}')
    ]
    for leg, code in zip(legs, ("STAG-0001", "PROD-0002"), strict=True):
        leg.announce(approval(leg, user_code=code))
    bodies = [c["body"] for c in api.comments.values()]
    assert len(bodies) == 2
    (prod,) = [body for body in bodies if "job `release` (`env: prod`)" in body]
    (staging,) = [body for body in bodies if "job `release` (`env: staging`)" in body]
    assert "PROD" in prod
    assert "STAG" in staging
    rerun, _, _ = make(
        pull_request_payload(7), api=api, extra_env={"CI_SHARK_MATRIX": '{"env": "prod"}'}
    )
    rerun.announce(approval(rerun, user_code="RERUN"))
    assert len(api.comments) == 2  # the prod leg's re-run edited the prod comment
    edited = [c["body"] for c in api.comments.values() if "RERUN" in c["body"]]
    assert len(edited) == 1
    assert "env: prod" in edited[0]
    assert any("STAG" in c["body"] for c in api.comments.values())


@pytest.mark.parametrize(
    ("matrix_json", "leg"),
    [
        (None, None),
        ("null", None),  # what toJSON(matrix) gives outside a matrix
        ("{}", None),
        ("not json", None),
        ('{"os": "linux", "python": "3.12"}', "os: linux, python: 3.12"),
        ('{"b": 2, "a": {"x": [1]}}', 'a: {"x": [1]}, b: 2'),
    ],
)
def test_matrix_leg_from_to_json(matrix_json: str | None, leg: str | None) -> None:
    assert matrix_leg(matrix_json) == leg


def test_rerun_edits_its_own_comment_not_a_pasted_marker(make: Callable[..., Any]) -> None:
    api = Api()
    first, _, _ = make(pull_request_payload(7), api=api)
    req = approval(first)
    api.add(7, marker(req.context) + "\nI pasted your marker", user_type="User", login="mallory")
    first.announce(req)
    first.finish(Outcome("cancelled", "cancelled by SIGTERM"), req)
    ours = [c for c in api.comments.values() if c["user"]["type"] == "Bot"]
    assert len(ours) == 1
    second, _, _ = make(pull_request_payload(7), api=api)
    req2 = approval(second, user_code="NEWC-ODE1")
    second.announce(req2)
    assert len(api.comments) == 2  # no new comment: the re-run edited its own
    assert "NEWC" in ours[0]["body"]
    assert "I pasted your marker" in next(
        c["body"] for c in api.comments.values() if c["user"]["type"] == "User"
    )


def test_forbidden_comment_is_one_warning_and_the_flow_goes_on(
    make: Callable[..., Any],
) -> None:
    api = Api(comment_status=403)
    platform, files, streams = make(pull_request_payload(7), api=api)
    req = approval(platform)
    platform.announce(req)
    platform.finish(Outcome("approved", "approved"), req)
    warnings = [c for c in workflow_commands(streams.stderr.getvalue()) if c.name == "warning"]
    assert len(warnings) == 1
    assert "pull-requests: write" in warnings[0].data
    assert "fork" in warnings[0].data
    assert len(api.requests) == 1  # not retried on finish
    assert files.outputs()["status"] == "approved"
    assert "WDJB" in streams.stderr.getvalue()  # the log still carries the approval


def test_notify_log_only_writes_no_summary_and_no_comment(make: Callable[..., Any]) -> None:
    api = Api()
    platform, files, _ = make(pull_request_payload(7), api=api, notify="log")
    req = approval(platform)
    platform.announce(req)
    platform.finish(Outcome("denied", "denied"), req)
    assert files.summary.read_text() == ""
    assert api.requests == []


def test_no_comment_without_a_pr(make: Callable[..., Any]) -> None:
    api = Api()
    platform, files, _ = make({}, event="schedule", api=api)
    platform.announce(approval(platform))
    assert "ci_shark" in files.summary.read_text()
    assert [r for r in api.requests if "comments" in r.url.path] == []


def test_refused_run_still_records_the_outcome(make: Callable[..., Any]) -> None:
    platform, files, _ = make(pull_request_payload(3, head_repo="mallory/app"))
    platform.finish(Outcome("refused", "refusing: fork"), None)
    assert "Refused by policy" in files.summary.read_text()
    assert files.outputs() == {"status": "refused"}


def test_hostile_texts_cannot_inject_markdown_html_or_commands(
    make: Callable[..., Any],
) -> None:
    api = Api()
    payload = pull_request_payload(7)
    payload["pull_request"]["title"] = "<script>x</script>"
    platform, files, streams = make(payload, api=api)
    context = platform.context()
    req = ApprovalRequest(
        link=HOSTILE_URI,
        verification_uri="https://127.0.0.1/device",
        user_code=HOSTILE_USER_CODE,
        expires_at=request(context).expires_at,
        scope="deploy <b>x</b>",
        resource=(),
        dpop_jkt=None,
        context=context,
    )
    platform.announce(req)
    platform.finish(Outcome("denied", f"the server said: {HOSTILE_DESCRIPTION}"), req)
    comment_bodies = [json.loads(r.content)["body"] for r in api.requests if r.content]
    run = f"https://github.com/{REPO}/actions/runs/4242"
    pull = f"https://github.com/{REPO}/pull/7"
    approve = "https://127.0.0.1/device?x=1%29%5D%28https://evil.example/phish%29&y=%5B*x*%5D"
    shown = [
        assert_inert(text, links={run, pull, approve})
        for text in [*comment_bodies, files.summary.read_text()]
    ]
    # As GitHub renders it: the hostile texts are shown, as text, and do nothing; the one
    # link from the server is its approval link, to its own host.
    (asking, *_) = shown
    assert HOSTILE_USER_CODE in asking.code
    assert "deploy <b>x</b>" in asking.code
    assert any("@everyone" in code for code in shown[-1].code)
    commands = workflow_commands(streams.stderr.getvalue())
    # ours only: the github token's mask and the outcome's annotation; nothing forged
    assert [c.name for c in commands] == ["add-mask", "error"]


def test_shell_format_keeps_stdout_for_eval(make: Callable[..., Any]) -> None:
    platform, files, streams = make({}, output_format="shell")
    creds = credentials()
    platform.mask(creds.secrets())
    platform.log("ci_shark: a log line")
    platform.export(creds)
    exports = streams.stdout.getvalue().splitlines()
    assert exports
    assert all(line.startswith("export SHARK_") for line in exports)
    assert "::add-mask::" in streams.stderr.getvalue()
    assert files.output.read_text() == ""


def test_enterprise_server_api_base_keeps_its_path(tmp_path: Path) -> None:
    api = Api()
    files = RunnerFiles.create(tmp_path, pull_request_payload(7))
    env = files.env(event_name="pull_request", api_url="https://ghes.example.com/api/v3")
    env["GITHUB_SERVER_URL"] = "https://ghes.example.com"
    platform = GitHubPlatform(
        settings(github_token=TOKEN), env, transport=api.transport, **Streams().kwargs()
    )
    req = approval(platform)
    platform.announce(req)
    assert str(api.requests[0].url).startswith(
        f"https://ghes.example.com/api/v3/repos/{REPO}/issues/7/comments"
    )
    assert req.context.change_request_url == f"https://ghes.example.com/{REPO}/pull/7"


def test_plain_http_api_url_is_not_used(tmp_path: Path) -> None:
    api = Api()
    files = RunnerFiles.create(tmp_path, pull_request_payload(7))
    env = files.env(event_name="pull_request", api_url="http://api.example.com")
    platform = GitHubPlatform(
        settings(github_token=TOKEN), env, transport=api.transport, **Streams().kwargs()
    )
    platform.announce(approval(platform))
    assert api.requests == []  # the token is never sent in clear text


def test_pr_event_without_a_readable_pr_is_refused(make: Callable[..., Any]) -> None:
    platform, _, _ = make({"action": "opened"}, event="pull_request")
    context = platform.context()
    assert context.is_fork
    assert context.change_request is None
    with pytest.raises(PolicyRefused, match="could not name"):
        enforce_policy(platform, context)


def test_workflow_run_after_a_fork_pr_is_refused(make: Callable[..., Any]) -> None:
    # GitHub leaves `pull_requests` empty for a fork's run: the head repository decides.
    payload = {
        "workflow_run": {"head_repository": {"full_name": "mallory/app"}, "pull_requests": []}
    }
    platform, _, _ = make(payload, event="workflow_run")
    context = platform.context()
    assert context.is_fork
    with pytest.raises(PolicyRefused, match="mallory/app"):
        enforce_policy(platform, context)


def test_workflow_run_without_a_head_repository_counts_as_a_fork(
    make: Callable[..., Any],
) -> None:
    platform, _, _ = make({"workflow_run": {}}, event="workflow_run")
    assert platform.context().is_fork


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("check_suite", {"check_suite": {"head_branch": None, "pull_requests": []}}),
        ("check_run", {"check_run": {"check_suite": {"head_branch": None}}}),
    ],
)
def test_check_events_on_a_fork_branch_are_refused(
    make: Callable[..., Any], event: str, payload: dict[str, Any]
) -> None:
    platform, _, _ = make(payload, event=event)
    with pytest.raises(PolicyRefused, match="could not name"):
        enforce_policy(platform, platform.context())


def test_a_public_repository_without_allowed_approvers_is_warned(
    make: Callable[..., Any],
) -> None:
    payload = {"repository": {"full_name": "octo/app", "private": False}}
    platform, _, streams = make(payload, event="push", token=None)
    enforce_policy(platform, platform.context())
    assert "allowed-approvers" in streams.stderr.getvalue()
    quiet, _, quiet_streams = make(payload, event="push", token=None, allowed_approvers="alice")
    enforce_policy(quiet, quiet.context())
    assert "public" not in quiet_streams.stderr.getvalue()


def test_the_outcome_edit_has_the_short_budget_of_a_run_s_end(make: Callable[..., Any]) -> None:
    # On a cancellation the runner kills the step seconds after its signal: the closing
    # edit must not wait the 10 s an ordinary call may.
    api = Api()
    read_timeouts: dict[str, float] = {}

    def record(req: httpx.Request) -> None:
        read_timeouts[req.method] = req.extensions["timeout"]["read"]

    api.on_request = record
    platform, _, _ = make(pull_request_payload(7), api=api)
    req = approval(platform)
    platform.announce(req)
    platform.finish(Outcome("cancelled", "cancelled by SIGTERM"), req)

    assert read_timeouts["POST"] == 10.0
    assert 0 < read_timeouts["PATCH"] <= 3.0
