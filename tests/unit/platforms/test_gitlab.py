"""GitLabPlatform: context from the predefined variables, the MR note's lifecycle through a
fake notes API (httpx.MockTransport), fork refusal, the log sections, exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.gfm import assert_inert
from support.gitlab_fakes import JOB_ENV

from ci_shark.errors import Cancelled, ExitCode, PolicyRefused
from ci_shark.platforms import Platform, detect
from ci_shark.platforms.gitlab import GitLabPlatform
from ci_shark.render import Outcome, marker
from ci_shark.secret import Secret

from .platform_fakes import (
    ACCESS_TOKEN,
    DEVICE_CODE,
    GITLAB_TOKEN,
    REFRESH_TOKEN,
    Streams,
    credentials,
    enforce_policy,
    request,
    settings,
)

API = "https://gitlab.example.com/api/v4"
BASE_ENV = {**JOB_ENV, "CI_API_V4_URL": API, "CI_PIPELINE_SOURCE": "merge_request_event"}
MR_ENV = {
    **BASE_ENV,
    "CI_MERGE_REQUEST_IID": "34",
    "CI_MERGE_REQUEST_PROJECT_ID": "7",
    "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "7",
    "CI_MERGE_REQUEST_PROJECT_URL": "https://gitlab.example.com/team/app",
}


BOT = {"id": 42, "username": "project_7_bot"}  # the project access token's own user
MALLORY = {"id": 666, "username": "mallory"}


class FakeNotes:
    """The MR notes endpoints of one GitLab project, and GET /user, in memory."""

    def __init__(self, *, status: int | None = None, notes: list[dict[str, Any]] | None = None):
        self.status = status  # answer every request with this status instead
        self.notes: list[dict[str, Any]] = notes or []
        self.requests: list[httpx.Request] = []

    def __call__(self, req: httpx.Request) -> httpx.Response:
        self.requests.append(req)
        if self.status is not None:
            return httpx.Response(self.status, json={"message": "nope"})
        if req.url.path == "/api/v4/user":
            return httpx.Response(200, json=BOT)
        match = re.fullmatch(
            r"/api/v4/projects/(?P<project>[^/]+)/merge_requests/(?P<iid>\d+)/notes(?:/(?P<id>\d+))?",
            req.url.raw_path.decode().split("?")[0],
        )
        assert match, req.url
        if req.method == "GET":
            page = int(req.url.params.get("page", "1"))
            newest_first = sorted(self.notes, key=lambda note: -note["id"])
            return httpx.Response(200, json=newest_first[(page - 1) * 100 : page * 100])
        if req.method == "POST":
            note = {
                "id": 100 + len(self.notes),
                "body": json.loads(req.content)["body"],
                "author": BOT,
            }
            self.notes.append(note)
            return httpx.Response(201, json=note)
        if req.method == "PUT":
            for note in self.notes:
                if note["id"] == int(match["id"]):
                    note["body"] = json.loads(req.content)["body"]
                    return httpx.Response(200, json=note)
            return httpx.Response(404, json={"message": "404 Not found"})
        return httpx.Response(405)


def platform(
    env: dict[str, str],
    fake: FakeNotes | None = None,
    streams: Streams | None = None,
    **values: Any,
) -> GitLabPlatform:
    values.setdefault("gitlab_token", GITLAB_TOKEN)
    return GitLabPlatform(
        settings(**values),
        env,
        transport=httpx.MockTransport(fake or FakeNotes()),
        **(streams or Streams()).kwargs(),
    )


def test_detected_by_gitlab_ci() -> None:
    assert detect({"GITLAB_CI": "true"}) is GitLabPlatform
    assert detect({"CI": "true"}) is Platform


def test_context_of_an_mr_pipeline() -> None:
    context = platform(MR_ENV).context()
    assert context.platform == "gitlab"
    assert context.repository == "team/app"
    assert context.job == "deploy"
    assert context.job_url == MR_ENV["CI_JOB_URL"]
    assert context.run_url == MR_ENV["CI_PIPELINE_URL"]
    assert context.commit == MR_ENV["CI_COMMIT_SHA"]
    assert context.actor == "maria"
    assert context.change_request == "MR !34"
    assert context.change_request_url == "https://gitlab.example.com/team/app/-/merge_requests/34"
    assert not context.is_fork


def test_branch_pipeline_uses_the_open_mr_of_this_project() -> None:
    env = {
        **BASE_ENV,
        "CI_PIPELINE_SOURCE": "push",
        "CI_OPEN_MERGE_REQUESTS": "other/lib!3,team/app!12",
    }
    context = platform(env).context()
    assert context.change_request == "MR !12"
    assert context.change_request_url == "https://gitlab.example.com/team/app/-/merge_requests/12"


def test_branch_pipeline_ignores_other_projects_mrs_and_garbage() -> None:
    env = {**BASE_ENV, "CI_OPEN_MERGE_REQUESTS": "other/lib!3, team/app!x, !!"}
    assert platform(env).context().change_request is None


def test_fork_mr_is_refused_before_anything_else() -> None:
    env = {
        **MR_ENV,
        "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "8",
        "CI_MERGE_REQUEST_SOURCE_PROJECT_PATH": "mallory/app",
    }
    fake = FakeNotes()
    gitlab = platform(env, fake)
    context = gitlab.context()
    assert context.is_fork
    assert context.fork_source == "mallory/app"
    with pytest.raises(PolicyRefused) as refused:
        enforce_policy(gitlab, context)
    assert "fork" in refused.value.message
    assert "allow-fork" in (refused.value.hint or "")
    assert fake.requests == []


def test_fork_mr_allowed_with_allow_fork() -> None:
    env = {**MR_ENV, "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "8"}
    gitlab = platform(env, allow_fork=True)
    enforce_policy(gitlab, gitlab.context())  # no exception


def test_note_is_posted_then_edited_with_the_outcome() -> None:
    fake = FakeNotes()
    streams = Streams()
    gitlab = platform(MR_ENV, fake, streams)
    approval = request(gitlab.context())
    gitlab.announce(approval)

    assert len(fake.notes) == 1
    body = fake.notes[0]["body"]
    assert body.startswith(marker(approval.context))
    assert "WDJB" in body
    assert "auth.example.com" in body
    post = next(r for r in fake.requests if r.method == "POST")
    assert post.headers["PRIVATE-TOKEN"] == GITLAB_TOKEN
    assert post.url.raw_path.decode().startswith("/api/v4/projects/7/merge_requests/34/notes")

    gitlab.finish(Outcome("approved", "credentials exported"), approval)
    assert len(fake.notes) == 1
    final = fake.notes[0]["body"]
    assert final.startswith(marker(approval.context))
    assert "Approved" in final
    assert "WDJB" not in final  # the code is gone once the flow ended
    assert GITLAB_TOKEN not in streams.all()


def test_rerun_edits_its_own_note() -> None:
    context = platform(MR_ENV).context()
    old = {"id": 5, "body": marker(context) + "\nold run", "author": BOT}
    unrelated = {"id": 6, "body": "LGTM", "author": MALLORY}
    fake = FakeNotes(notes=[old, unrelated])
    gitlab = platform(MR_ENV, fake)
    gitlab.announce(request(gitlab.context()))
    assert [note["id"] for note in fake.notes] == [5, 6]
    assert "WDJB" in old["body"]
    assert [(r.method, r.url.path.rsplit("/", 1)[1]) for r in fake.requests] == [
        ("GET", "user"),
        ("GET", "notes"),
        ("PUT", "5"),
    ]


def test_a_note_with_our_marker_by_someone_else_is_never_adopted() -> None:
    # With a token that may edit others' notes, adopting it would put the approval link
    # into a note its author can change afterwards.
    context = platform(MR_ENV).context()
    planted = {"id": 5, "body": marker(context) + "\nplanted", "author": MALLORY}
    fake = FakeNotes(notes=[planted])
    gitlab = platform(MR_ENV, fake)
    gitlab.announce(request(gitlab.context()))
    assert planted["body"].endswith("planted")
    assert [r.method for r in fake.requests] == ["GET", "GET", "POST"]
    assert len(fake.notes) == 2


def test_our_note_we_can_no_longer_edit_gets_a_new_note() -> None:
    context = platform(MR_ENV).context()

    class Forbidden(FakeNotes):
        def __call__(self, req: httpx.Request) -> httpx.Response:
            if req.method == "PUT":
                self.requests.append(req)
                return httpx.Response(403, json={"message": "403 Forbidden"})
            return super().__call__(req)

    fake = Forbidden(notes=[{"id": 5, "body": marker(context) + "\nold", "author": BOT}])
    gitlab = platform(MR_ENV, fake)
    gitlab.announce(request(gitlab.context()))
    assert [r.method for r in fake.requests] == ["GET", "GET", "PUT", "POST"]
    assert len(fake.notes) == 2


class CancelledWhilePosting(FakeNotes):
    """The job is cancelled during its POST: after GitLab made the note (``arrived``), or
    before the request got there; either way the job never reads the answer."""

    def __init__(self, *, arrived: bool) -> None:
        super().__init__()
        self.arrived = arrived

    def __call__(self, req: httpx.Request) -> httpx.Response:
        if req.method != "POST":
            return super().__call__(req)
        if self.arrived:
            super().__call__(req)  # GitLab made the note; its answer is never read
        raise Cancelled("SIGTERM", ExitCode.SIGTERM)  # as the signal handler raises it


def test_a_note_posted_as_the_job_is_cancelled_is_found_and_says_cancelled() -> None:
    fake = CancelledWhilePosting(arrived=True)
    gitlab = platform(MR_ENV, fake)
    approval = request(gitlab.context())
    with pytest.raises(Cancelled):
        gitlab.announce(approval)
    gitlab.finish(Outcome("cancelled", "cancelled by SIGTERM"), approval)
    (note,) = fake.notes
    assert "Cancelled" in note["body"]
    assert "WDJB" not in note["body"]  # no longer asking for an approval nobody waits for
    methods = [r.method for r in fake.requests]
    assert methods[methods.index("POST") :] == ["POST", "GET", "GET", "PUT"]  # found, edited


def test_a_note_whose_post_never_arrived_is_not_posted_at_the_end() -> None:
    fake = CancelledWhilePosting(arrived=False)
    gitlab = platform(MR_ENV, fake)
    approval = request(gitlab.context())
    with pytest.raises(Cancelled):
        gitlab.announce(approval)
    gitlab.finish(Outcome("cancelled", "cancelled by SIGTERM"), approval)
    assert fake.notes == []
    # It looked for the note (who it is, the notes) twice: before posting, and at the end.
    assert [r.method for r in fake.requests] == ["GET"] * 4


def test_no_token_warns_about_job_token_and_goes_on() -> None:
    fake = FakeNotes()
    streams = Streams()
    gitlab = platform(MR_ENV, fake, streams, gitlab_token=None)
    approval = request(gitlab.context())
    gitlab.announce(approval)
    gitlab.finish(Outcome("approved", "ok"), approval)
    log = streams.stderr.getvalue()
    assert "warning" in log
    assert "CI_JOB_TOKEN cannot post MR notes" in log
    assert "`api` scope" in log
    assert log.count("warning:") == 1
    assert "WDJB" in log  # the log still has the code
    assert fake.requests == []


@pytest.mark.parametrize(("status", "words"), [(401, "rejected"), (403, "refused"), (404, "404")])
def test_api_errors_are_one_warning_naming_the_scope(status: int, words: str) -> None:
    fake = FakeNotes(status=status)
    streams = Streams()
    gitlab = platform(MR_ENV, fake, streams)
    approval = request(gitlab.context())
    gitlab.announce(approval)
    gitlab.finish(Outcome("denied", "denied"), approval)
    log = streams.stderr.getvalue()
    assert log.count("warning:") == 1
    assert f"HTTP {status}" in log
    assert words in log
    assert "`api` scope" in log
    assert GITLAB_TOKEN not in log
    assert len(fake.requests) == 1  # no retry storm after the first failure


def test_unreachable_api_is_a_warning() -> None:
    def down(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=req)

    streams = Streams()
    gitlab = GitLabPlatform(
        settings(gitlab_token=GITLAB_TOKEN),
        MR_ENV,
        transport=httpx.MockTransport(down),
        **streams.kwargs(),
    )
    gitlab.announce(request(gitlab.context()))
    assert "could not be reached" in streams.stderr.getvalue()


def test_plain_http_api_is_refused_so_the_token_never_travels_in_clear() -> None:
    fake = FakeNotes()
    streams = Streams()
    env = {**MR_ENV, "CI_API_V4_URL": "http://gitlab.example.com/api/v4"}
    gitlab = platform(env, fake, streams)
    gitlab.announce(request(gitlab.context()))
    assert fake.requests == []
    assert "CI_API_V4_URL" in streams.stderr.getvalue()


def test_notify_log_only_posts_no_note() -> None:
    fake = FakeNotes()
    gitlab = platform(MR_ENV, fake, notify="log")
    gitlab.announce(request(gitlab.context()))
    assert fake.requests == []


def test_waiting_part_is_a_collapsed_section_after_the_link() -> None:
    streams = Streams()
    gitlab = platform(MR_ENV, streams=streams, notify="log")
    approval = request(gitlab.context())
    gitlab.announce(approval)
    gitlab.finish(Outcome("approved", "credentials exported"), approval)
    log = streams.stderr.getvalue()
    start = re.search(
        r"\x1b\[0Ksection_start:\d+:ci_shark_waiting\[collapsed=true\]\r\x1b\[0K", log
    )
    end = re.search(r"\x1b\[0Ksection_end:\d+:ci_shark_waiting\r\x1b\[0K", log)
    assert start
    assert end
    assert log.index("WDJB") < start.start() < end.start() < log.index("approved")


def test_mask_is_a_noop_and_no_secret_reaches_the_log(tmp_path: Path) -> None:
    streams = Streams()
    gitlab = platform(MR_ENV, streams=streams, output_file=str(tmp_path / "ci-shark.env"))
    creds = credentials()
    gitlab.mask([Secret(DEVICE_CODE), *creds.secrets()])
    exported = gitlab.export(creds)
    text = streams.all()
    for secret in (DEVICE_CODE, ACCESS_TOKEN, REFRESH_TOKEN, GITLAB_TOKEN):
        assert secret not in text
    assert "artifacts:reports:dotenv" in text  # the warning about readable artifacts
    dotenv = (tmp_path / "ci-shark.env").read_text()
    assert f"SHARK_ACCESS_TOKEN={ACCESS_TOKEN}\n" in dotenv
    assert "BEGIN" not in dotenv  # no multi-line value: the key travels as a file + JWK
    assert f"SHARK_DPOP_KEY_FILE={exported.dpop_key_file}\n" in dotenv
    assert Path(exported.dpop_key_file or "").read_text().startswith("-----BEGIN")


def test_output_format_auto_is_dotenv_and_shell_goes_to_stdout() -> None:
    assert platform(MR_ENV).output_format() == "dotenv"
    streams = Streams()
    gitlab = platform(MR_ENV, streams=streams, output_format="shell")
    gitlab.export(credentials())
    assert f"export SHARK_ACCESS_TOKEN={ACCESS_TOKEN}\n" in streams.stdout.getvalue()
    assert ACCESS_TOKEN not in streams.stderr.getvalue()


def test_untrusted_context_cannot_inject_into_the_note() -> None:
    fake = FakeNotes()
    env = {**MR_ENV, "CI_JOB_NAME": "deploy](https://evil.example)<img src=x>@admins"}
    gitlab = platform(env, fake)
    gitlab.announce(request(gitlab.context()))
    shown = assert_inert(
        fake.notes[0]["body"],
        links={
            "https://gitlab.example.com/team/app/-/jobs/1234",
            "https://gitlab.example.com/team/app/-/pipelines/99",
            "https://gitlab.example.com/team/app/-/merge_requests/34",
            "https://auth.example.com/device?user_code=WDJB-MJHT",
        },
    )
    assert "deploy](https://evil.example)<img src=x>@admins" in shown.code
