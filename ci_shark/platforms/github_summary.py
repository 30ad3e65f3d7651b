"""`notify: summary` on GitHub: the step's job summary (``GITHUB_STEP_SUMMARY``).

The runner gives each step a fresh summary file and uploads it when the step ends (128 KiB
at most, with registered secrets masked): the file is ours alone, so each write replaces it
whole — the request while waiting (shown only if the step dies), the outcome at the end.
It names the PR a push's commit belongs to, as the comment does (:meth:`GitHubRun.shown`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ci_shark.platforms.channels import Channel
from ci_shark.platforms.github_run import GitHubRun
from ci_shark.render import ApprovalRequest, Outcome, approval_markdown, outcome_markdown

if TYPE_CHECKING:
    from collections.abc import Callable

    from ci_shark.platforms.github import GitHubPlatform

SUMMARY_LIMIT_BYTES = 128 * 1024


def step_summary(platform: GitHubPlatform) -> Channel:
    return StepSummary(platform.env.get("GITHUB_STEP_SUMMARY"), platform.run, platform.warn)


class StepSummary(Channel):
    def __init__(self, path: str | None, run: GitHubRun, warn: Callable[[str], None]) -> None:
        self._path = path
        self._run = run
        self._warn = warn

    def announce(self, request: ApprovalRequest) -> None:
        self._write(approval_markdown(self._run.shown(request)))

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        self._write(outcome_markdown(outcome, request and self._run.shown(request)))

    def _write(self, body: str) -> None:
        if not self._path:
            return
        data = body.encode("utf-8")[:SUMMARY_LIMIT_BYTES].decode("utf-8", "ignore")
        try:
            with open(self._path, "w", encoding="utf-8", newline="\n") as file:
                file.write(data)
        except OSError as exc:
            self._warn(f"could not write the job summary: {exc.strerror}")
