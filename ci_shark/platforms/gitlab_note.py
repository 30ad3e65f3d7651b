"""`notify: comment` on GitLab: the MR note, with the same content and lifecycle as
GitHub's PR comment.

Posted on ``announce`` with a hidden marker, found again on a re-run by that marker and by
its author (only a note the token's own user wrote is ever edited), and edited by
``finish`` with the outcome. Posting needs ``CI_SHARK_GITLAB_TOKEN`` (a project, group or
personal access token with the ``api`` scope): ``CI_JOB_TOKEN`` cannot write notes. Every
reason not to post (no MR, no token, no usable API URL) is said once; every API failure is
one warning; the approval itself never depends on the note.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ci_shark.oauth.tls import context_for, create_context
from ci_shark.platforms.channels import Channel
from ci_shark.platforms.common import MarkedNote, Note, NoteApiError, env_value
from ci_shark.platforms.gitlab import MergeRequest, find_merge_request
from ci_shark.platforms.rest import RestApi
from ci_shark.render import ApprovalRequest, Outcome, approval_markdown, marker, outcome_markdown
from ci_shark.urls import url_problem

if TYPE_CHECKING:
    from ci_shark.platforms.base import Platform

API_BUDGET_S = 10.0
NOTES_PAGES = 5  # 100 notes a page; a marker further back than 500 notes gets a new note
SCOPE_HELP = (
    "set CI_SHARK_GITLAB_TOKEN to a project or group access token with the `api` scope "
    "(role Reporter or higher); CI_JOB_TOKEN cannot post MR notes"
)


def merge_request_note(platform: Platform) -> Channel:
    return MergeRequestNote(platform)


class MergeRequestNote(Channel):
    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._merge_request: MergeRequest | None = find_merge_request(platform.env)
        self._notes: MergeRequestNotes | None = None
        self._api: RestApi | None = None  # one connection for every note write
        self._set_up = False
        self._note: MarkedNote | None = None

    def announce(self, request: ApprovalRequest) -> None:
        notes = self._notes_api()
        if notes is None:
            return
        if self._note is None:
            self._note = MarkedNote(marker(request.context), warn=self._failed)
        self._note.write(notes, approval_markdown(request))

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        if request is None or self._notes is None or self._note is None:
            return
        if self._note.exists:
            self._note.write(self._notes, outcome_markdown(outcome, request))

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    def _failed(self, failure: NoteApiError) -> None:
        self._platform.warn(f"no MR note: {failure}")

    def _notes_api(self) -> MergeRequestNotes | None:
        """The MR's notes, set up once: every reason not to is said once."""
        if self._set_up:
            return self._notes
        self._set_up = True
        platform, merge_request = self._platform, self._merge_request
        if merge_request is None:
            platform.log("ci_shark: no merge request for this pipeline: no MR note")
            return None
        token = platform.settings.gitlab_token
        if token is None:
            platform.warn(f"no MR note: no GitLab token. To get one, {SCOPE_HELP}")
            return None
        api_url = (env_value(platform.env, "CI_API_V4_URL") or "").rstrip("/")
        problem = url_problem(api_url) if api_url else "is not set"
        if problem:
            platform.warn(f"no MR note: CI_API_V4_URL {problem}")
            return None
        self._api = RestApi(
            api_url,
            name="the GitLab API",
            token=token,
            token_header=("PRIVATE-TOKEN", ""),
            headers={"Accept": "application/json"},
            transport=platform.transport,
            budget_s=API_BUDGET_S,
            trust=self._trust,
            mask=platform.mask,
            refused=_refused,
        )
        notes_path = (
            f"/projects/{quote(merge_request.project, safe='')}"
            f"/merge_requests/{merge_request.iid}/notes"
        )
        self._notes = MergeRequestNotes(self._api, notes_path)
        return self._notes

    def _trust(self) -> ssl.SSLContext:
        """The run's trust (the system's, see oauth/tls.py), plus the GitLab server's CA
        when the runner hands one over: CI_SERVER_TLS_CA_FILE, from its `tls-ca-file`,
        which the runner itself adds to the system's (it may hold only part of a chain)."""
        ca_file = env_value(self._platform.env, "CI_SERVER_TLS_CA_FILE")
        if ca_file is None:
            return context_for(None)
        context = create_context()
        try:
            context.load_verify_locations(cafile=ca_file)
        except OSError:  # ssl.SSLError included: not a PEM file
            self._platform.warn(
                "CI_SERVER_TLS_CA_FILE could not be read as a CA bundle: the MR note "
                "trusts the system's CAs only"
            )
        return context


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
