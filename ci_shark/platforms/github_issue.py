"""`notify: issue` on GitHub: for a run that belongs to no pull request (push, tag,
schedule, workflow_dispatch), an issue asks for the approval, so that GitHub's own
notifications reach the people listed in `notify-users`; the outcome edits and closes it.

The issue is a marked note (:class:`ci_shark.platforms.common.MarkedNote`): ours when its
body starts with our marker AND our token's account opened it. A re-run of the same job
finds its still-open issue and edits it; an issue someone else opened with our marker is
never adopted. An edit notifies nobody, so when an issue is adopted, one comment mentions
the people again. Assignees are the users of `notify-users` (teams can only be mentioned);
when GitHub refuses them (not collaborators), the issue is opened without assignees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ci_shark.platforms.common import Note, NoteApiError

if TYPE_CHECKING:
    from ci_shark.platforms.github import GitHubApi

MAX_ISSUE_PAGES = 5


class RunIssues:
    """One repository's open issues, as :class:`MarkedNote` needs them (ids are issue
    numbers). ``title`` is what the next write sets; ``closing`` (a ``state_reason``)
    makes the next edit close the issue."""

    def __init__(
        self,
        api: GitHubApi,
        repository: str,
        *,
        title: str,
        assignees: tuple[str, ...],
        log: Callable[[str], None],
    ) -> None:
        self._api = api
        self._path = f"/repos/{repository}/issues"
        self.title = title
        self._assignees = assignees
        self._log = log
        self.closing: str | None = None
        self.created: int | None = None  # the number of the issue this run opened

    def own_author(self) -> str | None:
        return self._api.own_login()

    def notes(self) -> Iterator[Note]:
        newest_first = {"state": "open", "sort": "created", "direction": "desc"}
        for item in self._api.pages(self._path, newest_first, MAX_ISSUE_PAGES):
            if (note := _issue(item)) is not None:
                yield note

    def create(self, body: str) -> int:
        if self.closing is not None:
            # Only the outcome is left to tell, and the issue is gone: no new open issue.
            raise NoteApiError("the issue was deleted or became unreadable")
        payload: dict[str, Any] = {"title": self.title, "body": body}
        if self._assignees:
            payload["assignees"] = list(self._assignees)
        try:
            created = self._api.call("POST", self._path, payload)
        except NoteApiError as refused:
            if refused.status != 422 or not self._assignees:
                raise
            self._log(
                "ci_shark: GitHub refused the assignees (each must be able to access the "
                "repository); the issue mentions them instead"
            )
            del payload["assignees"]
            created = self._api.call("POST", self._path, payload)
        note = _issue(created)
        if note is None:
            raise NoteApiError("the GitHub API answered the new issue without a number")
        self.created = note.id
        return note.id

    def edit(self, note_id: int, body: str) -> None:
        payload: dict[str, Any] = {"title": self.title, "body": body}
        if self.closing is not None:
            payload |= {"state": "closed", "state_reason": self.closing}
        self._api.call("PATCH", f"{self._path}/{note_id}", payload)

    def comment(self, note_id: int, body: str) -> None:
        self._api.call("POST", f"{self._path}/{note_id}/comments", {"body": body})


def _issue(item: object) -> Note | None:
    """An issue as a note; None for a pull request (the issues list has those too)."""
    if not isinstance(item, dict) or "pull_request" in item:
        return None
    number, user, body = item.get("number"), item.get("user"), item.get("body")
    if not isinstance(number, int):
        return None
    login = user.get("login") if isinstance(user, dict) else None
    return Note(number, login if isinstance(login, str) else None, str(body or ""))
