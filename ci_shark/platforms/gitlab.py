"""GitLab CI: the MR note, collapsible log sections, and exports that never touch the log.

GitLab cannot mask a value at runtime (only variables defined in the project settings are
masked), so ``mask`` is a no-op here and the rule is stronger than elsewhere: no secret is
ever written to the job log. Secrets leave the process only through the 0600 dotenv/json
file or, with ``--output-format shell``, through stdout into ``eval "$(...)"``.

The MR note has the same content and lifecycle as the GitHub PR comment: posted on
``announce`` with a hidden marker, found again by that marker on a re-run, and edited by
``finish`` with the outcome. Posting needs ``CI_SHARK_GITLAB_TOKEN`` (a project, group or
personal access token with the ``api`` scope): ``CI_JOB_TOKEN`` cannot write notes. Every
API failure is a warning; the approval itself never depends on the note.
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from ci_shark.oauth.tls import context_for, create_context
from ci_shark.outputs import Credentials
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

from .base import Platform

API_TIMEOUT_S = 10.0
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


class GitLabApiError(Exception):
    """An answer from the notes API that is not what we asked for; the message is ours."""


class GitLabPlatform(Platform):
    name: ClassVar[str] = "gitlab"
    auto_channels: ClassVar[tuple[str, ...]] = ("log", "comment")

    def init_state(self) -> None:
        self._merge_request: MergeRequest | None = None
        self._note_id: int | None = None
        self._notes_off = False  # after one API failure: one warning, not one per event
        self._section_open = False
        self._api_client: httpx.Client | None = None  # one connection for every note write

    # -- what the run is -------------------------------------------------------------------

    def context(self) -> RunContext:
        env = self.env
        project_path = _value(env, "CI_PROJECT_PATH")
        self._merge_request = self._find_merge_request()
        source = _value(env, "CI_MERGE_REQUEST_SOURCE_PROJECT_ID")
        target = _value(env, "CI_MERGE_REQUEST_PROJECT_ID")
        # An MR whose source project is unknown counts as a fork: refusing is the safe side.
        is_fork = bool(_value(env, "CI_MERGE_REQUEST_IID") and (not source or target != source))
        return RunContext(
            platform=self.name,
            repository=project_path,
            workflow=_value(env, "CI_PIPELINE_NAME"),
            job=_value(env, "CI_JOB_NAME"),
            job_url=_value(env, "CI_JOB_URL"),
            run_url=_value(env, "CI_PIPELINE_URL"),
            public=_value(env, "CI_PROJECT_VISIBILITY") == "public",
            commit=_value(env, "CI_COMMIT_SHA"),
            actor=_value(env, "GITLAB_USER_LOGIN"),
            event=_value(env, "CI_PIPELINE_SOURCE"),
            change_request=f"MR !{self._merge_request.iid}" if self._merge_request else None,
            change_request_url=self._merge_request.url if self._merge_request else None,
            is_fork=is_fork,
            fork_source=_value(env, "CI_MERGE_REQUEST_SOURCE_PROJECT_PATH") if is_fork else None,
        )

    def _find_merge_request(self) -> MergeRequest | None:
        """The MR of an MR pipeline, else the first open MR of this branch in this project."""
        env = self.env
        iid = _value(env, "CI_MERGE_REQUEST_IID")
        if iid and _IID.match(iid):
            project = _value(env, "CI_MERGE_REQUEST_PROJECT_ID") or _value(
                env, "CI_MERGE_REQUEST_PROJECT_PATH"
            )
            project_url = _value(env, "CI_MERGE_REQUEST_PROJECT_URL") or _value(
                env, "CI_PROJECT_URL"
            )
            if project:
                return MergeRequest(project, iid, _mr_url(project_url, iid))
        # Branch pipelines: "group/project!12,other/project!3" (up to four). Only an MR in
        # this very project is used: another project's MR is another project's business.
        project_path = _value(env, "CI_PROJECT_PATH")
        for item in (_value(env, "CI_OPEN_MERGE_REQUESTS") or "").split(","):
            match = _OPEN_MR.match(item.strip())
            if match and project_path and match["path"] == project_path:
                project_id = _value(env, "CI_PROJECT_ID") or project_path
                return MergeRequest(
                    project_id, match["iid"], _mr_url(_value(env, "CI_PROJECT_URL"), match["iid"])
                )
        return None

    # -- the log ---------------------------------------------------------------------------

    def mask(self, secrets: Sequence[Secret]) -> None:
        """GitLab has no runtime masking (only project/group CI/CD variables are masked).

        Nothing to register: ci_shark never writes a secret to the job log on GitLab, and
        the docs tell users not to print the exported values either.
        """

    def announce(self, request: ApprovalRequest) -> None:
        super().announce(request)  # the link and the code stay outside the collapsed section
        if "comment" in self.channels:
            self._write_note(marker(request.context) + "\n" + approval_markdown(request))
        self._start_section("ci_shark: waiting for approval")

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        self._end_section()
        try:
            super().finish(outcome, request)
            if request is not None and "comment" in self.channels and self._note_id is not None:
                self._write_note(
                    marker(request.context) + "\n" + outcome_markdown(outcome, request)
                )
        finally:
            if self._api_client is not None:
                self._api_client.close()
                self._api_client = None

    def _start_section(self, header: str) -> None:
        # \e[0K clears what the runner may have drawn; the header follows the \r.
        self.log(
            f"\x1b[0Ksection_start:{int(time.time())}:{WAIT_SECTION}[collapsed=true]"
            f"\r\x1b[0K{header}"
        )
        self._section_open = True

    def _end_section(self) -> None:
        if self._section_open:
            self._section_open = False
            self.log(f"\x1b[0Ksection_end:{int(time.time())}:{WAIT_SECTION}\r\x1b[0K")

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

    def _write_note(self, body: str) -> None:
        if self._notes_off:
            return
        merge_request = self._merge_request
        if merge_request is None:
            self._notes_off = True
            self.log("ci_shark: no merge request for this pipeline: no MR note")
            return
        token = self.settings.gitlab_token
        if token is None:
            self._notes_off = True
            self.warn(f"no MR note: no GitLab token. To get one, {SCOPE_HELP}")
            return
        api = (_value(self.env, "CI_API_V4_URL") or "").rstrip("/")
        problem = url_problem(api) if api else "is not set"
        if problem:
            self._notes_off = True
            self.warn(f"no MR note: CI_API_V4_URL {problem}")
            return
        notes_url = (
            f"{api}/projects/{quote(merge_request.project, safe='')}"
            f"/merge_requests/{merge_request.iid}/notes"
        )
        try:
            self._upsert(self._client(token), notes_url, body)
        except GitLabApiError as failure:
            self._notes_off = True
            self.warn(f"no MR note: {failure}")
        except httpx.HTTPError as failure:
            self._notes_off = True
            self.warn(f"no MR note: the GitLab API could not be reached ({type(failure).__name__})")

    def _client(self, token: Secret) -> httpx.Client:
        if self._api_client is not None:
            return self._api_client
        self._api_client = httpx.Client(
            transport=self.transport,
            verify=self._trust() if self.transport is None else True,
            timeout=API_TIMEOUT_S,
            follow_redirects=False,  # a redirect must not carry the token elsewhere
            headers={
                "PRIVATE-TOKEN": token.reveal(),
                "Accept": "application/json",
                "User-Agent": "ci_shark",
            },
        )
        return self._api_client

    def _trust(self) -> ssl.SSLContext:
        """The run's trust (the system's, see oauth/tls.py), plus the GitLab server's CA
        when the runner hands one over: CI_SERVER_TLS_CA_FILE, from its `tls-ca-file`,
        which the runner itself adds to the system's (it may hold only part of a chain)."""
        ca_file = _value(self.env, "CI_SERVER_TLS_CA_FILE")
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

    def _upsert(self, client: httpx.Client, notes_url: str, body: str) -> None:
        if self._note_id is None:
            self._note_id = self._find_note(client, notes_url, body.split("\n", 1)[0])
        if self._note_id is not None:
            reply = client.put(f"{notes_url}/{self._note_id}", json={"body": body})
            if reply.status_code in (403, 404):
                self._note_id = None  # not ours to edit, or deleted meanwhile: add a new one
            else:
                _check(reply, "editing the MR note")
                return
        reply = client.post(notes_url, json={"body": body})
        _check(reply, "posting the MR note")
        note_id = _json(reply).get("id")
        if not isinstance(note_id, int):
            raise GitLabApiError("the GitLab API answered the new note without an id")
        self._note_id = note_id

    def _find_note(self, client: httpx.Client, notes_url: str, marker_line: str) -> int | None:
        """The newest note that carries the marker, so a re-run edits it. (The author is
        not checked: an edit GitLab refuses with 403 falls back to a new note.)"""
        for page in range(1, NOTES_PAGES + 1):
            reply = client.get(
                notes_url,
                params={"per_page": 100, "page": page, "sort": "desc", "order_by": "created_at"},
            )
            _check(reply, "listing the MR notes")
            try:
                notes = reply.json() if reply.content else []
            except ValueError:
                notes = None
            if not isinstance(notes, list):
                raise GitLabApiError("the GitLab API answered the notes list with something else")
            for note in notes:
                if (
                    isinstance(note, dict)
                    and not note.get("system")
                    and isinstance(note.get("id"), int)
                    and isinstance(note.get("body"), str)
                    and note["body"].startswith(marker_line)
                ):
                    note_id: int = note["id"]
                    return note_id
            if len(notes) < 100:
                break
        return None


def _value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _mr_url(project_url: str | None, iid: str) -> str | None:
    if not project_url or url_problem(project_url):
        return None
    return f"{project_url.rstrip('/')}/-/merge_requests/{iid}"


def _json(reply: httpx.Response) -> dict[str, Any]:
    try:
        body = reply.json()
    except ValueError:
        raise GitLabApiError("the GitLab API answered with something other than JSON") from None
    if not isinstance(body, dict):
        raise GitLabApiError("the GitLab API answered with an unexpected JSON value")
    return body


def _check(reply: httpx.Response, doing: str) -> None:
    status = reply.status_code
    if status < 300:
        return
    if status == 401:
        raise GitLabApiError(
            f"{doing}: the GitLab API rejected the token (HTTP 401: expired, revoked or not "
            f"a token). {SCOPE_HELP}"
        )
    if status == 403:
        raise GitLabApiError(
            f"{doing}: the GitLab API refused (HTTP 403): the token lacks the `api` scope or "
            f"a role that may comment. {SCOPE_HELP}"
        )
    if status == 404:
        raise GitLabApiError(
            f"{doing}: the GitLab API does not show this merge request to the token (HTTP "
            f"404): it needs the `api` scope and access to the project. {SCOPE_HELP}"
        )
    raise GitLabApiError(f"{doing}: the GitLab API answered HTTP {status}")
