"""`notify: issue` on GitHub: for a run that belongs to no pull request (push, tag,
schedule, workflow_dispatch), an issue asks for the approval, so that GitHub's own
notifications reach the people listed in `notify-users`; the outcome edits and closes it.

The issue is a marked note (:class:`ci_shark.platforms.common.MarkedNote`): ours when its
body starts with our marker AND our token's account opened it. The marker names the run
(repository, workflow, job, matrix leg and the run's id): a re-run of the same run (a new
attempt keeps the id) finds its still-open issue and edits it, while another run of the
job, even one still waiting, keeps its own. An issue someone else opened with our marker is
never adopted. An edit notifies nobody, so when an issue is adopted, one comment mentions
the people again. Assignees are the users of `notify-users` (teams can only be mentioned);
when GitHub refuses them (not collaborators), the issue is opened without assignees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ci_shark.platforms.channels import Channel
from ci_shark.platforms.common import MarkedNote, Note, NoteApiError
from ci_shark.platforms.github_api import FINISH_BUDGET_S, GitHubApi, note_of, refused
from ci_shark.platforms.github_run import GitHubRun
from ci_shark.render import (
    ApprovalRequest,
    Outcome,
    approval_markdown,
    issue_title,
    marker,
    mentions,
    outcome_markdown,
)

if TYPE_CHECKING:
    from ci_shark.platforms.github import GitHubPlatform

MAX_ISSUE_PAGES = 5


def run_issue(platform: GitHubPlatform) -> Channel:
    return RunIssue(
        platform.run, platform.settings.notify_users, log=platform.log, warn=platform.warn
    )


class RunIssue(Channel):
    def __init__(
        self,
        run: GitHubRun,
        users: tuple[str, ...],
        *,
        log: Callable[[str], None],
        warn: Callable[[str], None],
    ) -> None:
        self._run = run
        self._users = users
        self._assignees = tuple(user.lstrip("@") for user in users if "/" not in user)
        self._log = log
        self._warn = warn
        self._note: MarkedNote | None = None
        self._off = False  # a PR run, or no API: said once

    def announce(self, request: ApprovalRequest) -> None:
        """Open (or, on a re-run, find and edit) the issue asking for this approval."""
        api = self._api()
        if api is None:
            return
        run_id = self._run.run_id()
        first = self._note is None
        if self._note is None:
            self._note = MarkedNote(marker(request.context, run_id), warn=self._failed)
        issues = self._issues(api, issue_title(request.context, run_id))
        body = approval_markdown(request) + mentions(self._users)
        if self._note.write(issues, body) and first and self._note.note_id:
            self._opened(issues, self._note.note_id)

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        api = self._run.api()
        if request is None or api is None or self._note is None or not self._note.exists:
            return
        issues = self._issues(
            api.within(FINISH_BUDGET_S),
            issue_title(request.context, self._run.run_id(), outcome.status),
            closing="completed" if outcome.status == "approved" else "not_planned",
        )
        self._note.write(issues, outcome_markdown(outcome, request) + mentions(self._users))

    def _api(self) -> GitHubApi | None:
        """The API, when this run should have an issue at all (said once when not)."""
        if self._off:
            return None
        pr, api = self._run.pull_request(), self._run.api()
        if (pr is not None and pr.number > 0) or api is None:
            self._off = True
            if pr is not None and pr.number > 0:
                self._log(f"ci_shark: this run belongs to PR #{pr.number}: no issue")
            else:
                self._warn(
                    "`notify: issue` needs `github-token` (the action's default) and an https "
                    "GITHUB_API_URL: no issue"
                )
        return None if self._off else api

    def _issues(self, api: GitHubApi, title: str, closing: str | None = None) -> RunIssues:
        return RunIssues(
            api,
            self._run.repository,
            title=title,
            assignees=self._assignees,
            log=self._log,
            closing=closing,
        )

    def _opened(self, issues: RunIssues, number: int) -> None:
        assert self._note is not None
        url = f"{self._run.server_url}/{self._run.repository}/issues/{number}"
        if self._note.adopted and mentions(self._users):
            # Adopted from an earlier attempt: editing it notified nobody.
            try:
                issues.comment(number, f"A new approval request is above.{mentions(self._users)}")
            except NoteApiError as failure:
                self._warn(f"could not comment on issue #{number} to notify again ({failure})")
        self._log(f"ci_shark: asked for approval in issue #{number}: {url}")

    def _failed(self, failure: NoteApiError) -> None:
        self._warn(
            refused("open or update the approval issue", "`permissions: issues: write`", failure)
        )


class RunIssues:
    """One repository's open issues, as :class:`MarkedNote` needs them (ids are issue
    numbers): each write sets ``title``; ``closing`` (a ``state_reason``) makes the edit
    close the issue."""

    def __init__(
        self,
        api: GitHubApi,
        repository: str,
        *,
        title: str,
        assignees: tuple[str, ...],
        log: Callable[[str], None],
        closing: str | None = None,
    ) -> None:
        self._api = api
        self._path = f"/repos/{repository}/issues"
        self._title = title
        self._assignees = assignees
        self._log = log
        self._closing = closing

    def own_author(self) -> str | None:
        return self._api.own_login()

    def notes(self) -> Iterator[Note]:
        newest_first = {"state": "open", "sort": "created", "direction": "desc"}
        for item in self._api.pages(self._path, newest_first, MAX_ISSUE_PAGES):
            if (note := _issue(item)) is not None:
                yield note

    def create(self, body: str) -> int:
        if self._closing is not None:
            # Only the outcome is left to tell, and the issue is gone: no new open issue.
            raise NoteApiError("the issue was deleted or became unreadable")
        payload: dict[str, Any] = {"title": self._title, "body": body}
        if self._assignees:
            payload["assignees"] = list(self._assignees)
        try:
            created = self._api.call("POST", self._path, payload)
        except NoteApiError as refusal:
            if refusal.status != 422 or not self._assignees:
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
        return note.id

    def edit(self, note_id: int, body: str) -> None:
        payload: dict[str, Any] = {"title": self._title, "body": body}
        if self._closing is not None:
            payload |= {"state": "closed", "state_reason": self._closing}
        self._api.call("PATCH", f"{self._path}/{note_id}", payload)

    def comment(self, note_id: int, body: str) -> None:
        self._api.call("POST", f"{self._path}/{note_id}/comments", {"body": body})


def _issue(item: object) -> Note | None:
    """An issue as a note; None for a pull request (the issues list has those too)."""
    if isinstance(item, dict) and "pull_request" in item:
        return None
    return note_of(item, "number")
