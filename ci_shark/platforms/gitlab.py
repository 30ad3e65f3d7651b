"""GitLab CI: the MR note, collapsible log sections, and exports that never touch the log.

GitLab cannot mask a value at runtime (only variables defined in the project settings are
masked), so masking is a no-op here and the rule is stronger than elsewhere: no secret is
ever written to the job log. Secrets leave the process only through the 0600 dotenv/json
file or, with ``--output-format shell``, through stdout into ``eval "$(...)"``.

The MR note has the same content and lifecycle as the GitHub PR comment: posted on
``announce`` with a hidden marker, found again on a re-run by that marker and by its
author (only a note the token's own user wrote is ever edited), and edited by ``finish``
with the outcome. Posting needs ``CI_SHARK_GITLAB_TOKEN`` (a project, group or
personal access token with the ``api`` scope): ``CI_JOB_TOKEN`` cannot write notes. Every
API failure is a warning; the approval itself never depends on the note.
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

from ci_shark.oauth.tls import context_for, create_context
from ci_shark.outputs import Credentials
from ci_shark.platforms.base import Platform
from ci_shark.platforms.common import MarkedNote, Note, NoteApiError, env_value
from ci_shark.platforms.rest import RestApi
from ci_shark.render import (
    ApprovalRequest,
    Outcome,
    RunContext,
    approval_markdown,
    marker,
    outcome_markdown,
)
from ci_shark.secret import Secret
from ci_shark.urls import url_problem

API_BUDGET_S = 10.0
NOTES_PAGES = 5  # 100 notes a page; a marker further back than 500 notes gets a new note
WAIT_SECTION = "ci_shark_waiting"
SCOPE_HELP = (
    "set CI_SHARK_GITLAB_TOKEN to a project or group access token with the `api` scope "
    "(role Reporter or higher); CI_JOB_TOKEN cannot post MR notes"
)
_OPEN_MR = re.compile(r"^(?P<path>[\w.\-/]+)!(?P<iid>\d+)$")
_IID = re.compile(r"^\d{1,12}$")


@dataclass(frozen=True)
class MergeRequest:
    """Where the note goes: the project (numeric id or path) that holds the MR, and its IID."""

    project: str
    iid: str
    url: str | None


class MergeRequestNotes:
    """The notes of one MR, as :class:`MarkedNote` needs them."""

    def __init__(self, api: RestApi, notes_path: str) -> None:
        self._api = api
        self._path = notes_path

    def own_author(self) -> str | None:
        """The user (a project access token has a bot user) the token posts as."""
        user = _object(self._api.call("GET", "/user", doing="asking who the token is"))
        user_id = user.get("id")
        return str(user_id) if isinstance(user_id, int) else None

    def notes(self) -> Iterator[Note]:
        newest_first = {"sort": "desc", "order_by": "created_at"}
        for item in self._api.pages(
            self._path, newest_first, NOTES_PAGES, doing="listing the MR notes"
        ):
            if (
                isinstance(item, dict)
                and not item.get("system")
                and isinstance(item.get("id"), int)
                and isinstance(item.get("body"), str)
            ):
                author = item.get("author")
                author_id = author.get("id") if isinstance(author, dict) else None
                yield Note(
                    item["id"],
                    str(author_id) if isinstance(author_id, int) else None,
                    item["body"],
                )

    def create(self, body: str) -> int:
        created = self._api.call("POST", self._path, {"body": body}, doing="posting the MR note")
        note_id = _object(created).get("id")
        if not isinstance(note_id, int):
            raise NoteApiError("the GitLab API answered the new note without an id")
        return note_id

    def edit(self, note_id: int, body: str) -> None:
        self._api.call(
            "PUT", f"{self._path}/{note_id}", {"body": body}, doing="editing the MR note"
        )


class GitLabPlatform(Platform):
    name: ClassVar[str] = "gitlab"
    ci_identity: ClassVar[str | None] = "gitlab"
    auto_channels: ClassVar[tuple[str, ...]] = ("log", "comment")
    job_id_variable: ClassVar[str | None] = "CI_JOB_ID"

    def init_state(self) -> None:
        self._merge_request: MergeRequest | None = None
        self._note: MarkedNote | None = None
        self._notes_off = False  # no MR, no token, no API: said once
        self._section_open = False
        self._api: RestApi | None = None  # one connection for every note write

    # -- what the run is -------------------------------------------------------------------

    def context(self) -> RunContext:
        env = self.env
        self._merge_request = self._find_merge_request()
        is_fork, fork_source = self._fork()
        return RunContext(
            platform=self.name,
            repository=env_value(env, "CI_PROJECT_PATH"),
            workflow=env_value(env, "CI_PIPELINE_NAME"),
            job=env_value(env, "CI_JOB_NAME"),
            job_url=env_value(env, "CI_JOB_URL"),
            run_url=env_value(env, "CI_PIPELINE_URL"),
            public=env_value(env, "CI_PROJECT_VISIBILITY") == "public",
            commit=env_value(env, "CI_COMMIT_SHA"),
            actor=env_value(env, "GITLAB_USER_LOGIN"),
            change_request=f"MR !{self._merge_request.iid}" if self._merge_request else None,
            change_request_url=self._merge_request.url if self._merge_request else None,
            is_fork=is_fork,
            fork_source=fork_source,
        )

    def _fork(self) -> tuple[bool, str | None]:
        """An MR, or an external (GitHub) pull request, from another project. One whose
        source is unknown counts as a fork: refusing is the safe side."""
        env = self.env
        if env_value(env, "CI_MERGE_REQUEST_IID"):
            source = env_value(env, "CI_MERGE_REQUEST_SOURCE_PROJECT_ID")
            if not source or source != env_value(env, "CI_MERGE_REQUEST_PROJECT_ID"):
                return True, env_value(env, "CI_MERGE_REQUEST_SOURCE_PROJECT_PATH")
        if env_value(env, "CI_PIPELINE_SOURCE") == "external_pull_request_event":
            source = env_value(env, "CI_EXTERNAL_PULL_REQUEST_SOURCE_REPOSITORY")
            target = env_value(env, "CI_EXTERNAL_PULL_REQUEST_TARGET_REPOSITORY")
            if not source or source != target:
                return True, source
        return False, None

    def _find_merge_request(self) -> MergeRequest | None:
        """The MR of an MR pipeline, else the first open MR of this branch in this project."""
        env = self.env
        iid = env_value(env, "CI_MERGE_REQUEST_IID")
        if iid and _IID.match(iid):
            project = env_value(env, "CI_MERGE_REQUEST_PROJECT_ID") or env_value(
                env, "CI_MERGE_REQUEST_PROJECT_PATH"
            )
            project_url = env_value(env, "CI_MERGE_REQUEST_PROJECT_URL") or env_value(
                env, "CI_PROJECT_URL"
            )
            if project:
                return MergeRequest(project, iid, _mr_url(project_url, iid))
        # Branch pipelines: "group/project!12,other/project!3" (up to four). Only an MR in
        # this very project is used: another project's MR is another project's business.
        project_path = env_value(env, "CI_PROJECT_PATH")
        for item in (env_value(env, "CI_OPEN_MERGE_REQUESTS") or "").split(","):
            match = _OPEN_MR.match(item.strip())
            if match and project_path and match["path"] == project_path:
                project_id = env_value(env, "CI_PROJECT_ID") or project_path
                return MergeRequest(
                    project_id,
                    match["iid"],
                    _mr_url(env_value(env, "CI_PROJECT_URL"), match["iid"]),
                )
        return None

    # -- the log ---------------------------------------------------------------------------
    # GitLab has no runtime masking (only project/group CI/CD variables are masked): the
    # generic no-op `register_secret` stays, and ci_shark never writes a secret to the log.

    def announce(self, request: ApprovalRequest) -> None:
        super().announce(request)  # the link and the code stay outside the collapsed section
        if "comment" in self.channels:
            self._write_note(request.context, approval_markdown(request))
        self._start_section("ci_shark: waiting for approval")

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        self._end_section()
        try:
            super().finish(outcome, request)
            if request is not None and self._note is not None and self._note.note_id:
                self._write_note(request.context, outcome_markdown(outcome, request))
        finally:
            if self._api is not None:
                self._api.close()
                self._api = None

    def _start_section(self, header: str) -> None:
        # \e[0K clears what the runner may have drawn; the header follows the \r.
        self.writer.command(
            f"\x1b[0Ksection_start:{int(time.time())}:{WAIT_SECTION}[collapsed=true]"
            f"\r\x1b[0K{header}",
            among_lines=True,
        )
        self._section_open = True

    def _end_section(self) -> None:
        if self._section_open:
            self._section_open = False
            self.writer.command(
                f"\x1b[0Ksection_end:{int(time.time())}:{WAIT_SECTION}\r\x1b[0K", among_lines=True
            )

    # -- outputs ---------------------------------------------------------------------------

    def export(self, credentials: Credentials) -> Credentials:
        exported = super().export(credentials)
        if self.output_format() == "dotenv":
            self.log(
                "ci_shark: the dotenv file holds the tokens: as an `artifacts:reports:dotenv` "
                "it is readable by anyone who can read this job's artifacts (see docs/gitlab.md)"
            )
        return exported

    # -- the MR note -----------------------------------------------------------------------

    def _write_note(self, context: RunContext, markdown: str) -> None:
        if self._note is None:
            notes = self._notes_api()
            if notes is None:
                return
            self._note = MarkedNote(
                notes, marker(context), warn=lambda failure: self.warn(f"no MR note: {failure}")
            )
        self._note.write(markdown)

    def _notes_api(self) -> MergeRequestNotes | None:
        if self._notes_off:
            return None
        self._notes_off = True  # set up once: every reason not to is said once
        merge_request = self._merge_request
        if merge_request is None:
            self.log("ci_shark: no merge request for this pipeline: no MR note")
            return None
        token = self.settings.gitlab_token
        if token is None:
            self.warn(f"no MR note: no GitLab token. To get one, {SCOPE_HELP}")
            return None
        api = (env_value(self.env, "CI_API_V4_URL") or "").rstrip("/")
        problem = url_problem(api) if api else "is not set"
        if problem:
            self.warn(f"no MR note: CI_API_V4_URL {problem}")
            return None
        notes_path = (
            f"/projects/{quote(merge_request.project, safe='')}"
            f"/merge_requests/{merge_request.iid}/notes"
        )
        self._notes_off = False
        return MergeRequestNotes(self._client(api, token), notes_path)

    def _client(self, api_url: str, token: Secret) -> RestApi:
        if self._api is None:
            self._api = RestApi(
                api_url,
                name="the GitLab API",
                token=token,
                token_header=("PRIVATE-TOKEN", ""),
                headers={"Accept": "application/json"},
                transport=self.transport,
                budget_s=API_BUDGET_S,
                trust=self._trust,
                mask=self.mask,
                refused=_refused,
            )
        return self._api

    def _trust(self) -> ssl.SSLContext:
        """The run's trust (the system's, see oauth/tls.py), plus the GitLab server's CA
        when the runner hands one over: CI_SERVER_TLS_CA_FILE, from its `tls-ca-file`,
        which the runner itself adds to the system's (it may hold only part of a chain)."""
        ca_file = env_value(self.env, "CI_SERVER_TLS_CA_FILE")
        if ca_file is None:
            return context_for(None)
        context = create_context()
        try:
            context.load_verify_locations(cafile=ca_file)
        except OSError:  # ssl.SSLError included: not a PEM file
            self.warn(
                "CI_SERVER_TLS_CA_FILE could not be read as a CA bundle: the MR note "
                "trusts the system's CAs only"
            )
        return context


def _mr_url(project_url: str | None, iid: str) -> str | None:
    if not project_url or url_problem(project_url):
        return None
    return f"{project_url.rstrip('/')}/-/merge_requests/{iid}"


def _object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise NoteApiError("the GitLab API answered with an unexpected JSON value")
    return value


def _refused(status: int, doing: str) -> str:
    """An error status in the words that say what to fix."""
    if status == 401:
        return (
            f"{doing}: the GitLab API rejected the token (HTTP 401: expired, revoked or not "
            f"a token). {SCOPE_HELP}"
        )
    if status == 403:
        return (
            f"{doing}: the GitLab API refused (HTTP 403): the token lacks the `api` scope or "
            f"a role that may comment. {SCOPE_HELP}"
        )
    if status == 404:
        return (
            f"{doing}: the GitLab API does not show this merge request to the token (HTTP "
            f"404): it needs the `api` scope and access to the project. {SCOPE_HELP}"
        )
    return f"{doing}: the GitLab API answered HTTP {status}"
