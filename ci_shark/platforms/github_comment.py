"""`notify: comment` on GitHub: the request as a comment on the run's pull request, edited
with the outcome.

- Which PR: the event's (:func:`ci_shark.platforms.github_run.pull_request_of`); for an
  event that carries none (a push), the open PR whose head is this commit, looked up once,
  after the link is in the log. That PR is a value handed to what renders
  (:meth:`GitHubRun.shown`), not a change to the run's facts.
- The comment is a marked note (:class:`ci_shark.platforms.common.MarkedNote`): ours only
  with our marker and our token's author, so a re-run of the job (the same repository,
  workflow, job and matrix leg) edits its own comment, never one someone pasted a marker in.
- Posting needs `github-token` with `permissions: pull-requests: write`; a fork's PR only
  ever gets a read-only token. Each failure is one warning, and so is a PR run whose
  `github-token` is empty (an unset secret): the approval never depends on the comment.
- The outcome's edit has a short budget: on a cancellation the runner kills the step a
  few seconds after its signal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ci_shark.platforms.channels import Channel
from ci_shark.platforms.common import MarkedNote, Note, NoteApiError
from ci_shark.platforms.github_api import FINISH_BUDGET_S, GitHubApi, note_of, refused
from ci_shark.platforms.github_run import GitHubRun
from ci_shark.render import ApprovalRequest, Outcome, approval_markdown, marker, outcome_markdown

if TYPE_CHECKING:
    from ci_shark.platforms.github import GitHubPlatform

MAX_COMMENT_PAGES = 10
COMMENT_PERMISSION = (
    "`permissions: pull-requests: write`; pull requests from forks only ever get a read-only token"
)


def pull_request_comment(platform: GitHubPlatform) -> Channel:
    return PullRequestComment(platform.run, log=platform.log, warn=platform.warn)


class PullRequestComment(Channel):
    def __init__(
        self, run: GitHubRun, *, log: Callable[[str], None], warn: Callable[[str], None]
    ) -> None:
        self._run = run
        self._log = log
        self._warn = warn
        self._note: MarkedNote | None = None
        self._number = 0
        self._no_token_said = False

    def announce(self, request: ApprovalRequest) -> None:
        target = self._target()
        if target is None:
            return
        api, number = target
        shown = self._run.shown(request)
        first = self._note is None
        if self._note is None:
            self._number = number
            self._note = MarkedNote(marker(shown.context), warn=self._failed)
        comments = PullRequestComments(api, self._run.repository, number)
        if self._note.write(comments, approval_markdown(shown)) and first:
            self._log(f"ci_shark: asked for approval in a comment on PR #{number}")

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        api = self._run.api()
        if request is None or api is None or self._note is None or not self._note.exists:
            return
        comments = PullRequestComments(
            api.within(FINISH_BUDGET_S), self._run.repository, self._number
        )
        self._note.write(comments, outcome_markdown(outcome, self._run.shown(request)))

    def _target(self) -> tuple[GitHubApi, int] | None:
        """The API and the PR to comment on; None when there is none (said once when a PR
        run cannot comment for want of a token)."""
        pr = self._run.pull_request()
        if pr is None or pr.number <= 0:
            return None
        api = self._run.api()
        if api is None and not self._no_token_said:
            self._no_token_said = True
            self._warn(f"no comment on PR #{pr.number}: {self._why_no_api()}")
        return (api, pr.number) if api is not None else None

    def _why_no_api(self) -> str:
        problem = self._run.api_problem()
        if problem == "`github-token` is empty":
            return (
                "`github-token` is empty (a secret this run cannot read, or set to ''?). "
                "Leave it out to use the job's own token, and give the job "
                "`permissions: pull-requests: write`; approve from the link in this log"
            )
        return f"{problem}; approve from the link in this log"

    def _failed(self, failure: NoteApiError) -> None:
        self._warn(refused(f"comment on PR #{self._number}", COMMENT_PERMISSION, failure))


class PullRequestComments:
    """The comments of one PR (an issue thread), as :class:`MarkedNote` needs them."""

    def __init__(self, api: GitHubApi, repository: str, number: int) -> None:
        self._api = api
        self._repository = repository
        self._number = number

    def own_author(self) -> str | None:
        return self._api.own_login()

    def notes(self) -> Iterator[Note]:
        path = f"/repos/{self._repository}/issues/{self._number}/comments"
        for item in self._api.pages(path, {}, MAX_COMMENT_PAGES):
            if (note := note_of(item, "id")) is not None:
                yield note

    def create(self, body: str) -> int:
        created = self._api.call(
            "POST", f"/repos/{self._repository}/issues/{self._number}/comments", {"body": body}
        )
        note = note_of(created, "id")
        if note is None:
            raise NoteApiError("the GitHub API answered the new comment without an id")
        return note.id

    def edit(self, note_id: int, body: str) -> None:
        self._api.call(
            "PATCH", f"/repos/{self._repository}/issues/comments/{note_id}", {"body": body}
        )
