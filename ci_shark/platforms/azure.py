"""Azure Pipelines: ``##vso`` logging commands for masking, variables, the summary and groups.

The agent acts on a ``##vso[area.action props]message`` line it reads from the step's
output. Each secret is registered with ``task.setsecret`` (one command per line of a
multi-line value) before anything else happens, and the exports become pipeline variables
with ``task.setvariable`` (``issecret=true`` for the secret ones: later steps must map them
into ``env:`` explicitly, which Azure requires for secret variables).

Untrusted text never builds a command: names and properties are ours, and every message
is escaped the way the agent unescapes it (``%`` as ``%AZP25``, CR and LF as ``%0D`` /
``%0A``), so a value can neither end the line nor smuggle in a second command. Server text
in our own log lines has already passed through ``untrusted``, which breaks up ``##``.

Commands go to stdout, where the agent documents it reads them. With ``--output-format
shell`` stdout belongs to ``eval``, so they go to stderr instead (the agent reads both).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, TextIO

from ci_shark.outputs import Credentials, Value, reveal
from ci_shark.platforms.base import Platform
from ci_shark.platforms.channels import Channel, Registered
from ci_shark.platforms.common import env_value
from ci_shark.render import ApprovalRequest, Outcome, RunContext, outcome_markdown
from ci_shark.safe_text import untrusted
from ci_shark.secret import Secret


def escape_data(text: str) -> str:
    """A ``##vso`` message: the agent turns these back into ``%``, CR and LF."""
    return text.replace("%", "%AZP25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A ``##vso`` property value: also ``;`` (property separator) and ``]`` (end)."""
    return escape_data(text).replace(";", "%3B").replace("]", "%5D")


def vso(command: str, message: str = "", **properties: str) -> str:
    props = ";".join(f"{key}={escape_property(value)}" for key, value in properties.items())
    return f"##vso[{command}{' ' + props if props else ''}]{escape_data(message)}"


class AzurePlatform(Platform):
    name: ClassVar[str] = "azure"
    title: ClassVar[str] = "Azure Pipelines"
    ci_identity: ClassVar[str | None] = "azure"
    auto_channels: ClassVar[tuple[str, ...]] = ("log", "summary")
    own_channels: ClassVar[dict[str, Registered]] = {
        "summary": Registered("ci_shark.platforms.azure", "build_summary"),
    }
    job_id_variable: ClassVar[str | None] = "SYSTEM_JOBID"

    def init_state(self) -> None:
        self._group_open = False

    def state_directory(self) -> Path:
        """Agent.TempDirectory: emptied after every job, the right home for our files."""
        agent_temp = env_value(self.env, "AGENT_TEMPDIRECTORY")
        if agent_temp and Path(agent_temp).is_dir():
            return Path(agent_temp)
        return super().state_directory()

    # -- what the run is -------------------------------------------------------------------

    def context(self) -> RunContext:
        env = self.env
        collection, project, build_id = (
            env_value(env, "SYSTEM_COLLECTIONURI"),
            env_value(env, "SYSTEM_TEAMPROJECT"),
            env_value(env, "BUILD_BUILDID"),
        )
        run_url = None
        if collection and project and build_id and build_id.isdigit():
            run_url = f"{collection.rstrip('/')}/{project}/_build/results?buildId={build_id}"
        pull_request = env_value(env, "SYSTEM_PULLREQUEST_PULLREQUESTNUMBER") or env_value(
            env, "SYSTEM_PULLREQUEST_PULLREQUESTID"
        )
        is_fork = env.get("SYSTEM_PULLREQUEST_ISFORK", "").lower() == "true"
        return RunContext(
            platform=self.name,
            repository=env_value(env, "BUILD_REPOSITORY_NAME"),
            workflow=env_value(env, "BUILD_DEFINITIONNAME"),
            job=env_value(env, "SYSTEM_JOBDISPLAYNAME") or env_value(env, "AGENT_JOBNAME"),
            run_url=run_url,
            run_attempt=env_value(env, "SYSTEM_JOBATTEMPT"),
            commit=env_value(env, "BUILD_SOURCEVERSION"),
            actor=env_value(env, "BUILD_REQUESTEDFOR"),
            change_request=f"PR #{pull_request}" if pull_request else None,
            is_fork=is_fork,
            fork_source=env_value(env, "SYSTEM_PULLREQUEST_SOURCEREPOSITORYURI")
            if is_fork
            else None,
        )

    # -- the log ---------------------------------------------------------------------------

    def command_stream(self) -> TextIO:
        """``##vso`` lines go to stdout when it is free: a login without ``shell``; else
        stderr, which the agent reads too (stdout is an ``eval``'s, or an API's answer)."""
        free = self.stdout_is_free and self.output_format() != "shell"
        return self.stdout if free else self.stderr

    def command(self, line: str) -> None:
        self.writer.command(line)

    def warn(self, message: str) -> None:
        self.command(vso("task.logissue", untrusted(message, 2000), type="warning"))

    def error(self, message: str) -> None:
        self.command(vso("task.logissue", untrusted(message, 2000), type="error"))

    def register_secret(self, piece: str) -> None:
        self.command(vso("task.setsecret", piece))

    # -- the approval ----------------------------------------------------------------------

    def announce(self, request: ApprovalRequest) -> None:
        super().announce(request)  # the link stays outside the group, always visible
        self.writer.command("##[group]ci_shark: waiting for approval", among_lines=True)
        self._group_open = True

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        if self._group_open:
            self._group_open = False
            self.writer.command("##[endgroup]", among_lines=True)
        super().finish(outcome, request)

    # -- outputs ---------------------------------------------------------------------------

    def export(self, credentials: Credentials) -> Credentials:
        """The files (dotenv/json/key, or stdout for `shell`) first, all or none; then every
        ``SHARK_*`` as a pipeline variable for the later steps of this job."""
        exported = super().export(credentials)
        self._set_variables(exported.named())
        return exported

    def export_refreshed(self, values: Mapping[str, Value], *, print_exports: bool = False) -> None:
        super().export_refreshed(values, print_exports=print_exports)
        self._set_variables(values)

    def _set_variables(self, values: Mapping[str, Value]) -> None:
        for name, value in values.items():
            text = reveal(value)
            if "\n" in text or "\r" in text:
                continue  # the named outputs are single-line; never split a secret
            if isinstance(value, Secret):
                self.command(vso("task.setvariable", text, variable=name, issecret="true"))
            else:
                self.command(vso("task.setvariable", text, variable=name))


def build_summary(platform: AzurePlatform) -> Channel:
    return BuildSummary(platform)


class BuildSummary(Channel):
    """`notify: summary`: the outcome as a markdown file the agent uploads to the build's
    summary. Only the outcome: the summary shows once the step is over."""

    def __init__(self, platform: AzurePlatform) -> None:
        self._platform = platform

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        platform = self._platform
        directory = env_value(platform.env, "AGENT_TEMPDIRECTORY") or tempfile.gettempdir()
        try:
            handle, name = tempfile.mkstemp(dir=directory, prefix="ci-shark-summary-", suffix=".md")
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(outcome_markdown(outcome, request))
        except OSError as exc:
            platform.log(f"ci_shark: no build summary: could not write it ({exc.strerror})")
            return
        platform.command(vso("task.uploadsummary", str(Path(name).resolve())))
