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
markdown through :mod:`ci_shark.render` only, and the log through :meth:`log`, which
defuses workflow commands.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import httpx

from ci_shark import __version__
from ci_shark.errors import CiSharkError, ConfigError
from ci_shark.oauth.tls import context_for
from ci_shark.outputs import Credentials, Value, reveal
from ci_shark.platforms.base import Platform, credentials_with_key_file
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

API_VERSION = "2022-11-28"
API_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# On cancellation the runner sends SIGINT, then SIGTERM 7.5 s later, then SIGKILL: the
# closing edit of the comment must fit in that window.
FINISH_TIMEOUT = httpx.Timeout(3.0, connect=2.0)
MAX_EVENT_BYTES = 32 * 1024 * 1024
MAX_COMMENT_PAGES = 10
SUMMARY_LIMIT_BYTES = 128 * 1024
DELIMITER_PREFIX = "ghadelimiter_"
PR_EVENTS = frozenset(
    {"pull_request", "pull_request_target", "pull_request_review", "pull_request_review_comment"}
)
# Step output name -> the SHARK_* value it carries (SPEC.md "Outputs"); `status` is
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
_COMMAND_START = re.compile(r"^(\s*)::")


def escape_command_data(value: str) -> str:
    """The escaping the runner undoes in a command's data (`%`, CR, LF)."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def neutralise_log_line(line: str) -> str:
    """A line that the runner will print and never act on."""
    line = line.replace("##[", "# #[")  # legacy commands match anywhere in a line
    line = line.replace("\r", " ").replace("\n", " ")
    if _COMMAND_START.match(line):
        return "ci_shark: " + line.lstrip()
    return line


def mask_commands(secrets: Iterable[Secret]) -> list[str]:
    """``::add-mask::`` lines for each secret, and for each line of a multi-line one."""
    commands: list[str] = []
    for secret in secrets:
        value = secret.reveal()
        if not value.strip():
            continue
        commands.append(f"::add-mask::{escape_command_data(value)}")
        lines = value.splitlines()
        if len(lines) > 1:
            commands += [
                f"::add-mask::{escape_command_data(line)}" for line in lines if line.strip()
            ]
    return commands


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
    base_repo: str
    from_payload: bool  # the run was triggered by this PR (not found through its commit)

    @property
    def is_fork(self) -> bool:
        return self.head_repo is None or self.head_repo.lower() != self.base_repo.lower()


class GitHubApiError(Exception):
    def __init__(self, status: int | None, what: str) -> None:
        super().__init__(what)
        self.status = status


class GitHubPlatform(Platform):
    """GitHub Actions, detected by ``GITHUB_ACTIONS=true``."""

    name: ClassVar[str] = "github"
    auto_channels: ClassVar[tuple[str, ...]] = ("log", "summary", "comment")

    def init_state(self) -> None:
        self._context: RunContext | None = None
        self._pull_request: PullRequest | None = None
        self._commit_to_look_up: str | None = None  # push/dispatch: its PR, after the link
        self._comment_id: int | None = None
        self._comment_broken = False  # after a 401/403/404: warned once, not retried
        self._client: httpx.Client | None = None
        self._masked: set[bytes] = set()
        self._finishing = False
        self.repository = self.env.get("GITHUB_REPOSITORY", "")
        self.server_url = self.env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        self.api_url = self.env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")

    # -- the log: stderr, commands defused -------------------------------------------------

    def log(self, line: str) -> None:
        self._emit(neutralise_log_line(line))

    def warn(self, message: str) -> None:
        self._emit(f"::warning title=ci_shark::{_command_text(message)}")

    def error(self, message: str) -> None:
        self._emit(f"::error title=ci_shark::{_command_text(message)}")

    def _emit(self, line: str) -> None:
        print(line, file=self.stderr, flush=True)

    def mask(self, secrets: Sequence[Secret]) -> None:
        for secret in secrets:
            # Once is enough for the runner; only a digest is kept to know it was done.
            digest = hashlib.sha256(secret.reveal().encode()).digest()
            if digest in self._masked:
                continue
            self._masked.add(digest)
            for command in mask_commands([secret]):
                self._emit(command)

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
        self._context = RunContext(
            platform=self.name,
            repository=self.repository or None,
            workflow=env.get("GITHUB_WORKFLOW") or None,
            job=env.get("GITHUB_JOB") or None,
            job_variant=matrix_leg(env.get("CI_SHARK_MATRIX")),
            run_url=(
                f"{self.server_url}/{self.repository}/actions/runs/{run_id}"
                if run_id and self.repository
                else None
            ),
            run_attempt=env.get("GITHUB_RUN_ATTEMPT") or None,
            commit=str(commit) if isinstance(commit, str) else env.get("GITHUB_SHA") or None,
            actor=env.get("GITHUB_TRIGGERING_ACTOR") or env.get("GITHUB_ACTOR") or None,
            event=event or None,
            change_request=f"PR #{pr.number}" if pr and pr.number > 0 else None,
            change_request_url=self._pull_request_url(pr),
            is_fork=bool(pr and pr.from_payload and pr.is_fork),
            public=_dig(payload, "repository", "private") is False
            or _dig(payload, "repository", "visibility") == "public",
            fork_source=pr.head_repo if pr and pr.from_payload and pr.is_fork else None,
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
        except (OSError, ValueError) as exc:
            self.warn(f"could not read the event payload (GITHUB_EVENT_PATH): {type(exc).__name__}")
            return {}
        return payload if isinstance(payload, dict) else {}

    def _find_pull_request(self, event: str, payload: dict[str, Any]) -> PullRequest | None:
        base_repo = self.repository
        if event in PR_EVENTS or isinstance(payload.get("pull_request"), dict):
            pr = payload.get("pull_request")
            number = _dig(payload, "pull_request", "number")
            if isinstance(pr, dict) and isinstance(number, int):
                head = _dig(pr, "head", "repo", "full_name")
                base = _dig(pr, "base", "repo", "full_name")
                return PullRequest(
                    number=number,
                    head_repo=head if isinstance(head, str) else None,
                    base_repo=base if isinstance(base, str) else base_repo,
                    from_payload=True,
                )
            if event in PR_EVENTS:
                # A PR event without a readable PR: we cannot tell a fork, so assume one.
                return PullRequest(0, None, base_repo, from_payload=True)
        if event == "workflow_run":
            return self._pull_request_of_workflow_run(payload)
        if event in ("check_suite", "check_run"):
            suite = payload.get("check_suite") or _dig(payload, "check_run", "check_suite")
            # GitHub sets head_branch to null for a commit of a fork's branch.
            if not isinstance(suite, dict) or suite.get("head_branch") is None:
                return PullRequest(0, None, base_repo, from_payload=True)
        if event == "issue_comment" and isinstance(_dig(payload, "issue", "pull_request"), dict):
            number = _dig(payload, "issue", "number")
            if isinstance(number, int):
                return self._pull_request_by_number(number)
            return None
        sha = self.env.get("GITHUB_SHA")
        if sha and self.repository and self._api_available():
            # Only for the comment (a push is never a fork's): looked up after the link
            # is in the log, not before it.
            self._commit_to_look_up = sha
        return None

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
            return PullRequest(number, head, self.repository, from_payload=True) if number else None
        return PullRequest(
            number, head if isinstance(head, str) else None, self.repository, from_payload=True
        )

    def _pull_request_by_number(self, number: int) -> PullRequest:
        """issue_comment payloads do not say where the PR's head lives: ask the API.
        When it cannot tell, the PR is treated as a fork (refused unless allow-fork)."""
        head: str | None = None
        if self._api_available():
            try:
                data = self._api("GET", f"/repos/{self.repository}/pulls/{number}")
                found = _dig(data, "head", "repo", "full_name")
                head = found if isinstance(found, str) else None
            except GitHubApiError as exc:
                self.warn(
                    f"could not read PR #{number} to check where it comes from ({exc}); "
                    "it is treated as a fork. Give the job `permissions: pull-requests: read`"
                )
        return PullRequest(number, head, self.repository, from_payload=True)

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
        try:
            data = self._api("GET", f"/repos/{self.repository}/commits/{sha}/pulls")
        except GitHubApiError as exc:
            self.log(f"ci_shark: no PR found for commit {sha[:12]} ({exc}); no PR comment")
            return None
        # Only a PR whose head IS this commit: a PR that merely contains it is someone
        # else's conversation.
        candidates = [
            item
            for item in (data if isinstance(data, list) else [])
            if isinstance(item, dict)
            and item.get("state") == "open"
            and isinstance(item.get("number"), int)
            and _dig(item, "head", "sha") == sha
        ]
        if not candidates:
            return None
        chosen = candidates[0]
        head = _dig(chosen, "head", "repo", "full_name")
        return PullRequest(
            number=chosen["number"],
            head_repo=head if isinstance(head, str) else None,
            base_repo=self.repository,
            from_payload=False,
        )

    # -- the approval: log, summary, comment -----------------------------------------------

    def announce(self, request: ApprovalRequest) -> None:
        super().announce(request)
        request = self._with_late_pull_request(request)
        body = approval_markdown(request)
        if "summary" in self.channels:
            self._write_summary(body)
        if "comment" in self.channels:
            self._comment(request.context, body)

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        """Never raises: it runs on every way out, and must not hide the first error."""
        self._finishing = True
        try:
            self._append_file("GITHUB_OUTPUT", f"status={outcome.status}\n")
        except (OSError, CiSharkError) as exc:
            self.warn(f"could not write the `status` output: {exc}")
        if request is not None and self._context is not None:
            request = replace(request, context=self._context)  # with a late-found PR
        body = outcome_markdown(outcome, request)
        if "summary" in self.channels:
            self._write_summary(body)
        if "comment" in self.channels and request is not None and self._comment_id is not None:
            self._comment(request.context, body)
        if outcome.status in ("approved", "cancelled"):
            super().finish(outcome, request)
        else:  # an annotation on the run page; the CLI prints the fix on stderr
            self.error(f"{outcome.status}: {outcome.message}")
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

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

    def _comment(self, context: RunContext, markdown: str) -> None:
        pr = self._pull_request
        if pr is None or pr.number <= 0 or self._comment_broken or not self._api_available():
            return
        body = f"{marker(context)}\n{markdown}"
        try:
            if self._comment_id is None:
                self._comment_id = self._find_own_comment(pr.number, marker(context))
            if self._comment_id is None:
                created = self._api(
                    "POST", f"/repos/{self.repository}/issues/{pr.number}/comments", {"body": body}
                )
                comment_id = created.get("id") if isinstance(created, dict) else None
                self._comment_id = comment_id if isinstance(comment_id, int) else None
                self.log(f"ci_shark: asked for approval in a comment on PR #{pr.number}")
            else:
                self._api(
                    "PATCH",
                    f"/repos/{self.repository}/issues/comments/{self._comment_id}",
                    {"body": body},
                )
        except GitHubApiError as exc:
            self._comment_broken = True
            if exc.status in (401, 403, 404):
                self.warn(
                    f"could not comment on PR #{pr.number} (HTTP {exc.status}). The job's "
                    "token needs `permissions: pull-requests: write`; pull requests from "
                    "forks only ever get a read-only token. Approve from the link in this "
                    "log instead."
                )
            else:
                self.warn(f"could not comment on PR #{pr.number} ({exc}); use the link in the log")

    def _find_own_comment(self, number: int, wanted: str) -> int | None:
        """A comment carrying our marker, posted by a bot (a person who pasted the marker
        into their own comment must not get their comment rewritten under their name)."""
        for page in range(1, MAX_COMMENT_PAGES + 1):
            data = self._api(
                "GET",
                f"/repos/{self.repository}/issues/{number}/comments",
                params={"per_page": "100", "page": str(page)},
            )
            items = data if isinstance(data, list) else []
            for item in items:
                if not isinstance(item, dict):
                    continue
                body = item.get("body")
                if (
                    isinstance(body, str)
                    and body.startswith(wanted)
                    and _dig(item, "user", "type") == "Bot"
                    and isinstance(item.get("id"), int)
                ):
                    found: int = item["id"]
                    return found
            if len(items) < 100:
                break
        return None

    # -- the REST API ----------------------------------------------------------------------

    def _api_available(self) -> bool:
        return (
            self.settings.github_token is not None
            and bool(self.repository)
            and url_problem(self.api_url) is None
        )

    def _api(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        token = self.settings.github_token
        if token is None:
            raise GitHubApiError(None, "no github-token")
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.api_url,
                transport=self.transport,
                # The run's trust (the system's, see oauth/tls.py): GHES behind a private CA.
                verify=context_for(None) if self.transport is None else True,
                timeout=API_TIMEOUT,
                follow_redirects=False,
                headers={
                    "Accept": "application/vnd.github+json",
                    "X-GitHub-Api-Version": API_VERSION,
                    "User-Agent": f"ci-shark/{__version__}",
                },
            )
        try:
            response = self._client.request(
                method,
                path,
                json=payload,
                params=params,
                headers={"Authorization": f"Bearer {token.reveal()}"},
                timeout=FINISH_TIMEOUT if self._finishing else API_TIMEOUT,
            )
        except httpx.HTTPError as exc:
            # The exception text is ours (httpx), never the token: only its kind is shown.
            raise GitHubApiError(None, f"{type(exc).__name__} talking to the GitHub API") from None
        if response.status_code >= 300:
            raise GitHubApiError(
                response.status_code, f"HTTP {response.status_code} from {method} {path}"
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise GitHubApiError(response.status_code, "the GitHub API sent no JSON") from None

    # -- outputs ---------------------------------------------------------------------------

    def output_format(self) -> str:
        chosen = self.settings.output_format
        return "github" if chosen in ("auto", "github") else chosen

    def export(self, credentials: Credentials) -> Credentials:
        if self.output_format() != "github":
            return super().export(credentials)
        planned, key_path = self._planned_key_file(credentials)
        credentials = credentials_with_key_file(credentials, key_path)
        named = credentials.named()
        outputs: dict[str, Value] = {step: named[shark] for step, shark in STEP_OUTPUTS.items()}
        outputs["dpop-private-key"] = (
            credentials.dpop_key.private_pem() if credentials.dpop_key else ""
        )
        # Everything is rendered (and checked) before anything is written.
        texts = {"GITHUB_OUTPUT": render_file_commands(outputs)}
        if self.settings.export_env:
            env_values = {name: value for name, value in named.items() if name != "SHARK_STATUS"}
            texts["GITHUB_ENV"] = render_file_commands(env_values)
        for variable in texts:
            if not self.env.get(variable):
                raise ConfigError(
                    f"{variable} is not set, so the step outputs cannot be written",
                    hint="run ci_shark as a step of a GitHub Actions job, or set "
                    "`output-format` to dotenv, shell or json",
                )
        self.write_files(planned, key_path)
        try:
            self._append_all(texts)
        except BaseException:
            if key_path is not None:
                with suppress(OSError):
                    key_path.unlink()
            raise
        written = ", ".join(sorted(outputs))
        self.log(f"ci_shark: step outputs written: {written}")
        if "GITHUB_ENV" in texts:
            self.log("ci_shark: SHARK_* variables exported to later steps (export-env)")
        if key_path is not None:
            self.log(f"ci_shark: DPoP key written to {key_path} (mode 0600)")
        return credentials

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
    except ValueError:
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


# What tests that read the runner's files back import.
__all__ = [
    "DELIMITER_PREFIX",
    "STEP_OUTPUTS",
    "GitHubPlatform",
    "PullRequest",
    "escape_command_data",
    "mask_commands",
    "neutralise_log_line",
    "render_file_commands",
]
