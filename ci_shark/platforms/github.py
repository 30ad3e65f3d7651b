"""GitHub Actions: what is the runner's own — workflow commands in the log, the run's facts,
the step outputs. Where the approver hears about it are channels of their own:
the job summary (:mod:`.github_summary`), the PR comment (:mod:`.github_comment`) and the
issue (:mod:`.github_issue`).

What the runner does with what we write (actions/runner, checked against its source):

- It parses workflow commands on stdout *and* stderr, each stream on its own reader, so
  their relative order is not guaranteed. Everything this platform prints (commands and
  log lines) therefore goes to one stream, stderr, where the CLI's error messages go too:
  ``::add-mask::`` is always read before any later line, and stdout stays free for
  ``--output-format shell`` (whose stdout an ``eval "$(...)"`` captures, hiding anything
  printed there from the runner). :mod:`.github_outputs` has the commands' rules.
- ``GITHUB_OUTPUT`` / ``GITHUB_ENV`` are read after the step exits; the `status` output is
  written on every way out, the others all or none after approval.

The run's facts and which events may carry a pull request's code are
:mod:`.github_run`'s. Anything from the event payload or the authorization server is
untrusted: it reaches markdown through :mod:`ci_shark.render` only, and the log through
the log writer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import suppress
from pathlib import Path
from typing import ClassVar

from ci_shark.errors import ConfigError
from ci_shark.outputs import RENDERERS, Credentials, PlannedFile, Value
from ci_shark.platforms.base import Platform
from ci_shark.platforms.channels import Registered
from ci_shark.platforms.common import env_value
from ci_shark.platforms.github_api import dig
from ci_shark.platforms.github_outputs import (
    STEP_FILES,
    append,
    append_all,
    command_text,
    escape_command_data,
    render_file_commands,
    step_outputs,
)
from ci_shark.platforms.github_run import PR_EVENTS, GitHubRun
from ci_shark.render import ApprovalRequest, Outcome, RunContext


class GitHubPlatform(Platform):
    """GitHub Actions, detected by ``GITHUB_ACTIONS=true``."""

    name: ClassVar[str] = "github"
    title: ClassVar[str] = "GitHub"
    ci_identity: ClassVar[str | None] = "github"
    auto_channels: ClassVar[tuple[str, ...]] = ("log", "summary", "comment")
    own_channels: ClassVar[dict[str, Registered]] = {
        "summary": Registered("ci_shark.platforms.github_summary", "step_summary"),
        "comment": Registered("ci_shark.platforms.github_comment", "pull_request_comment"),
        "issue": Registered("ci_shark.platforms.github_issue", "run_issue"),
    }

    def init_state(self) -> None:
        self.run = GitHubRun(
            self.env,
            self.settings.github_token,
            self.transport,
            warn=self.warn,
            log=self.log,
            mask=self.mask,
        )

    # -- the log: stderr, commands at a line start -----------------------------------------

    def warn(self, message: str) -> None:
        self.writer.command(f"::warning title=ci_shark::{command_text(message)}")

    def error(self, message: str) -> None:
        self.writer.command(f"::error title=ci_shark::{command_text(message)}")

    def register_secret(self, piece: str) -> None:
        self.writer.command(f"::add-mask::{escape_command_data(piece)}")

    def leave_the_step(self) -> None:
        """Also the step's files: the runner read them when the step ended, and deletes
        them as the next one starts. Written now, one is made anew (0644), with whatever a
        refresh saves in it (the tokens), and nobody reads it: none is written."""
        super().leave_the_step()
        self.env = {name: value for name, value in self.env.items() if name not in STEP_FILES}

    # -- what the run is -------------------------------------------------------------------

    def context(self) -> RunContext:
        env, run = self.env, self.run
        pr = run.event_pull_request
        run_id = run.run_id()
        commit = dig(run.payload, "pull_request", "head", "sha") if run.event in PR_EVENTS else None
        fork = pr is not None and pr.is_fork
        return RunContext(
            platform=self.name,
            repository=run.repository or None,
            workflow=env_value(env, "GITHUB_WORKFLOW"),
            job=env_value(env, "GITHUB_JOB"),
            job_variant=matrix_leg(env.get("CI_SHARK_MATRIX")),
            run_url=(
                f"{run.server_url}/{run.repository}/actions/runs/{run_id}"
                if run_id and run.repository
                else None
            ),
            run_attempt=env_value(env, "GITHUB_RUN_ATTEMPT"),
            commit=commit if isinstance(commit, str) else env_value(env, "GITHUB_SHA"),
            actor=env_value(env, "GITHUB_TRIGGERING_ACTOR") or env_value(env, "GITHUB_ACTOR"),
            change_request=f"PR #{pr.number}" if pr and pr.number > 0 else None,
            change_request_url=run.pull_request_url(pr),
            is_fork=fork,
            public=dig(run.payload, "repository", "private") is False
            or dig(run.payload, "repository", "visibility") == "public",
            fork_source=pr.head_repo if pr and fork else None,
            fork_doubt=pr.doubt if pr and fork else None,
        )

    # -- how the run ended -----------------------------------------------------------------

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        """The `status` output, the channels, and an annotation on the run page when the
        run failed (the CLI prints the fix on stderr). Never raises."""
        try:
            if path := self.env.get("GITHUB_OUTPUT"):
                append(path, f"status={outcome.status}\n")
        except OSError as exc:
            self.warn(f"could not write the `status` output: {exc.strerror}")
        super().finish(outcome, request)
        if outcome.status not in ("approved", "cancelled"):
            self.error(f"{outcome.status}: {outcome.message}")
        self.run.close()

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
            append_all(self.env, texts)
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

    def export_refreshed(self, values: Mapping[str, Value], *, print_exports: bool = False) -> None:
        """This step's outputs. Not GITHUB_ENV: that would hand every later step
        (third-party actions too) the refresh token and the key; `ci-shark` reads the
        file, and export-env's variables keep the login's values."""
        outputs = render_file_commands(step_outputs(values))
        super().export_refreshed(values, print_exports=print_exports)
        if self.env.get("GITHUB_OUTPUT"):
            append_all(self.env, {"GITHUB_OUTPUT": outputs})


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
