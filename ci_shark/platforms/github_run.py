"""What a GitHub Actions run is: its repository, its event, the pull request whose code it
may carry, and the REST API with the job's token. Each is found once, when first needed.

The one rule for pull-request code (:func:`pull_request_of`): the events that may run a
pull request's code, where the PR's number is, and what says where its code comes from.

- ``pull_request``, ``pull_request_target``, ``pull_request_review``,
  ``pull_request_review_comment``, and any payload with a ``pull_request``: its
  ``number``, and its ``head.repo``.
- ``issue_comment`` on a PR (``issue.pull_request`` set): ``issue.number``, and the PR
  read through the API.
- ``merge_group``: the number in ``merge_group.head_ref``, and the PR read through the API
  (the entries ahead of it in the queue are in its commit too, and are not judged: what
  docs/github.md tells a repository whose queue takes forks' PRs).
- ``workflow_run``: ``workflow_run.pull_requests[0]`` (GitHub leaves it empty for a fork's
  run), and ``workflow_run.head_repository``.
- ``check_suite``, ``check_run``: no PR; a null ``head_branch`` is a fork's commit.
- ``deployment``, ``deployment_status``, ``status``: a commit (``deployment.sha``, or the
  status's ``sha``) that a bot may have deployed for a PR (a preview): the open PR whose
  head IS that commit, read through the API; none means no PR code.

It fails closed: a PR that cannot be judged (a number missing or not a positive integer,
a PR or commit the API does not show, no token to ask with, a head repository nobody
names) is a fork
whose repository is unknown, and ``doubt`` says why, naming the event. The flow refuses it
(exit 6) before any device code. Every other event (push, workflow_dispatch, schedule...)
carries no PR code: the PR comment may then find the open PR whose head is this commit,
after the link is in the log (:meth:`GitHubRun.pull_request`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import httpx

from ci_shark.platforms.common import NoteApiError, env_value
from ci_shark.platforms.github_api import GitHubApi, dig, pull_request_number, repository_name
from ci_shark.render import ApprovalRequest
from ci_shark.secret import Secret
from ci_shark.urls import url_problem

MAX_EVENT_BYTES = 32 * 1024 * 1024
PR_EVENTS = frozenset(
    {"pull_request", "pull_request_target", "pull_request_review", "pull_request_review_comment"}
)
CHECK_EVENTS = frozenset({"check_suite", "check_run"})
COMMIT_EVENTS = frozenset({"deployment", "deployment_status", "status"})
# refs/heads/gh-readonly-queue/<base branch>/pr-<number>-<sha>
_MERGE_QUEUE_REF = re.compile(r"^refs/heads/gh-readonly-queue/.+/pr-(\d+)-[0-9a-f]+$")


@dataclass(frozen=True)
class PullRequest:
    number: int  # 0 when the event does not say which PR
    head_repo: str | None  # None when nobody could tell (deleted fork, unreadable PR)
    base_repo: str  # always this run's repository (GITHUB_REPOSITORY), never the payload's
    from_payload: bool = True  # the run was triggered by this PR (not found by its commit)
    doubt: str | None = None  # why it could not be judged, naming the event

    @property
    def is_fork(self) -> bool:
        return self.head_repo is None or self.head_repo.lower() != self.base_repo.lower()


def pull_request_of(
    event: str,
    payload: Mapping[str, Any],
    repository: str,
    read_head: Callable[[int], PullRequest],
    read_commit: Callable[[str], PullRequest | None],
) -> PullRequest | None:
    """The PR whose code this run may carry (the list above); None when the event carries
    none. ``read_head(number)`` asks the API where a PR comes from; ``read_commit(sha)``
    which open PR has this commit as its head."""

    def unjudged(why: str, number: int = 0) -> PullRequest:
        return PullRequest(number, None, repository, doubt=f"the {event} event {why}")

    if event in PR_EVENTS or payload.get("pull_request") is not None:
        number = pull_request_number(dig(payload, "pull_request", "number"))
        if number is None:
            return unjudged("carries no readable pull request number")
        head = repository_name(dig(payload, "pull_request", "head", "repo"))
        return PullRequest(number, head, repository)
    if event == "issue_comment" and dig(payload, "issue", "pull_request") is not None:
        number = pull_request_number(dig(payload, "issue", "number"))
        if number is None:
            return unjudged("is on a pull request but its `issue.number` is not a PR number")
        return read_head(number)
    if event == "merge_group":
        ref = dig(payload, "merge_group", "head_ref")
        match = _MERGE_QUEUE_REF.match(ref) if isinstance(ref, str) else None
        if match is None:
            return unjudged("has a `head_ref` that names no pull request")
        return read_head(int(match[1]))
    if event == "workflow_run":
        head = repository_name(dig(payload, "workflow_run", "head_repository"))
        pulls = dig(payload, "workflow_run", "pull_requests")
        first = pulls[0] if isinstance(pulls, list) and pulls else None
        number = pull_request_number(dig(first, "number")) or 0
        if head is None:
            return unjudged("names no head repository", number)
        return PullRequest(number, head, repository) if number or head != repository else None
    if event in CHECK_EVENTS:
        suite = payload.get("check_suite") or dig(payload, "check_run", "check_suite")
        # GitHub sets head_branch to null for a commit of a fork's branch.
        if not isinstance(suite, dict) or suite.get("head_branch") is None:
            return unjudged("has no head branch, as for a fork's commit")
    if event in COMMIT_EVENTS:
        sha = dig(payload, "deployment", "sha") if event != "status" else payload.get("sha")
        if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", sha)):
            return unjudged("names no commit")
        return read_commit(sha)
    return None


class GitHubRun:
    """One run's facts, and the API to learn more (one connection for the run)."""

    def __init__(
        self,
        env: Mapping[str, str],
        token: Secret | None,
        transport: httpx.BaseTransport | None,
        *,
        warn: Callable[[str], None],
        log: Callable[[str], None],
        mask: Callable[[Sequence[Secret]], None],
    ) -> None:
        self.env = env
        self.event = env.get("GITHUB_EVENT_NAME", "")
        self.repository = env.get("GITHUB_REPOSITORY", "")
        self.server_url = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        self.api_url = env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
        self._token = token
        self._transport = transport
        self._warn = warn
        self._log = log
        self._mask = mask
        self._api: GitHubApi | None = None

    # -- the API ---------------------------------------------------------------------------

    def api_problem(self) -> str | None:
        """Why the API cannot be used; None when it can."""
        if self._token is None:
            return "`github-token` is empty"
        if not self.repository:
            return "GITHUB_REPOSITORY is not set"
        problem = url_problem(self.api_url)
        return f"GITHUB_API_URL {problem}" if problem else None

    def api(self) -> GitHubApi | None:
        """The API with the job's token (its token masked first); None when unusable."""
        if self._api is None and self._token is not None and self.api_problem() is None:
            self._api = GitHubApi(self.api_url, self._token, self._transport, mask=self._mask)
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    # -- the event -------------------------------------------------------------------------

    @cached_property
    def payload(self) -> dict[str, Any]:
        """The event payload (GITHUB_EVENT_PATH); empty when there is none or it is unreadable."""
        path = self.env.get("GITHUB_EVENT_PATH")
        if not path:
            return {}
        try:
            with open(path, "rb") as file:
                raw = file.read(MAX_EVENT_BYTES + 1)
            if len(raw) > MAX_EVENT_BYTES:
                raise ValueError("too large")
            payload = json.loads(raw)
        except (OSError, ValueError, RecursionError) as exc:
            why = type(exc).__name__
            self._warn(f"could not read the event payload (GITHUB_EVENT_PATH): {why}")
            return {}
        return payload if isinstance(payload, dict) else {}

    @cached_property
    def event_pull_request(self) -> PullRequest | None:
        """The PR whose code the event may carry (the module's rule)."""
        return pull_request_of(
            self.event, self.payload, self.repository, self._read_head, self._read_commit
        )

    def _read_head(self, number: int) -> PullRequest:
        """Where PR ``number`` comes from, asked of the API; unjudged when it cannot tell."""
        api = self.api()
        if api is None:
            why = f"could not be read: {self.api_problem()}"
            return PullRequest(number, None, self.repository, doubt=self._about(number, why))
        try:
            head = api.head_repository(self.repository, number)
        except NoteApiError as exc:
            self._warn(
                f"could not read PR #{number} to check where it comes from ({exc}); it is "
                "treated as a fork. Give the job `permissions: pull-requests: read`"
            )
            why = f"could not be read through the API ({exc})"
            return PullRequest(number, None, self.repository, doubt=self._about(number, why))
        return PullRequest(number, head, self.repository)

    def _read_commit(self, sha: str) -> PullRequest | None:
        """The open PR whose head is ``sha`` (a deployed preview), asked of the API; None
        when there is none; unjudged when the API cannot tell."""
        api = self.api()
        if api is None:
            why = f"could not be read: {self.api_problem()}"
        else:
            try:
                found = api.open_pull_request_of(self.repository, sha)
            except NoteApiError as exc:
                why = f"could not be read through the API ({exc})"
            else:
                return PullRequest(found[0], found[1], self.repository) if found else None
        doubt = f"the {self.event} event is for commit {sha[:12]}, whose pull requests {why}"
        return PullRequest(0, None, self.repository, doubt=doubt)

    def _about(self, number: int, why: str) -> str:
        return f"the {self.event} event is on PR #{number}, which {why}"

    # -- the PR the channels show ----------------------------------------------------------

    def pull_request(self) -> PullRequest | None:
        """The event's PR; else, for an event that carries none, the open PR whose head is
        this commit (looked up once, when a channel first asks: after the link is out)."""
        return self.event_pull_request or self._pull_request_of_commit

    @cached_property
    def _pull_request_of_commit(self) -> PullRequest | None:
        sha, api = self.env.get("GITHUB_SHA"), self.api()
        # A workflow_run's GITHUB_SHA is the default branch's head: its PR is not this run's.
        if not sha or api is None or self.event == "workflow_run":
            return None
        try:
            found = api.open_pull_request_of(self.repository, sha)
        except NoteApiError as exc:
            self._log(f"ci_shark: no PR found for commit {sha[:12]} ({exc}); no PR comment")
            return None
        if found is None:
            return None
        number, head = found
        return PullRequest(number, head, self.repository, from_payload=False)

    def pull_request_url(self, pr: PullRequest | None) -> str | None:
        if pr is None or pr.number <= 0:
            return None
        return f"{self.server_url}/{self.repository}/pull/{pr.number}"

    def shown(self, request: ApprovalRequest) -> ApprovalRequest:
        """The request as this run's channels show it: naming the PR found through the
        commit, which the run's context (read before the link) does not know."""
        pr = self.pull_request()
        if pr is None or pr.from_payload or pr.number <= 0:
            return request
        context = replace(
            request.context,
            change_request=f"PR #{pr.number}",
            change_request_url=self.pull_request_url(pr),
        )
        return replace(request, context=context)

    def run_id(self) -> str | None:
        return env_value(self.env, "GITHUB_RUN_ID")
