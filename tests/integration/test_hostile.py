"""Hostile authorization servers and hostile approvers, through the CLI and the action's
entrypoint against a scripted server on loopback (issue 12's items, one section each).

Nothing they send is published (no secret of the run, no live mention, reference or link
as GitHub renders it); nothing they claim is believed (another issuer, another approver).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scripted_server import (
    DEVICE_CODE,
    Answer,
    ScriptedServer,
    device_answer,
    gzip_layers,
    id_token,
    nested_json,
    token_answer,
)
from support.cli import REPO, CliResult, clean_env, login_env, run_cli, run_process
from support.gfm import assert_inert, read
from support.github_fakes import (
    FakeGitHubApi,
    RunnerFiles,
    fake_github_api,
    masked_values,
    pull_request_payload,
)
from support.gitlab_fakes import GitLabNotesServer
from support.job_outputs import job_folder, user_state_folder

from ci_shark.sandbox import FakeCiIssuer

GITHUB_TOKEN = "ghs_hostile_test_token_0a1b2c"
CLIENT_SECRET = "cs-hostile-CANARY-77aa11"


@pytest.fixture
def api() -> Iterator[FakeGitHubApi]:
    with fake_github_api(token=GITHUB_TOKEN) as fake:
        yield fake


def serve(**script: Any) -> ScriptedServer:
    return ScriptedServer(**script).start()


@pytest.fixture
def servers() -> Iterator[list[ScriptedServer]]:
    started: list[ScriptedServer] = []
    yield started
    for server in started:
        server.stop()


def start(servers: list[ScriptedServer], **script: Any) -> ScriptedServer:
    server = serve(**script)
    servers.append(server)
    return server


def login(server: ScriptedServer, tmp: Path, *args: str, **env: str) -> CliResult:
    return run_cli(list(args), login_env(server, tmp, CI_SHARK_DPOP="false", **env), cwd=tmp)


def github_step(
    server: ScriptedServer,
    api: FakeGitHubApi,
    tmp: Path,
    payload: dict[str, Any] | None = None,
    *,
    event: str = "pull_request",
    **inputs: str,
) -> tuple[CliResult, RunnerFiles]:
    """entrypoint.py as action.yml runs it, on a PR by default."""
    files = RunnerFiles.create(tmp, payload if payload is not None else pull_request_payload(7))
    env = clean_env(files.env(event_name=event, api_url=api.url))
    env.pop("PYTHONPATH", None)
    env.update(
        {
            "CI_SHARK_AUTH_URL": server.url,
            "CI_SHARK_CLIENT_ID": "ci-shark-test",
            "CI_SHARK_TIMEOUT": "20",
            "CI_SHARK_GITHUB_TOKEN": GITHUB_TOKEN,
            "CI_SHARK_DPOP": "false",
            **inputs,
        }
    )
    step = run_process([sys.executable, str(REPO / "entrypoint.py")], env, cwd=tmp)
    return step, files


def published(api: FakeGitHubApi, files: RunnerFiles) -> list[str]:
    """Everything the step put where no runner masks it: comments, and the summary (whose
    masking a markdown escape could defeat)."""
    return [c.body["body"] for c in api.calls if c.body] + [files.summary.read_text()]


# -- 1. secrets the server echoes are published nowhere ----------------------------------


def test_a_server_echoing_the_client_secret_and_device_code_publishes_neither(
    servers: list[ScriptedServer], api: FakeGitHubApi, tmp_path: Path
) -> None:
    echo = f"client {CLIENT_SECRET} asked with device_code {DEVICE_CODE} - {CLIENT_SECRET}"
    server = start(
        servers,
        token=[Answer(400, {"error": "access_denied", "error_description": echo})],
    )
    step, files = github_step(server, api, tmp_path, CI_SHARK_CLIENT_SECRET=CLIENT_SECRET)
    assert step.returncode == 3, step.log
    for text in published(api, files):
        assert CLIENT_SECRET not in text
        assert DEVICE_CODE not in text
        assert CLIENT_SECRET not in read(text).text  # nor once rendered (no \- escapes)
    assert "asked with device_code ***" in files.summary.read_text()
    masks = set(masked_values(step.stderr))
    for line in step.log.splitlines():
        for secret in (CLIENT_SECRET, DEVICE_CODE):
            if secret in line:
                assert line.startswith("::add-mask::"), line[:60]
                assert secret in masks


def test_a_server_echoing_the_ci_token_publishes_it_nowhere(
    servers: list[ScriptedServer], api: FakeGitHubApi, tmp_path: Path
) -> None:
    """Workload identity: the CI's OIDC token is a secret the server saw, and may quote."""
    with FakeCiIssuer() as issuer:
        server = serve()  # its URL is the token's audience, so it must exist first
        servers.append(server)
        token = issuer.mint(server.url)
        issuer.answer_next(200, json.dumps({"value": token}))
        echo = f"client_assertion {token} is not one we take - {token[:40]}"
        server.scripts["/device"] = [
            Answer(401, {"error": "invalid_client", "error_description": echo})
        ]
        step, files = github_step(
            server, api, tmp_path, CI_SHARK_WORKLOAD_IDENTITY="true", **issuer.environment()
        )
    assert step.returncode == 2, step.log
    assert "client_assertion *** is not one we take" in step.stderr
    assert server.requests[-1].form["client_assertion"] == [token]  # it was sent, and echoed
    for text in [*published(api, files), files.output.read_text(), files.env_file.read_text()]:
        assert token not in text
    for line in step.log.splitlines():
        if token in line:
            assert line == f"::add-mask::{token}", line[:60]


def test_gitlab_echoed_secrets_reach_neither_the_log_nor_the_mr_note(
    servers: list[ScriptedServer], tmp_path: Path
) -> None:
    echo = f"device_code {DEVICE_CODE} client_secret {CLIENT_SECRET}"
    server = start(
        servers, token=[Answer(400, {"error": "invalid_grant", "error_description": echo})]
    )
    notes = GitLabNotesServer().start()
    try:
        env = login_env(
            server,
            tmp_path,
            GITLAB_CI="true",
            CI_API_V4_URL=notes.api_url,
            CI_PROJECT_PATH="team/app",
            CI_MERGE_REQUEST_IID="34",
            CI_MERGE_REQUEST_PROJECT_ID="7",
            CI_MERGE_REQUEST_SOURCE_PROJECT_ID="7",
            CI_SHARK_GITLAB_TOKEN="glpat-hostile-test-0123456789",
            CI_SHARK_CLIENT_SECRET=CLIENT_SECRET,
            CI_SHARK_DPOP="false",
        )
        done = run_cli([], env, cwd=tmp_path)
        bodies = [note["body"] for note in notes.notes_of("7", "34")]
    finally:
        notes.stop()
    assert done.returncode == 5, done.log
    assert bodies
    for text in [done.log, *bodies]:
        assert CLIENT_SECRET not in text
        assert DEVICE_CODE not in text
    assert "device_code *** client_secret ***" in done.stderr


def test_a_refused_verification_uri_quoting_the_device_code_is_not_printed(
    servers: list[ScriptedServer], tmp_path: Path
) -> None:
    server = start(
        servers,
        device=[device_answer(verification_uri=f"http://evil.example/?dc={DEVICE_CODE}")],
    )
    done = login(server, tmp_path)
    assert done.returncode == 5, done.log
    assert "verification_uri" in done.stderr
    assert DEVICE_CODE not in done.log


# -- 2. compression bombs ----------------------------------------------------------------


def _limit_memory() -> None:
    # 1 GiB of address space: the 2 GiB the layered answer decompresses to would not fit.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.parametrize(
    ("encoding", "layers", "words"),
    [("gzip, gzip, gzip", 3, "encoded"), ("gzip", 1, "larger than")],
    ids=["three-layers", "one-layer"],
)
def test_a_compression_bomb_is_refused_without_inflating_it(
    servers: list[ScriptedServer], tmp_path: Path, encoding: str, layers: int, words: str
) -> None:
    bomb = gzip_layers(b"\0" * (64 << 20), layers)  # 64 MiB of zeros, tens of kB on the wire
    server = start(servers, metadata=Answer(raw=bomb, headers={"Content-Encoding": encoding}))
    env = login_env(server, tmp_path, CI_SHARK_DPOP="false")
    began = time.monotonic()
    done = run_process(
        [sys.executable, "-m", "ci_shark"], env, cwd=tmp_path, preexec_fn=_limit_memory
    )
    assert done.returncode == 5, done.log
    assert words in done.stderr
    assert time.monotonic() - began < 20
    assert "MemoryError" not in done.log


# -- 3. allowed-approvers: only the named people, on the server's own claims --------------


def approved_as(claims: dict[str, Any], server_url: str) -> list[Answer]:
    claims = {"iss": server_url, "aud": "ci-shark-test", "exp": time.time() + 600, **claims}
    return [token_answer(id_token=id_token(claims), refresh_token="rt-scripted-1")]


@pytest.mark.parametrize(
    ("allowed", "claims"),
    [
        pytest.param(
            "email:alice@corp.example",
            {"sub": "m-1", "preferred_username": "alice@corp.example"},
            id="unverified-email-as-a-username",
        ),
        pytest.param(
            "sub:248289761001",
            {"sub": "m-1", "preferred_username": "248289761001"},
            id="a-maintainers-sub-as-a-username",
        ),
        pytest.param("user:john_doe", {"sub": "m-1", "login": "john$doe"}, id="sanitised-alike"),
        pytest.param("user:john_doe", {"sub": "m-1", "login": "johnédoe"}, id="accented-alike"),
        pytest.param("user:john_doe", {"sub": "m-1", "username": "john'doe"}, id="quote-alike"),
        pytest.param("user:sam", {"sub": "m-1", "preferred_username": "\u017fam"}, id="long-s"),
        pytest.param(
            "user:" + "m" * 250,
            {"sub": "m-1", "preferred_username": "m" * 249 + "z"},
            id="truncated",
        ),
        pytest.param(
            "email:alice@corp.example",
            {"sub": "m-1", "email": "alice@corp.example"},
            id="unverified-email",
        ),
    ],
)
def test_an_approval_by_someone_else_is_refused_and_revoked(
    servers: list[ScriptedServer], tmp_path: Path, allowed: str, claims: dict[str, Any]
) -> None:
    server = start(servers)
    server.scripts["/token"] = approved_as(claims, server.url)
    done = login(server, tmp_path, CI_SHARK_ALLOWED_APPROVERS=allowed)
    assert done.returncode == 6, done.log
    assert "not in `allowed-approvers`" in done.stderr
    revoked = {r.form["token_type_hint"][0] for r in server.posts("/revoke")}
    assert revoked == {"refresh_token", "access_token"}
    assert "the tokens it issued were revoked" in done.stderr
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(
    ("allowed", "claims"),
    [
        ("sub:248289761001", {"sub": "248289761001"}),
        ("user:Alice", {"sub": "a-1", "preferred_username": "alice"}),
        ("user:alice", {"sub": "a-1", "login": "ALICE"}),
        (
            "email:alice@corp.example",
            {"sub": "a-1", "email": "Alice@corp.example", "email_verified": True},
        ),
        (
            "user:bob,email:alice@corp.example",
            {"sub": "a-1", "email": "alice@corp.example", "email_verified": True},
        ),
    ],
)
def test_an_allowed_approver_passes(
    servers: list[ScriptedServer], tmp_path: Path, allowed: str, claims: dict[str, Any]
) -> None:
    server = start(servers)
    server.scripts["/token"] = approved_as(claims, server.url)
    done = login(server, tmp_path, CI_SHARK_ALLOWED_APPROVERS=allowed)
    assert done.returncode == 0, done.log
    assert server.posts("/revoke") == []


# -- 4. no live mention, reference or link in what GitHub renders ------------------------

LIVE_TEXT = (
    "&#64;octo-org/admins \\#1 octo/app#2 http://2130706433/x http://localhost:8080/x "
    "a@b.example www.evil.example"
)


def ours(server: ScriptedServer) -> set[str]:
    """The links a comment may have: the approval link, the run, the PR."""
    return {
        f"{server.url}/device?user_code=WDJB-MJHT",
        "https://github.com/octo/app/actions/runs/4242",
        "https://github.com/octo/app/pull/7",
    }


def test_no_mention_reference_or_autolink_from_server_or_approver_text(
    servers: list[ScriptedServer], api: FakeGitHubApi, tmp_path: Path
) -> None:
    server = start(servers)
    claims = {"sub": "m-1", "preferred_username": "@octo-org/admins"}
    server.scripts["/token"] = approved_as(claims, server.url)
    step, files = github_step(
        server,
        api,
        tmp_path,
        CI_SHARK_SCOPE=LIVE_TEXT,
        CI_SHARK_RESOURCE="https://api.example.com/",
    )
    assert step.returncode == 0, step.log
    first = next(c.body["body"] for c in api.calls if c.body)
    shown = assert_inert(first, links=ours(server))
    assert "https://api.example.com/" in shown.code  # reads as sent: no backslashes
    assert LIVE_TEXT in shown.code
    for text in published(api, files):
        assert_inert(text, links=ours(server))
    assert "Approved by `@octo-org/admins`" in files.summary.read_text()


def test_a_hostile_error_description_is_shown_inert(
    servers: list[ScriptedServer], api: FakeGitHubApi, tmp_path: Path
) -> None:
    server = start(
        servers, token=[Answer(400, {"error": "access_denied", "error_description": LIVE_TEXT})]
    )
    step, files = github_step(server, api, tmp_path)
    assert step.returncode == 3, step.log
    final = files.summary.read_text()
    shown = assert_inert(
        final,
        links={
            "https://github.com/octo/app/actions/runs/4242",
            "https://github.com/octo/app/pull/7",
        },
    )
    assert any("&#64;octo-org/admins" in code for code in shown.code)


def test_hostile_workflow_and_job_names_stay_inert(
    servers: list[ScriptedServer], api: FakeGitHubApi, tmp_path: Path
) -> None:
    server = start(servers)
    step, files = github_step(
        server, api, tmp_path, CI_SHARK_MATRIX='{"env": "@octo-org/admins #3"}'
    )
    assert step.returncode == 0, step.log
    for text in published(api, files):
        assert_inert(
            text,
            links={
                f"{server.url}/device?user_code=WDJB-MJHT",
                "https://github.com/octo/app/actions/runs/4242",
                "https://github.com/octo/app/pull/7",
            },
        )


# -- 5. the GitLab note hijack: see test_gitlab.py (a marked note by someone else) ------


# -- 6. mix-up: another issuer's metadata or id_token is not believed ---------------------


def test_metadata_of_another_issuer_is_refused_before_any_device_code(
    servers: list[ScriptedServer], tmp_path: Path
) -> None:
    server = start(servers, issuer="https://evil.example")
    done = login(server, tmp_path)
    assert done.returncode == 5, done.log
    assert "names issuer https://evil.example" in done.stderr
    assert server.posts("/device") == []


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://evil.example"},
        {"exp": time.time() - 3600},
        {"aud": "someone-else"},
    ],
    ids=["another-issuer", "expired", "another-audience"],
)
def test_an_id_token_from_elsewhere_does_not_name_the_approver(
    servers: list[ScriptedServer], tmp_path: Path, claims: dict[str, Any]
) -> None:
    server = start(servers)
    full = {"iss": server.url, "aud": "ci-shark-test", "exp": time.time() + 600, "sub": "alice"}
    server.scripts["/token"] = [token_answer(id_token=id_token({**full, **claims}))]
    done = login(server, tmp_path, CI_SHARK_ALLOWED_APPROVERS="sub:alice")
    assert done.returncode == 6, done.log
    assert "someone the server did not identify" in done.stderr


# -- 7. odd input is a protocol error, and what was issued is revoked ---------------------


@pytest.mark.parametrize(
    "device",
    [
        device_answer(interval="\u00b2"),
        device_answer(expires_in="9" * 5000),
        Answer(raw=nested_json(100_000)),
    ],
    ids=["superscript-interval", "5000-digit-expires-in", "deeply-nested"],
)
def test_odd_device_answers_are_protocol_errors_not_crashes(
    servers: list[ScriptedServer], tmp_path: Path, device: Answer
) -> None:
    server = start(servers, device=[device])
    done = login(server, tmp_path)
    assert done.returncode == 5, done.log
    assert "unexpected failure" not in done.stderr


def test_deeply_nested_metadata_is_no_metadata(
    servers: list[ScriptedServer], tmp_path: Path
) -> None:
    server = start(servers, metadata=Answer(raw=nested_json(100_000)))
    done = login(server, tmp_path)
    assert "unexpected failure" not in done.stderr
    assert done.returncode == 5, done.log  # SharkAuth's paths: this server has no /oauth/device


@pytest.mark.parametrize(
    "token",
    [
        token_answer(access_token="tök-printable-but-not-ascii", refresh_token="rt-scripted-1"),
        token_answer(access_token="at-${HOME}-x", refresh_token="rt-scripted-1"),
        Answer(raw=nested_json(100_000)),
    ],
    ids=["non-ascii-token", "dollar-in-token", "deeply-nested"],
)
def test_an_unusable_token_answer_is_a_protocol_error_and_is_revoked(
    servers: list[ScriptedServer], tmp_path: Path, token: Answer
) -> None:
    server = start(servers, token=[token])
    done = login(server, tmp_path)
    assert done.returncode == 5, done.log
    assert "unexpected failure" not in done.stderr
    assert not (tmp_path / "out.json").exists()
    if token.body is not None:
        revoked = [r.form["token"][0] for r in server.posts("/revoke")]
        assert revoked == [token.body["refresh_token"], token.body["access_token"]]
        assert "revoked" in done.stderr


def test_a_deeply_nested_userinfo_is_no_identity(
    servers: list[ScriptedServer], tmp_path: Path
) -> None:
    server = start(servers, userinfo=Answer(raw=nested_json(100_000)))
    done = login(server, tmp_path, CI_SHARK_ALLOWED_APPROVERS="sub:alice")
    assert done.returncode == 6, done.log
    assert "unexpected failure" not in done.stderr


# -- 8. renew: no code storm --------------------------------------------------------------


def test_a_one_second_code_is_a_protocol_error_not_a_storm(
    servers: list[ScriptedServer], tmp_path: Path
) -> None:
    server = start(servers, device=[device_answer(expires_in=1)])
    done = login(server, tmp_path, CI_SHARK_RENEW="true", CI_SHARK_TIMEOUT="30")
    assert done.returncode == 5, done.log
    assert "too short" in done.stderr
    assert len(server.posts("/device")) == 1


def test_renewals_are_paced(servers: list[ScriptedServer], tmp_path: Path) -> None:
    server = start(
        servers,
        device=[device_answer(expires_in=2)],
        token=[Answer(400, {"error": "authorization_pending"})],
    )
    began = time.monotonic()
    done = login(server, tmp_path, CI_SHARK_RENEW="true", CI_SHARK_TIMEOUT="25")
    elapsed = time.monotonic() - began
    assert done.returncode == 4, done.log
    codes = len(server.posts("/device"))
    assert 2 <= codes <= 1 + int(elapsed // 10) + 1, (codes, elapsed)


# -- 9. outputs and the fork check ---------------------------------------------------------


@pytest.mark.parametrize("where", ["a CI that names no job", "a terminal"])
def test_the_default_credentials_file_is_not_in_the_checkout(
    servers: list[ScriptedServer], tmp_path: Path, where: str
) -> None:
    server = start(servers)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    env = login_env(server, tmp_path, CI_SHARK_DPOP="true", CI_SHARK_OUTPUT_FORMAT="dotenv")
    env.pop("CI_SHARK_OUTPUT_FILE")
    env["TMPDIR"] = str(tmp_path)
    if where == "a CI that names no job":
        env["CI"] = "true"
    server.scripts["/token"] = [token_answer(token_type="DPoP")]
    done = run_cli([], env, cwd=checkout)
    assert done.returncode == 0, done.log
    assert list(checkout.iterdir()) == []  # `docker build .` picks up nothing
    folder = job_folder(tmp_path) if "CI" in env else user_state_folder(env)
    assert (folder / "ci-shark.env").is_file()
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert f"wrote {folder / 'ci-shark.env'}" in done.stderr


def test_revoke_masks_what_it_read_before_talking_to_the_server(
    servers: list[ScriptedServer], api: FakeGitHubApi, tmp_path: Path
) -> None:
    server = start(servers)
    files = RunnerFiles.create(tmp_path, {})
    env = clean_env(files.env(event_name="push", api_url=api.url))
    env.update(
        {
            "CI_SHARK_AUTH_URL": server.url,
            "CI_SHARK_CLIENT_ID": "ci-shark-test",
            "SHARK_ACCESS_TOKEN": "at-to-revoke-5c5c5c",
            "SHARK_REFRESH_TOKEN": "rt-to-revoke-6d6d6d",
        }
    )
    done = run_cli(["revoke"], env, cwd=tmp_path)
    assert done.returncode == 0, done.log
    lines = done.stderr.splitlines()
    assert set(lines[:2]) == {"::add-mask::rt-to-revoke-6d6d6d", "::add-mask::at-to-revoke-5c5c5c"}
    assert [r.form["token_type_hint"][0] for r in server.posts("/revoke")] == [
        "refresh_token",
        "access_token",
    ]


def test_the_base_repository_comes_from_the_runner_not_the_payload(
    servers: list[ScriptedServer], api: FakeGitHubApi, tmp_path: Path
) -> None:
    # The payload says base == head == mallory/app; the job runs in octo/app.
    payload = pull_request_payload(7, head_repo="mallory/app", base_repo="mallory/app")
    server = start(servers)
    step, _ = github_step(server, api, tmp_path, payload)
    assert step.returncode == 6, step.log
    assert server.posts("/device") == []


@pytest.mark.parametrize(("head", "code"), [("mallory/app", 6), ("octo/app", 0)])
def test_a_merge_queue_run_is_judged_by_its_pull_request(
    servers: list[ScriptedServer], api: FakeGitHubApi, tmp_path: Path, head: str, code: int
) -> None:
    api.pulls[5] = {"number": 5, "head": {"repo": {"full_name": head}}}
    payload = {"merge_group": {"head_ref": "refs/heads/gh-readonly-queue/main/pr-5-" + "a" * 40}}
    server = start(servers)
    step, _ = github_step(server, api, tmp_path, payload, event="merge_group")
    assert step.returncode == code, step.log


@pytest.mark.parametrize(("source", "code"), [("mallory/app", 6), ("team/app", 0)])
def test_a_gitlab_external_pull_request_is_judged(
    servers: list[ScriptedServer], tmp_path: Path, source: str, code: int
) -> None:
    server = start(servers)
    done = login(
        server,
        tmp_path,
        GITLAB_CI="true",
        CI_PIPELINE_SOURCE="external_pull_request_event",
        CI_EXTERNAL_PULL_REQUEST_SOURCE_REPOSITORY=source,
        CI_EXTERNAL_PULL_REQUEST_TARGET_REPOSITORY="team/app",
        CI_SHARK_NOTIFY="log",
    )
    assert done.returncode == code, done.log


# -- 10. what the approver is shown ------------------------------------------------------


@pytest.mark.parametrize("evil", ["{url}/device?user_code=EVIL-CODE", "{url}/device/EVIL-CODE"])
def test_a_complete_link_with_another_code_is_replaced_by_the_plain_one(
    servers: list[ScriptedServer], api: FakeGitHubApi, tmp_path: Path, evil: str
) -> None:
    server = start(servers, device=[device_answer(verification_uri_complete=evil)])
    step, _ = github_step(server, api, tmp_path)
    assert step.returncode == 0, step.log
    assert "::warning title=ci_shark::the server's verification_uri_complete carries" in step.stderr
    assert "(EVIL-CODE vs WDJB-MJHT)" in step.stderr
    comment = read(next(c.body["body"] for c in api.calls if c.body))  # the request
    assert comment.links.count(f"{server.url}/device") == 1  # the plain page...
    assert not any("EVIL" in link for link in comment.links)  # ...never the other code's
    assert "WDJB-MJHT" in comment.text  # and the code to type there
    assert f"open:     {server.url}/device\n" in step.stderr
    assert [line for line in step.stderr.splitlines() if "EVIL" in line] == [
        line for line in step.stderr.splitlines() if line.startswith("::warning")
    ]


def test_an_approval_page_on_another_host_is_flagged(
    servers: list[ScriptedServer], api: FakeGitHubApi, tmp_path: Path
) -> None:
    server = start(
        servers,
        device=[
            device_answer(
                verification_uri="https://device-login.example/",
                verification_uri_complete="https://device-login.example/?user_code=WDJB-MJHT",
            )
        ],
    )
    step, _ = github_step(server, api, tmp_path)
    assert step.returncode == 0, step.log
    first = next(c.body["body"] for c in api.calls if c.body)
    text = " ".join(read(first).text.split())
    assert (
        "The approval page is on device-login.example, not on the authorization server 127.0.0.1"
        in text
    )
    assert "warning:  the approval page is on device-login.example" in step.stderr
