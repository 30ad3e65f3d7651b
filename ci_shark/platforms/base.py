"""What every CI platform does, and the generic behaviour for any CI or a terminal.

A platform turns the flow's events into what its users see and use: log lines, a job
summary, a PR comment or MR note, masked secrets, exported outputs. Subclasses override
the hooks their CI offers; everything else falls back to the plain log and files here.

Order matters and is the flow's job, not the platform's: ``mask`` always comes before a
secret is written anywhere, and ``export`` happens only after approval, all or none.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import ClassVar, TextIO

import httpx

from ci_shark.config import Settings
from ci_shark.errors import PolicyRefused, untrusted
from ci_shark.outputs import (
    RENDERERS,
    Credentials,
    PlannedFile,
    new_key_file_path,
    write_all,
)
from ci_shark.render import ApprovalRequest, Outcome, RunContext, approval_log_lines
from ci_shark.secret import Secret

PROGRESS_EVERY_S = 30.0
_CLEAR_LINE = "\r\x1b[2K"  # back to column 0, erase the line: the countdown redraws in place
DEFAULT_OUTPUT_FILES = {"dotenv": "ci-shark.env", "json": "ci-shark.json"}


class Platform:
    """The generic CI (or a terminal): the log on stderr, outputs in files or for ``eval``."""

    name: ClassVar[str] = "generic"
    # What `notify: auto` means here.
    auto_channels: ClassVar[tuple[str, ...]] = ("log",)

    def __init__(
        self,
        settings: Settings,
        env: Mapping[str, str],
        *,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.env = env
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.transport = transport  # for platform APIs (comments, notes); tests inject it
        self.clock = clock
        self._last_progress_at: float | None = None
        self._countdown_shown = False  # a live countdown line (TTY only) awaits clearing
        self.key_directory: Path | None = None  # None: RUNNER_TEMP or the system temp dir
        self.init_state()

    def init_state(self) -> None:
        """A platform's own state, set up once the common attributes exist (so subclasses
        need not repeat the constructor's signature)."""

    # -- what the run is -------------------------------------------------------------------

    def context(self) -> RunContext:
        return RunContext(platform=self.name)

    def enforce_policy(self, context: RunContext) -> None:
        """Before any device code exists: refuse a PR/MR from a fork (anyone can open one
        whose job asks a maintainer to hand it a credential), and warn a public repository
        that names no approvers."""
        if context.public and not self.settings.allowed_approvers:
            self.warn(
                "this repository is public: anyone who reads the log can open the link and "
                "approve first. Set `allowed-approvers` (CI_SHARK_ALLOWED_APPROVERS) so only "
                "your maintainers' approvals count"
            )
        if not context.is_fork or self.settings.allow_fork:
            return
        source = (
            untrusted(context.fork_source, 100)
            if context.fork_source
            else ("a repository the CI could not name (deleted or unreadable)")
        )
        raise PolicyRefused(
            f"refusing to ask for approval: {context.change_request or 'this change'} comes "
            f"from a fork: {source}. Anyone can open a pull or merge request whose job asks "
            "a maintainer to hand it a credential, so ci_shark requests no device code for it",
            hint="run the job from a branch of this repository, or set `allow-fork` "
            "(CI_SHARK_ALLOW_FORK=true / --allow-fork) only if approvers are told to refuse "
            "runs they did not expect",
        )

    @property
    def channels(self) -> tuple[str, ...]:
        chosen = self.settings.notify
        if "none" in chosen:
            return ()
        if "auto" in chosen:
            return self.auto_channels
        return chosen

    # -- the log ---------------------------------------------------------------------------

    def log(self, line: str) -> None:
        """One line of our own text (server text must already be passed through untrusted)."""
        if self._countdown_shown:
            self._countdown_shown = False
            self.stderr.write(_CLEAR_LINE)
        print(line, file=self.stderr, flush=True)

    def is_terminal(self) -> bool:
        """A person is watching stderr live (not a CI log, not a file)."""
        isatty = getattr(self.stderr, "isatty", None)
        try:
            return bool(isatty and isatty()) and self.env.get("TERM") != "dumb"
        except ValueError:  # closed stream
            return False

    def use_color(self) -> bool:
        """Color only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
        return self.is_terminal() and not self.env.get("NO_COLOR")

    def styled(self, text: str, sgr: str) -> str:
        return f"\x1b[{sgr}m{text}\x1b[0m" if self.use_color() else text

    def warn(self, message: str) -> None:
        self.log(f"ci_shark: warning: {message}")

    def error(self, message: str) -> None:
        self.log(f"ci_shark: error: {message}")

    def mask(self, secrets: Sequence[Secret]) -> None:
        """Tell the CI to hide these values in its log. The generic CI cannot."""

    # -- the approval ----------------------------------------------------------------------

    def announce(self, request: ApprovalRequest) -> None:
        """Show the approver where to go. The log always gets it, whatever `notify` says:
        a person watching the job must be able to approve without another channel."""
        for number, line in enumerate(approval_log_lines(request)):
            self.log(self.styled(line, "1") if number == 0 else line)

    def waiting(self, seconds_left: float) -> None:
        """Called before each poll. On a terminal: a countdown line redrawn in place.
        In a CI log: a progress line at most every 30 s."""
        if self.is_terminal():
            left = max(0, int(seconds_left))
            countdown = f"ci_shark: waiting for approval, {left // 60}:{left % 60:02d} left"
            self.stderr.write(_CLEAR_LINE + self.styled(countdown, "2"))
            self.stderr.flush()
            self._countdown_shown = True
            return
        now = self.clock()
        if self._last_progress_at is None:
            self._last_progress_at = now
            return
        if now - self._last_progress_at >= PROGRESS_EVERY_S:
            self._last_progress_at = now
            self.log(f"ci_shark: still waiting for approval ({seconds_left:.0f}s left)")

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        """The flow ended (any way). Platforms update their comment, summary and status
        output here; the generic one logs the success line only (the CLI prints a failure,
        once)."""
        if outcome.status == "approved":
            by = f" by {outcome.approver}" if outcome.approver else ""
            self.log(f"ci_shark: approved{by}; {outcome.message}")

    # -- outputs ---------------------------------------------------------------------------

    def output_format(self) -> str:
        chosen = self.settings.output_format
        return "dotenv" if chosen in ("auto", "github") else chosen

    def export(self, credentials: Credentials) -> Credentials:
        """Write the outputs: files all or none, then (for `shell`) stdout for `eval`.

        Returns the credentials as exported (with the key file's path)."""
        fmt = self.output_format()
        planned, key_path = self._planned_key_file(credentials)
        credentials = credentials_with_key_file(credentials, key_path)
        values = credentials.named()
        rendered = RENDERERS[fmt](values)
        target = self.settings.output_file or DEFAULT_OUTPUT_FILES.get(fmt)
        if target:
            planned.append(PlannedFile(Path(target), rendered))
        self.write_files(planned, key_path)
        for path in planned:
            self.log(f"ci_shark: wrote {path.path} (mode 0600)")
        if fmt == "shell":
            self.stdout.write(rendered)
            self.stdout.flush()
        return credentials

    def _planned_key_file(self, credentials: Credentials) -> tuple[list[PlannedFile], Path | None]:
        if credentials.dpop_key is None:
            return [], None
        key_path = new_key_file_path(self.key_directory)
        return [PlannedFile(key_path, credentials.dpop_key.private_pem())], key_path

    @staticmethod
    def write_files(planned: list[PlannedFile], key_path: Path | None) -> None:
        try:
            write_all(planned)
        except BaseException:
            if key_path is not None:
                with suppress(OSError):
                    key_path.unlink()
            raise


def credentials_with_key_file(credentials: Credentials, key_path: Path | None) -> Credentials:
    return replace(credentials, dpop_key_file=str(key_path) if key_path else None)
