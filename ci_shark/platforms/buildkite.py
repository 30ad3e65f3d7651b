"""Buildkite: secrets registered with the agent's redactor, the link in a build annotation.

Every secret goes to ``buildkite-agent redactor add`` on stdin (never on argv, where ``ps``
and process accounting would see it) before anything uses it, so a later command that
prints it shows ``[REDACTED]``. `notify: summary` here is a build annotation
(:class:`Annotation`): the approval link, replaced by the outcome when the flow ends.
Without the agent binary (a job container without it mounted), ci_shark warns and behaves
like the generic platform: log and files only.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Mapping
from typing import ClassVar

from ci_shark.platforms.base import Platform
from ci_shark.platforms.channels import Channel, Registered
from ci_shark.platforms.common import env_value, find_program
from ci_shark.render import (
    ApprovalRequest,
    Outcome,
    RunContext,
    approval_markdown,
    outcome_markdown,
)

AGENT = "buildkite-agent"
AGENT_TIMEOUT_S = 15.0
OUTCOME_STYLES = {"approved": "success", "denied": "error", "error": "error", "refused": "error"}


class BuildkitePlatform(Platform):
    name: ClassVar[str] = "buildkite"
    title: ClassVar[str] = "Buildkite"
    ci_identity: ClassVar[str | None] = "buildkite"
    # The annotation is Buildkite's job summary: it shows on the build page while we wait.
    auto_channels: ClassVar[tuple[str, ...]] = ("log", "summary")
    own_channels: ClassVar[dict[str, Registered]] = {
        "summary": Registered("ci_shark.platforms.buildkite", "annotation"),
    }
    job_id_variable: ClassVar[str | None] = "BUILDKITE_JOB_ID"

    def init_state(self) -> None:
        self._agent = find_program(AGENT, self.env)
        self._warned_missing = False
        self._redactor_failed = False

    # -- what the run is -------------------------------------------------------------------

    def context(self) -> RunContext:
        self.agent()
        env = self.env
        organization, pipeline = (
            env_value(env, "BUILDKITE_ORGANIZATION_SLUG"),
            env_value(env, "BUILDKITE_PIPELINE_SLUG"),
        )
        pull_request = env_value(env, "BUILDKITE_PULL_REQUEST")
        if pull_request == "false":
            pull_request = None
        pr_repo = env_value(env, "BUILDKITE_PULL_REQUEST_REPO")
        # A PR whose source repository is unknown counts as a fork: refusing is the safe side.
        is_fork = bool(
            pull_request
            and (not pr_repo or _repo_key(pr_repo) != _repo_key(env.get("BUILDKITE_REPO")))
        )
        return RunContext(
            platform=self.name,
            repository="/".join(part for part in (organization, pipeline) if part) or None,
            job=env_value(env, "BUILDKITE_LABEL") or env_value(env, "BUILDKITE_STEP_KEY"),
            job_variant=_parallel_job(env),
            run_url=env_value(env, "BUILDKITE_BUILD_URL"),
            run_attempt=env_value(env, "BUILDKITE_RETRY_COUNT"),
            commit=env_value(env, "BUILDKITE_COMMIT"),
            actor=env_value(env, "BUILDKITE_BUILD_CREATOR")
            or env_value(env, "BUILDKITE_BUILD_AUTHOR"),
            change_request=f"PR #{pull_request}" if pull_request else None,
            is_fork=is_fork,
            fork_source=pr_repo if is_fork else None,
        )

    # -- the log ---------------------------------------------------------------------------

    def register_secret(self, piece: str) -> None:
        """``buildkite-agent redactor add``, the value on stdin (log lines are redacted one
        at a time, hence the line pieces of a multi-line secret)."""
        agent = self.agent()
        if agent is not None:
            self._redact(agent, piece)

    def _redact(self, agent: str, value: str) -> None:
        result = self.run_agent([agent, "redactor", "add"], stdin=value)
        if result is not None and result.returncode == 0:
            return
        if not self._redactor_failed:
            self._redactor_failed = True
            reason = "timed out" if result is None else f"exit {result.returncode}"
            self.warn(
                f"`buildkite-agent redactor add` failed ({reason}): a later command that prints "
                "a token will not be redacted (the redactor needs buildkite-agent 3.66 or newer)"
            )

    # -- the agent -------------------------------------------------------------------------

    def agent(self) -> str | None:
        """The agent binary; None, said once, when it is not there."""
        if self._agent is None and not self._warned_missing:
            self._warned_missing = True
            self.warn(
                "buildkite-agent is not on PATH (is the agent binary mounted into this "
                "container?): no redaction and no annotation; the log and the output files "
                "still work"
            )
        return self._agent

    def run_agent(self, argv: list[str], *, stdin: str) -> subprocess.CompletedProcess[str] | None:
        """Run the agent with a bounded time; its output is dropped, never echoed to the log
        (it could repeat what it was given)."""
        try:
            return subprocess.run(  # noqa: S603 (argv is ours, never a secret)
                argv,
                input=stdin,
                text=True,
                capture_output=True,
                timeout=AGENT_TIMEOUT_S,
                check=False,
                env=dict(self.env),
            )
        except (OSError, subprocess.TimeoutExpired):
            return None


def annotation(platform: BuildkitePlatform) -> Channel:
    return Annotation(platform)


class Annotation(Channel):
    """The request as a build annotation, replaced by the outcome (one per step, stable
    across retries: the same context replaces it)."""

    def __init__(self, platform: BuildkitePlatform) -> None:
        self._platform = platform
        self._annotated = False

    def announce(self, request: ApprovalRequest) -> None:
        self._annotated = self._annotate(approval_markdown(request), "info", request.context)

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        if request is not None and self._annotated:
            style = OUTCOME_STYLES.get(outcome.status, "warning")
            self._annotate(outcome_markdown(outcome, request), style, request.context)

    def _annotate(self, body: str, style: str, context: RunContext) -> bool:
        agent = self._platform.agent()
        if agent is None:
            return False
        annotation = "ci-shark-" + hashlib.sha256(context.marker_key().encode()).hexdigest()[:16]
        result = self._platform.run_agent(
            [agent, "annotate", "--style", style, "--context", annotation], stdin=body
        )
        if result is not None and result.returncode == 0:
            return True
        reason = "timed out" if result is None else f"exit {result.returncode}"
        self._platform.warn(
            f"`buildkite-agent annotate` failed ({reason}): the link is in the log only"
        )
        return False


_SMALL_NUMBER = re.compile(r"[0-9]{1,6}")  # ASCII digits only: str.isdigit() takes "²"


def _parallel_job(env: Mapping[str, str]) -> str | None:
    """Which copy of a step with ``parallelism``: each gets its own annotation, or copies
    waiting side by side would overwrite each other's code."""
    index = env_value(env, "BUILDKITE_PARALLEL_JOB") or ""
    count = env_value(env, "BUILDKITE_PARALLEL_JOB_COUNT") or ""
    if not (_SMALL_NUMBER.fullmatch(index) and _SMALL_NUMBER.fullmatch(count)):
        return None
    if int(index) >= int(count):
        return None
    return f"parallel job {int(index) + 1} of {int(count)}"


def _repo_key(url: str | None) -> str:
    """``git@github.com:o/r.git`` and ``https://github.com/o/r`` name the same repository."""
    text = (url or "").strip().lower().removesuffix("/").removesuffix(".git")
    for prefix in ("https://", "http://", "ssh://", "git://", "git@"):
        text = text.removeprefix(prefix)
    return text.replace(":", "/", 1).split("@")[-1]
