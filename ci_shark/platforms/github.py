"""GitHub Actions: workflow commands, step outputs, the job summary and the PR comment.

What the runner does with what we write (actions/runner, checked against its source):

- It parses workflow commands on stdout *and* stderr, each stream on its own reader, so
  their relative order is not guaranteed. Everything this platform prints (commands and
  log lines) therefore goes to one stream, stderr, where the CLI's error messages go too:
  ``::add-mask::`` is always read before any later line, and stdout stays free for
  ``--output-format shell`` (whose stdout an ``eval "$(...)"`` captures, hiding anything
  printed there from the runner). A command is recognised at a line start after leading
  whitespace (``::name::``), the legacy form ``##[name]`` anywhere in a line.
- ``GITHUB_OUTPUT`` / ``GITHUB_ENV`` are read after the step exits: ``name=value`` lines
  or ``name<<DELIMITER`` heredocs ending at the first line equal to the delimiter.
- ``GITHUB_STEP_SUMMARY`` is a fresh file for each step, uploaded after the step ends
  (128 KiB at most), with registered secrets masked.

Anything from the event payload or the authorization server is untrusted: it reaches
markdown through :mod:`ci_shark.render` only, and the log through the log writer.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import httpx

from ci_shark.errors import CiSharkError, ConfigError
from ci_shark.outputs import RENDERERS, Credentials, PlannedFile, Value, reveal
from ci_shark.platforms.base import Platform
from ci_shark.platforms.common import MarkedNote, Note, NoteApiError, env_value
from ci_shark.platforms.github_issue import RunIssues
from ci_shark.platforms.rest import RestApi
from ci_shark.render import (
    ApprovalRequest,
    Outcome,
    RunContext,
    approval_markdown,
    issue_title,
    marker,
    mentions,
    outcome_markdown,
)
from ci_shark.secret import Secret
from ci_shark.urls import url_problem

API_VERSION = "2022-11-28"
API_BUDGET_S = 15.0
# On cancellation the runner sends SIGINT, then SIGTERM 7.5 s later, then SIGKILL: the
# closing edit of the comment must fit in that window.
FINISH_BUDGET_S = 3.0
MAX_EVENT_BYTES = 32 * 1024 * 1024
MAX_COMMENT_PAGES = 10
SUMMARY_LIMIT_BYTES = 128 * 1024
DELIMITER_PREFIX = "ghadelimiter_"
# The account GITHUB_TOKEN posts as. Its installation token cannot ask GET /user.
ACTIONS_BOT = "github-actions[bot]"
PR_EVENTS = frozenset(
    {"pull_request", "pull_request_target", "pull_request_review", "pull_request_review_comment"}
)
# refs/heads/gh-readonly-queue/<base branch>/pr-<number>-<sha>
_MERGE_QUEUE_REF = re.compile(r"^refs/heads/gh-readonly-queue/.+/pr-(\d+)-[0-9a-f]+$")
# Step output name -> the SHARK_* value it carries (README "Outputs"); `status` is
# written by finish() on every outcome, `dpop-private-key` comes from the key itself.
STEP_OUTPUTS = {
    "access-token": "SHARK_ACCESS_TOKEN",
    "token-type": "SHARK_TOKEN_TYPE",
    "expires-in": "SHARK_EXPIRES_IN",
    "expires-at": "SHARK_EXPIRES_AT",
    "scope": "SHARK_SCOPE",
    "refresh-token": "SHARK_REFRESH_TOKEN",
    "id-token": "SHARK_ID_TOKEN",
    "dpop-jkt": "SHARK_DPOP_JKT",
    "dpop-jwk": "SHARK_DPOP_JWK",
    "dpop-key-file": "SHARK_DPOP_KEY_FILE",
    "approver": "SHARK_APPROVER",
}


def step_outputs(named: Mapping[str, Value]) -> dict[str, Value]:
    """The step's outputs (dashed names) from the ``SHARK_*`` values."""
    return {step: named.get(shark, "") for step, shark in STEP_OUTPUTS.items()}


def escape_command_data(value: str) -> str:
    """The escaping the runner undoes in a command's data (`%`, CR, LF)."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def new_delimiter() -> str:
    return f"{DELIMITER_PREFIX}{uuid.uuid4()}"


def render_file_commands(values: Mapping[str, Value], delimiter: str | None = None) -> str:
    """``GITHUB_OUTPUT`` / ``GITHUB_ENV`` text: one heredoc per value, `\\n` newlines.

    The runner ends a value at the first line equal to the delimiter, so a random one is
    used and a value containing it is refused rather than truncated (or worse, allowed
    to set other outputs)."""
    delimiter = delimiter or new_delimiter()
    parts = []
    for name, value in values.items():
        text = reveal(value)
        if delimiter in text or delimiter in name:
            raise CiSharkError(
                f"the value of {name} contains the output delimiter; nothing was written"
            )
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
            raise CiSharkError(f"{name!r} is not a valid output name")
        parts.append(f"{name}<<{delimiter}\n{text}\n{delimiter}\n")
    return "".join(parts)


@dataclass(frozen=True)
class PullRequest:
    number: int
    head_repo: str | None  # None when GitHub did not tell (deleted fork, unreadable PR)
    base_repo: str  # always this run's repository (GITHUB_REPOSITORY), never the payload's
    from_payload: bool  # the run was triggered by this PR (not found through its commit)

    @property
    def is_fork(self) -> bool:
        return self.head_repo is None or self.head_repo.lower() != self.base_repo.lower()


class GitHubApi(RestApi):
    """GitHub's REST API with the job's token: its URL, its headers, the bot it posts as."""

    def __init__(
        self,
        api_url: str,
        token: Secret,
        transport: httpx.BaseTransport | None,
        mask: Callable[[Sequence[Secret]], None] | None = None,
    ) -> None:
        super().__init__(
            api_url,
            name="the GitHub API",
            token=token,
            token_header=("Authorization", "Bearer "),
            headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION},
            transport=transport,
            budget_s=API_BUDGET_S,
            finish_budget_s=FINISH_BUDGET_S,
            mask=mask,
        )
        self._own_login: str | None = None

    def own_login(self) -> str | None:
        """The account our token posts as (asked once); None when the API cannot tell."""
        if self._own_login is None:
            try:
                data = self.call("GET", "/user")
            except NoteApiError as refused:
                if refused.status != 403:
                    return None
                data = {"login": ACTIONS_BOT}  # GITHUB_TOKEN may not read /user: the bot
            login = data.get("login") if isinstance(data, dict) else None
            self._own_login = login if isinstance(login, str) else None
        return self._own_login


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
            if (note := _note(item)) is not None:
                yield note

    def create(self, body: str) -> int:
        created = self._api.call(
            "POST", f"/repos/{self._repository}/issues/{self._number}/comments", {"body": body}
        )
        note = _note(created)
        if note is None:
            raise NoteApiError("the GitHub API answered the new comment without an id")
        return note.id

    def edit(self, note_id: int, body: str) -> None:
        self._api.call(
            "PATCH", f"/repos/{self._repository}/issues/comments/{note_id}", {"body": body}
        )


def _note(item: object) -> Note | None:
    if not isinstance(item, dict) or not isinstance(item.get("id"), int):
        return None
    login = _dig(item, "user", "login")
    body = item.get("body")
    return Note(item["id"], login if isinstance(login, str) else None, str(body or ""))


class GitHubPlatform(Platform):
    """GitHub Actions, detected by ``GITHUB_ACTIONS=true``."""

    name: ClassVar[str] = "github"
    ci_identity: ClassVar[str | None] = "github"
    auto_channels: ClassVar[tuple[str, ...]] = ("log", "summary", "comment")
    opens_issues: ClassVar[bool] = True

    def init_state(self) -> None:
        self._context: RunContext | None = None
        self._pull_request: PullRequest | None = None
        self._commit_to_look_up: str | None = None  # push/dispatch: its PR, after the link
        self._comment: MarkedNote | None = None
        self._issue: MarkedNote | None = None
        self._issues: RunIssues | None = None
        self._no_issue = False  # a PR run, or no API: said once
        self._api: GitHubApi | None = None
        self.repository = self.env.get("GITHUB_REPOSITORY", "")
        self.server_url = self.env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        self.api_url = self.env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")

    # -- the log: stderr, commands at a line start -----------------------------------------

    def warn(self, message: str) -> None:
        self.writer.command(f"::warning title=ci_shark::{_command_text(message)}")

    def error(self, message: str) -> None:
        self.writer.command(f"::error title=ci_shark::{_command_text(message)}")

    def register_secret(self, piece: str) -> None:
        self.writer.command(f"::add-mask::{escape_command_data(piece)}")

    # -- what the run is -------------------------------------------------------------------

    def context(self) -> RunContext:
        if self._context is not None:
            return self._context
        env = self.env
        # Inputs that came from `secrets.*` are masked by the runner already; one typed
        # into the workflow, or read from elsewhere, is not.
        self.mask(
            [
                secret
                for secret in (self.settings.github_token, self.settings.client_secret)
                if secret is not None
            ]
        )
        event = env.get("GITHUB_EVENT_NAME", "")
        payload = self._event_payload()
        self._pull_request = self._find_pull_request(event, payload)
        pr = self._pull_request
        run_id = env.get("GITHUB_RUN_ID")
        commit = _dig(payload, "pull_request", "head", "sha") if event in PR_EVENTS else None
        fork = pr is not None and pr.from_payload and pr.is_fork
        self._context = RunContext(
            platform=self.name,
            repository=self.repository or None,
            workflow=env_value(env, "GITHUB_WORKFLOW"),
            job=env_value(env, "GITHUB_JOB"),
            job_variant=matrix_leg(env.get("CI_SHARK_MATRIX")),
            run_url=(
                f"{self.server_url}/{self.repository}/actions/runs/{run_id}"
                if run_id and self.repository
                else None
            ),
            run_attempt=env_value(env, "GITHUB_RUN_ATTEMPT"),
            commit=str(commit) if isinstance(commit, str) else env_value(env, "GITHUB_SHA"),
            actor=env_value(env, "GITHUB_TRIGGERING_ACTOR") or env_value(env, "GITHUB_ACTOR"),
            change_request=f"PR #{pr.number}" if pr and pr.number > 0 else None,
            change_request_url=self._pull_request_url(pr),
            is_fork=fork,
            public=_dig(payload, "repository", "private") is False
            or _dig(payload, "repository", "visibility") == "public",
            fork_source=pr.head_repo if pr and fork else None,
        )
        return self._context

    def _event_payload(self) -> dict[str, Any]:
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
            self.warn(f"could not read the event payload (GITHUB_EVENT_PATH): {type(exc).__name__}")
            return {}
        return payload if isinstance(payload, dict) else {}

    def _find_pull_request(self, event: str, payload: dict[str, Any]) -> PullRequest | None:
        if event in PR_EVENTS or isinstance(payload.get("pull_request"), dict):
            pr = payload.get("pull_request")
            number = _dig(payload, "pull_request", "number")
            if isinstance(pr, dict) and isinstance(number, int):
                head = _dig(pr, "head", "repo", "full_name")
                return self._pr(number, head)
            if event in PR_EVENTS:
                # A PR event without a readable PR: we cannot tell a fork, so assume one.
                return self._pr(0, None)
        if event == "workflow_run":
            return self._pull_request_of_workflow_run(payload)
        if event in ("check_suite", "check_run"):
            suite = payload.get("check_suite") or _dig(payload, "check_run", "check_suite")
            # GitHub sets head_branch to null for a commit of a fork's branch.
            if not isinstance(suite, dict) or suite.get("head_branch") is None:
                return self._pr(0, None)
        if event == "issue_comment" and isinstance(_dig(payload, "issue", "pull_request"), dict):
            number = _dig(payload, "issue", "number")
            if isinstance(number, int):
                return self._pull_request_by_number(number)
            return None
        if event == "merge_group":
            # The queue's branch names the PR it tests; its code may come from a fork.
            ref = _dig(payload, "merge_group", "head_ref")
            match = _MERGE_QUEUE_REF.match(ref) if isinstance(ref, str) else None
            if match is None:
                return self._pr(0, None)
            return self._pull_request_by_number(int(match[1]))
        sha = self.env.get("GITHUB_SHA")
        if sha and self.repository and self._api_available():
            # Only for the comment (a push is never a fork's): looked up after the link
            # is in the log, not before it.
            self._commit_to_look_up = sha
        return None

    def _pr(self, number: int, head: object, *, from_payload: bool = True) -> PullRequest:
        return PullRequest(
            number, head if isinstance(head, str) else None, self.repository, from_payload
        )

    def _pull_request_of_workflow_run(self, payload: dict[str, Any]) -> PullRequest | None:
        """workflow_run runs in the base repository with its secrets, after a run that may
        have been a fork's PR (whose `pull_requests` list GitHub leaves empty): the head
        repository decides, and an unknown one counts as a fork."""
        head = _dig(payload, "workflow_run", "head_repository", "full_name")
        pulls = _dig(payload, "workflow_run", "pull_requests")
        first = pulls[0] if isinstance(pulls, list) and pulls else None
        number = _dig(first, "number") if isinstance(first, dict) else None
        number = number if isinstance(number, int) else 0
        if isinstance(head, str) and head == self.repository:
            return self._pr(number, head) if number else None
        return self._pr(number, head)

    def _pull_request_by_number(self, number: int) -> PullRequest:
        """issue_comment and merge_group payloads do not say where the PR's head lives:
        ask the API. When it cannot tell, the PR is treated as a fork."""
        head: object = None
        api = self._client()
        if api is not None:
            try:
                head = _dig(api.call("GET", f"/repos/{self.repository}/pulls/{number}"), "head")
                head = _dig(head, "repo", "full_name")
            except NoteApiError as exc:
                self.warn(
                    f"could not read PR #{number} to check where it comes from ({exc}); "
                    "it is treated as a fork. Give the job `permissions: pull-requests: read`"
                )
        return self._pr(number, head)

    def _with_late_pull_request(self, request: ApprovalRequest) -> ApprovalRequest:
        """The request, naming the PR whose head is this push's commit once it is known
        (looked up on the first announce; a renewal's request still has the old context)."""
        sha, self._commit_to_look_up = self._commit_to_look_up, None
        if sha is not None:
            pr = self._pull_request = self._pull_request_for_commit(sha)
            if pr is not None:
                self._context = replace(
                    self.context(),
                    change_request=f"PR #{pr.number}",
                    change_request_url=self._pull_request_url(pr),
                )
        return replace(request, context=self.context())

    def _pull_request_url(self, pr: PullRequest | None) -> str | None:
        if pr is None or pr.number <= 0:
            return None
        return f"{self.server_url}/{self.repository}/pull/{pr.number}"

    def _pull_request_for_commit(self, sha: str) -> PullRequest | None:
        """push / workflow_dispatch: the open PR whose head is this commit, if any."""
        api = self._client()
        if api is None:
            return None
        try:
            data = api.call("GET", f"/repos/{self.repository}/commits/{sha}/pulls")
        except NoteApiError as exc:
            self.log(f"ci_shark: no PR found for commit {sha[:12]} ({exc}); no PR comment")
            return None
        # Only a PR whose head IS this commit: a PR that merely contains it is someone
        # else's conversation.
        for item in data if isinstance(data, list) else []:
            if (
                isinstance(item, dict)
                and item.get("state") == "open"
                and isinstance(item.get("number"), int)
                and _dig(item, "head", "sha") == sha
            ):
                head = _dig(item, "head", "repo", "full_name")
                return self._pr(item["number"], head, from_payload=False)
        return None

    # -- the approval: log, summary, comment -----------------------------------------------

    def announce(self, request: ApprovalRequest) -> None:
        super().announce(request)
        request = self._with_late_pull_request(request)
        body = approval_markdown(request)
        if "summary" in self.channels:
            self._write_summary(body)
        if "comment" in self.channels:
            self._write_comment(request.context, body)
        if "issue" in self.channels:
            self._write_issue(request, body)

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        """Never raises: it runs on every way out, and must not hide the first error."""
        if self._api is not None:
            self._api.finishing = True
        try:
            self._append_file("GITHUB_OUTPUT", f"status={outcome.status}\n")
        except (OSError, CiSharkError) as exc:
            self.warn(f"could not write the `status` output: {exc}")
        if request is not None and self._context is not None:
            request = replace(request, context=self._context)  # with a late-found PR
        body = outcome_markdown(outcome, request)
        if "summary" in self.channels:
            self._write_summary(body)
        if request is not None and self._comment is not None and self._comment.note_id:
            self._write_comment(request.context, body)
        if request is not None:
            self._close_issue(outcome, request, body)
        if outcome.status not in ("approved", "cancelled"):
            # An annotation on the run page; the CLI prints the fix on stderr.
            self.error(f"{outcome.status}: {outcome.message}")
        super().finish(outcome, request)
        self.close()

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    def _write_summary(self, body: str) -> None:
        """The step's summary file is ours alone (a new one per step): rewrite it whole."""
        path = self.env.get("GITHUB_STEP_SUMMARY")
        if not path:
            return
        data = body.encode("utf-8")[:SUMMARY_LIMIT_BYTES].decode("utf-8", "ignore")
        try:
            with open(path, "w", encoding="utf-8", newline="\n") as file:
                file.write(data)
        except OSError as exc:
            self.warn(f"could not write the job summary: {exc.strerror}")

    def _write_comment(self, context: RunContext, markdown: str) -> None:
        pr = self._pull_request
        api = self._client()
        if pr is None or pr.number <= 0 or api is None:
            return
        if self._comment is None:
            self._comment = MarkedNote(
                PullRequestComments(api, self.repository, pr.number),
                marker(context),
                warn=lambda failure: self._comment_failed(pr.number, failure),
            )
            if self._comment.write(markdown):
                self.log(f"ci_shark: asked for approval in a comment on PR #{pr.number}")
            return
        self._comment.write(markdown)

    def _comment_failed(self, number: int, failure: NoteApiError) -> None:
        self._api_failed(
            f"comment on PR #{number}",
            "`permissions: pull-requests: write`; pull requests from forks only ever get a "
            "read-only token",
            failure,
        )

    def _api_failed(self, doing: str, needs: str, failure: NoteApiError) -> None:
        """A channel the API refused: one warning, naming the permission when it is one."""
        if failure.status in (401, 403, 404):
            self.warn(
                f"could not {doing} ({failure}). The job's token needs {needs}. "
                "Approve from the link in this log instead."
            )
        else:
            self.warn(f"could not {doing} ({failure}); use the link in the log")

    # -- the issue (`notify: issue`) -------------------------------------------------------

    def _write_issue(self, request: ApprovalRequest, markdown: str) -> None:
        """Open (or, on a re-run, find and edit) the issue asking for this approval."""
        if self._no_issue:
            return
        pr, api = self._pull_request, self._client()
        if (pr is not None and pr.number > 0) or api is None:
            self._no_issue = True
            if pr is not None and pr.number > 0:
                self.log(f"ci_shark: this run belongs to PR #{pr.number}: no issue")
            else:
                self.warn(
                    "`notify: issue` needs `github-token` (the action's default) and an https "
                    "GITHUB_API_URL: no issue"
                )
            return
        users = self.settings.notify_users
        title = issue_title(request.context, env_value(self.env, "GITHUB_RUN_ID"))
        if self._issue is None or self._issues is None:
            self._issues = RunIssues(
                api,
                self.repository,
                title=title,
                assignees=tuple(user.lstrip("@") for user in users if "/" not in user),
                log=self.log,
            )
            self._issue = MarkedNote(self._issues, marker(request.context), warn=self._issue_failed)
            if self._issue.write(markdown + mentions(users)) and self._issue.note_id:
                self._issue_opened(self._issue.note_id, users)
            return
        self._issues.title = title
        self._issue.write(markdown + mentions(users))

    def _issue_opened(self, number: int, users: tuple[str, ...]) -> None:
        assert self._issues is not None
        url = f"{self.server_url}/{self.repository}/issues/{number}"
        if self._issues.created is None and mentions(users):
            # Adopted from an earlier attempt: editing it notified nobody.
            try:
                self._issues.comment(number, f"A new approval request is above.{mentions(users)}")
            except NoteApiError as failure:
                self.warn(f"could not comment on issue #{number} to notify again ({failure})")
        self.log(f"ci_shark: asked for approval in issue #{number}: {url}")

    def _close_issue(self, outcome: Outcome, request: ApprovalRequest, markdown: str) -> None:
        if self._issue is None or self._issues is None or not self._issue.note_id:
            return
        self._issues.closing = "completed" if outcome.status == "approved" else "not_planned"
        self._issues.title = issue_title(
            request.context, env_value(self.env, "GITHUB_RUN_ID"), outcome.status
        )
        self._issue.write(markdown + mentions(self.settings.notify_users))

    def _issue_failed(self, failure: NoteApiError) -> None:
        self._api_failed(
            "open or update the approval issue", "`permissions: issues: write`", failure
        )

    # -- the REST API ----------------------------------------------------------------------

    def _api_available(self) -> bool:
        return (
            self.settings.github_token is not None
            and bool(self.repository)
            and url_problem(self.api_url) is None
        )

    def _client(self) -> GitHubApi | None:
        if self._api is None and self._api_available():
            assert self.settings.github_token is not None
            self._api = GitHubApi(
                self.api_url, self.settings.github_token, self.transport, mask=self.mask
            )
        return self._api

    # -- outputs ---------------------------------------------------------------------------

    def state_directory(self) -> Path:
        """RUNNER_TEMP: the runner's per-job folder, emptied when the job ends."""
        runner_temp = env_value(self.env, "RUNNER_TEMP")
        if runner_temp and Path(runner_temp).is_dir():
            return Path(runner_temp)
        return super().state_directory()

    def output_format(self) -> str:
        chosen = self.settings.output_format
        return "github" if chosen in ("auto", "github") else chosen

    def check_outputs(self) -> None:
        super().check_outputs()
        if self.output_format() == "github":
            self._require_file_commands()

    def _require_file_commands(self) -> None:
        variables = ["GITHUB_OUTPUT"] + (["GITHUB_ENV"] if self.settings.export_env else [])
        for variable in variables:
            if not self.env.get(variable):
                raise ConfigError(
                    f"{variable} is not set, so the step outputs cannot be written",
                    hint="run ci_shark as a step of a GitHub Actions job, or set "
                    "`output-format` to dotenv, shell or json",
                )

    def export(self, credentials: Credentials) -> Credentials:
        if self.output_format() != "github":
            return super().export(credentials)
        self._require_file_commands()
        plan = self.plan_export(credentials)
        credentials, planned, key_path = plan.credentials, list(plan.files), plan.key_path
        named = credentials.named()
        # With step outputs, the credentials also go to a 0600 JSON file in RUNNER_TEMP:
        # what `ci-shark request|refresh|revoke` in a later step read by default.
        credentials_file = plan.output
        planned.append(PlannedFile(credentials_file, RENDERERS["json"](named)))
        outputs: dict[str, Value] = step_outputs(named)
        outputs["dpop-private-key"] = (
            credentials.dpop_key.private_pem() if credentials.dpop_key else ""
        )
        outputs["credentials-file"] = str(credentials_file)
        # Everything is rendered (and checked) before anything is written.
        texts = {"GITHUB_OUTPUT": render_file_commands(outputs)}
        if self.settings.export_env:
            env_values = {name: value for name, value in named.items() if name != "SHARK_STATUS"}
            texts["GITHUB_ENV"] = render_file_commands(env_values)
        self.write_files(planned, key_path)
        try:
            self._append_all(texts)
        except BaseException:
            for path in (key_path, credentials_file):
                if path is not None:
                    with suppress(OSError):
                        path.unlink()
            raise
        self.credentials_file = credentials_file
        self.log(f"ci_shark: step outputs written: {', '.join(sorted(outputs))}")
        if "GITHUB_ENV" in texts:
            self.log("ci_shark: SHARK_* variables exported to later steps (export-env)")
        self.log(f"ci_shark: credentials written to {credentials_file} (mode 0600)")
        if key_path is not None:
            self.log(f"ci_shark: DPoP key written to {key_path} (mode 0600)")
        return credentials

    def export_refreshed(
        self, values: Mapping[str, Value], file: Path, *, print_exports: bool = False
    ) -> None:
        """This step's outputs. Not GITHUB_ENV: that would hand every later step
        (third-party actions too) the refresh token and the key; `ci-shark` reads the
        file, and export-env's variables keep the login's values."""
        outputs = render_file_commands(step_outputs(values))
        super().export_refreshed(values, file, print_exports=print_exports)
        if self.env.get("GITHUB_OUTPUT"):
            self._append_all({"GITHUB_OUTPUT": outputs})

    def _append_all(self, texts: Mapping[str, str]) -> None:
        """Append each text whole; on a failure, cut every file back to where it was."""
        done: list[tuple[str, int]] = []
        try:
            for variable, text in texts.items():
                path = self.env[variable]
                size = os.path.getsize(path) if os.path.exists(path) else 0
                done.append((path, size))
                self._append(path, text)
        except OSError as exc:
            for path, size in done:
                with suppress(OSError):
                    os.truncate(path, size)
            raise ConfigError(
                f"could not write the step outputs: {exc.strerror}; nothing was written",
                hint="check that the runner's file-command files are writable",
            ) from None

    def _append_file(self, variable: str, text: str) -> None:
        path = self.env.get(variable)
        if path:
            self._append(path, text)

    @staticmethod
    def _append(path: str, text: str) -> None:
        with open(path, "a", encoding="utf-8", newline="\n") as file:
            file.write(text)
            file.flush()


def _command_text(message: str) -> str:
    return escape_command_data(message.replace("##[", "# #["))


def matrix_leg(matrix_json: str | None) -> str | None:
    """``toJSON(matrix)`` (passed by action.yml) as ``"env: prod, os: linux"``; None
    outside a matrix, where the runner passes ``null``."""
    try:
        matrix = json.loads(matrix_json) if matrix_json else None
    except (ValueError, RecursionError):
        return None
    if not isinstance(matrix, dict) or not matrix:
        return None
    return ", ".join(
        f"{name}: {value if isinstance(value, str) else json.dumps(value, sort_keys=True)}"
        for name, value in sorted(matrix.items())
    )


def _dig(data: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data
