"""What every CI platform does, and the generic behaviour for any CI or a terminal.

A platform is what is really a CI's own: the facts of the run (who is asking, whether the
change comes from a fork), how the CI hides a secret, how its log reads commands, and how
later steps get the outputs. It supplies facts; the flow decides what to do with them.
Where the approver hears about the request is the platform's list of channels
(:mod:`ci_shark.platforms.channels`), built from `notify`. Subclasses override the hooks
their CI offers; everything else falls back to the plain log and files here. All output
goes through one :class:`LogWriter`.

Order matters and is the flow's job, not the platform's: ``mask`` always comes before a
secret is written anywhere, and ``export`` happens only after approval, all or none. The
one exception is decided here: a channel's credentials among the settings (a webhook URL)
are masked as the platform starts, before anything can print them.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TextIO

import httpx

from ci_shark.errors import ConfigError
from ci_shark.outputs import (
    RENDERERS,
    TOKEN_NAMES,
    Credentials,
    PlannedFile,
    Value,
    check_writable,
    new_key_file_path,
    private_directory,
    read_credentials,
    write_all,
)
from ci_shark.platforms.channels import (
    EVERY_CI,
    Channels,
    Registered,
    build_channels,
    secret_settings,
)
from ci_shark.platforms.common import env_value
from ci_shark.platforms.log import LogWriter
from ci_shark.render import ApprovalRequest, Outcome, RunContext
from ci_shark.secret import Secret

if TYPE_CHECKING:
    from ci_shark.later_settings import PlatformSettings

PROGRESS_EVERY_S = 30.0
DEFAULT_OUTPUT_FILES = {"dotenv": "ci-shark.env", "json": "ci-shark.json"}
# Job ids of CIs without a platform of their own (Jenkins, CircleCI, Travis, Bitbucket,
# AWS CodeBuild, Bamboo).
GENERIC_JOB_VARIABLES = (
    "BUILD_TAG",
    "CIRCLE_WORKFLOW_JOB_ID",
    "TRAVIS_JOB_ID",
    "BITBUCKET_STEP_UUID",
    "CODEBUILD_BUILD_ID",
    "bamboo_buildResultKey",
)
# CIs that set neither `CI` nor a job id above, but this (TeamCity).
CI_ONLY_VARIABLES = ("TEAMCITY_VERSION",)


class Platform:
    """The generic CI (or a terminal): the log on stderr, outputs in files or for ``eval``."""

    name: ClassVar[str] = "generic"
    title: ClassVar[str] = "a CI of its own"  # in messages, as users name the CI
    # What `notify: auto` means here.
    auto_channels: ClassVar[tuple[str, ...]] = ("log",)
    # The channels this CI has of its own (channels.EVERY_CI are everywhere).
    own_channels: ClassVar[dict[str, Registered]] = {}
    # The CI's own id of this job: a private folder per job for the files we write.
    job_id_variable: ClassVar[str | None] = None
    # Where a job gets the CI's OIDC token for `workload-identity` (platforms/ci_identity.py).
    ci_identity: ClassVar[str | None] = None

    def __init__(
        self,
        settings: PlatformSettings,
        env: Mapping[str, str],
        *,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        stdout_is_free: bool = True,
    ) -> None:
        self.settings = settings
        # False for the commands whose stdout is data (an API's answer, a proof): the
        # platform then writes nothing there, not even a CI's commands.
        self.stdout_is_free = stdout_is_free
        self.env = env
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.transport = transport  # for platform APIs (comments, notes); tests inject it
        self.clock = clock
        self.writer = LogWriter(
            self.stderr,
            self.command_stream(),
            live=self.is_person_watching(),
            color=not env.get("NO_COLOR"),
        )
        self._last_progress_at: float | None = None
        self.credentials_file: Path | None = None  # where export wrote them, once it has
        self._masked: set[bytes] = set()
        self._step_over = False  # see leave_the_step()
        self.init_state()
        # Before anything can print them, whatever `notify` says (channels rule 5).
        self.mask(secret_settings(settings, [*EVERY_CI.values(), *self.own_channels.values()]))

    def init_state(self) -> None:
        """A platform's own state, set up once the common attributes exist (so subclasses
        need not repeat the constructor's signature)."""

    # -- what the run is -------------------------------------------------------------------

    def context(self) -> RunContext:
        return RunContext(platform=self.name)

    @cached_property
    def channels(self) -> Channels:
        """Where the approver hears about it: the log, then what `notify` names. Built on
        first use: the commands that ask for no approval never build them."""
        return build_channels(self)

    # -- the log ---------------------------------------------------------------------------

    def command_stream(self) -> TextIO:
        """Where this CI reads its commands (every platform but Azure: stderr, the log)."""
        return self.stderr

    def in_ci(self) -> bool:
        """A CI job, not a person's terminal: a CI of our own, else `CI` set (as most CIs
        do, `CI=woodpecker` too), a known job id (Jenkins sets no `CI`) or another CI's
        own variable. A CI that shows none of these is taken for a terminal."""
        if self.name != "generic":
            return True
        if self.env.get("CI", "").strip().lower() not in ("", "false", "0"):
            return True
        return any(
            env_value(self.env, name) for name in (*GENERIC_JOB_VARIABLES, *CI_ONLY_VARIABLES)
        )

    def is_person_watching(self) -> bool:
        """A person watches stderr live: a terminal, and not a CI (some CIs give steps a
        terminal too; their logs are still read line by line)."""
        if self.in_ci():
            return False
        isatty = getattr(self.stderr, "isatty", None)
        try:
            return bool(isatty and isatty()) and self.env.get("TERM") != "dumb"
        except ValueError:  # closed stream
            return False

    def log(self, line: str) -> None:
        """One line of our own text (server text must already be passed through untrusted)."""
        self.writer.line(line)

    def report(self, line: str) -> None:
        """Progress the run must show: a failed attempt to reach the server, and until when."""
        self.log(f"ci_shark: {line}")

    def warn(self, message: str) -> None:
        self.log(f"ci_shark: warning: {message}")

    def error(self, message: str) -> None:
        self.log(f"ci_shark: error: {message}")

    def mask(self, secrets: Sequence[Secret]) -> None:
        """Tell the CI to hide these values, and each line of a multi-line one, in its log
        (:meth:`Secret.pieces`), before they are used anywhere. Once per piece: only a
        digest is kept to know it was done. Nothing once the step is over (a runner
        that no longer reads us would leave the secret in clear where we write)."""
        if self._step_over:
            return
        for secret in secrets:
            for piece in secret.pieces():
                digest = hashlib.sha256(piece.encode()).digest()
                if digest not in self._masked:
                    self._masked.add(digest)
                    self.register_secret(piece)

    def register_secret(self, piece: str) -> None:
        """Hide one piece in the CI's log. The generic CI cannot."""

    def leave_the_step(self) -> None:
        """This process goes on after its step has ended (`proxy --export`): the runner reads
        none of its commands any more, so no secret is masked from now on (a mask would
        only write it, in clear, into this process's own log)."""
        self._step_over = True

    # -- the approval ----------------------------------------------------------------------

    def announce(self, request: ApprovalRequest) -> None:
        """Show the approver where to go, on every channel (the log first, always)."""
        self.channels.announce(request)

    def waiting(self, seconds_left: float) -> None:
        """Called before each poll. For a person at a terminal: a countdown redrawn in
        place. In a CI log: a progress line at most every 30 s."""
        left = max(0, int(seconds_left))
        if self.writer.live:
            countdown = f"ci_shark: waiting for approval, {left // 60}:{left % 60:02d} left"
            self.writer.countdown(self.writer.styled(countdown, "2"))
            return
        now = self.clock()
        if self._last_progress_at is None:
            self._last_progress_at = now
            return
        if now - self._last_progress_at >= PROGRESS_EVERY_S:
            self._last_progress_at = now
            self.log(f"ci_shark: still waiting for approval ({left}s left)")

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        """The flow ended (any way): every channel says how, then where the credentials
        went (the login's last line). Never raises: it runs on every way out and must not
        hide the first error. A CI adds what is its own (GitHub's `status` output, a log
        section's end)."""
        self.channels.finish(outcome, request)
        if outcome.status == "approved" and self.credentials_file is not None:
            self.log(
                f"ci_shark: the credentials are in {self.credentials_file}: "
                "`ci-shark request|refresh|revoke` read them from there"
            )

    # -- outputs ---------------------------------------------------------------------------

    def output_format(self) -> str:
        chosen = self.settings.output_format
        return "dotenv" if chosen in ("auto", "github") else chosen

    def state_directory(self) -> Path:
        """A private folder (0700) for the files we write (the key file, the default
        credentials file) — never the checkout, where `docker build .` or an artifact step
        would pick them up:

        - in a CI job, one per user and per job under the system's temp dir, so two jobs
          side by side never share a credentials file;
        - outside CI, one per user that a new terminal finds again: the XDG state folder
          (``$XDG_STATE_HOME/ci-shark``, else ``~/.local/state/ci-shark``). A folder per
          terminal session left a second terminal with "nothing to revoke" while the
          first one's tokens stayed live.
        """
        if not self.in_ci():
            return private_directory(user_state_home(self.env) / "ci-shark")
        user = getattr(os, "getuid", lambda: "user")()
        base = Path(tempfile.gettempdir()) / f"ci-shark-{user}"
        private_directory(base)
        return private_directory(base / _safe_name(self.job_key()))

    def job_key(self) -> str:
        """What tells this job from another of the same user: the CI's job id; on an
        unknown CI a known job variable, else the login session (a CI that names no job
        runs each job in a session of its own)."""
        names = (self.job_id_variable,) if self.job_id_variable else GENERIC_JOB_VARIABLES
        for name in names:
            if name and (job := env_value(self.env, name)):
                return job
        getsid = getattr(os, "getsid", None)
        return f"session-{getsid(0)}" if getsid else "session"

    def file_format(self) -> str:
        """Every format leaves a credentials file for the job's later commands (`request`,
        `refresh`, `revoke` in a new shell): dotenv when asked for, else JSON."""
        return "dotenv" if self.output_format() == "dotenv" else "json"

    def output_path(self) -> Path:
        """Where the credentials file goes: `output-file`, else the job's private folder."""
        if self.settings.output_file:
            return Path(self.settings.output_file)
        return self.state_directory() / DEFAULT_OUTPUT_FILES[self.file_format()]

    def check_outputs(self) -> None:
        """Before a device code exists: every place the outputs go can be written. An
        earlier login's tokens there are about to be replaced: said now, while they can
        still be revoked."""
        output = self.output_path()
        check_writable(output, what="`output-file`")
        if holds_tokens(output):
            self.warn(
                f"{output} holds the credentials of an earlier login, which this one "
                "replaces: `ci-shark revoke` ends them first (else they live until they expire)"
            )

    def export(self, credentials: Credentials) -> Credentials:
        """Write the outputs: files all or none, then (for `shell`) stdout for `eval`.

        Returns the credentials as exported (with the key file's path)."""
        plan = self.plan_export(credentials)
        credentials, planned = plan.credentials, list(plan.files)
        values = credentials.named()
        planned.append(PlannedFile(plan.output, RENDERERS[self.file_format()](values)))
        self.write_files(planned, plan.key_path)
        self.credentials_file = plan.output
        for path in planned:
            self.log(f"ci_shark: wrote {path.path} (mode 0600)")
        if self.output_format() == "shell":
            self.stdout.write(RENDERERS["shell"](values))
            self.stdout.flush()
        return credentials

    def export_refreshed(self, values: Mapping[str, Value], *, print_exports: bool = False) -> None:
        """After `refresh` saved the new tokens in the credentials file (they are safe there
        whatever fails here): the ways out a CI has besides the file, and exports on stdout
        only when the command line asked for them (stdout may be an API's answer or a job
        log)."""
        if print_exports:
            self.stdout.write(RENDERERS["shell"](values))
            self.stdout.flush()

    def plan_export(self, credentials: Credentials) -> ExportPlan:
        """Where an export writes, decided once: the credentials file, and the DPoP key
        file beside it (its path recorded in the credentials)."""
        output = self.output_path()
        if credentials.dpop_key is None:
            return ExportPlan(replace(credentials, dpop_key_file=None), (), None, output)
        key_path = new_key_file_path(output.parent)
        return ExportPlan(
            replace(credentials, dpop_key_file=str(key_path)),
            (PlannedFile(key_path, credentials.dpop_key.private_pem()),),
            key_path,
            output,
        )

    @staticmethod
    def write_files(planned: list[PlannedFile], key_path: Path | None) -> None:
        try:
            write_all(planned)
        except BaseException:
            if key_path is not None:
                with suppress(OSError):
                    key_path.unlink()
            raise


@dataclass(frozen=True)
class ExportPlan:
    credentials: Credentials  # with the key file's path
    files: tuple[PlannedFile, ...]  # the key file, if any
    key_path: Path | None
    output: Path  # the credentials file


def user_state_home(env: Mapping[str, str]) -> Path:
    """The XDG Base Directory state home: ``$XDG_STATE_HOME`` when absolute (the spec
    ignores a relative one), else ``~/.local/state``; created (0700) when missing."""
    given, home = Path(env.get("XDG_STATE_HOME", "")), Path(env.get("HOME", ""))
    try:
        if given.is_absolute():
            folder = given
        else:
            folder = (home if home.is_absolute() else Path.home()) / ".local" / "state"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (OSError, RuntimeError) as exc:  # RuntimeError: Path.home() found no home
        raise ConfigError(
            f"no folder for the credentials: {getattr(exc, 'filename', None) or 'no home'}: "
            f"{getattr(exc, 'strerror', None) or exc}",
            hint="set XDG_STATE_HOME to a folder you own, or set `output-file`",
        ) from None
    return folder


def holds_tokens(path: Path) -> bool:
    """Whether ``path`` is a credentials file with a token in it."""
    try:
        values = read_credentials(path) if path.is_file() else {}
    except ConfigError:
        return False
    return any(values.get(name, "").strip() for name in TOKEN_NAMES)


def _safe_name(text: str) -> str:
    """A folder name from a CI's job id: letters, digits, - and _ only (never "..")."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_" for ch in text)[:64]
