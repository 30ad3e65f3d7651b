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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar, TextIO

from ci_shark.errors import untrusted
from ci_shark.outputs import Credentials, reveal
from ci_shark.render import ApprovalRequest, Outcome, RunContext, outcome_markdown
from ci_shark.secret import Secret

from .base import Platform

SECRET_OUTPUTS = frozenset(
    {"SHARK_ACCESS_TOKEN", "SHARK_REFRESH_TOKEN", "SHARK_ID_TOKEN", "SHARK_DPOP_JWK"}
)


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
    auto_channels: ClassVar[tuple[str, ...]] = ("log", "summary")

    def init_state(self) -> None:
        self._group_open = False
        # Agent.TempDirectory is emptied after every job: the right home for the key file.
        agent_temp = _value(self.env, "AGENT_TEMPDIRECTORY")
        if agent_temp and Path(agent_temp).is_dir():
            self.key_directory = Path(agent_temp)

    # -- what the run is -------------------------------------------------------------------

    def context(self) -> RunContext:
        env = self.env
        collection, project, build_id = (
            _value(env, "SYSTEM_COLLECTIONURI"),
            _value(env, "SYSTEM_TEAMPROJECT"),
            _value(env, "BUILD_BUILDID"),
        )
        run_url = None
        if collection and project and build_id and build_id.isdigit():
            run_url = f"{collection.rstrip('/')}/{project}/_build/results?buildId={build_id}"
        pull_request = _value(env, "SYSTEM_PULLREQUEST_PULLREQUESTNUMBER") or _value(
            env, "SYSTEM_PULLREQUEST_PULLREQUESTID"
        )
        is_fork = env.get("SYSTEM_PULLREQUEST_ISFORK", "").lower() == "true"
        return RunContext(
            platform=self.name,
            repository=_value(env, "BUILD_REPOSITORY_NAME"),
            workflow=_value(env, "BUILD_DEFINITIONNAME"),
            job=_value(env, "SYSTEM_JOBDISPLAYNAME") or _value(env, "AGENT_JOBNAME"),
            run_url=run_url,
            run_attempt=_value(env, "SYSTEM_JOBATTEMPT"),
            commit=_value(env, "BUILD_SOURCEVERSION"),
            actor=_value(env, "BUILD_REQUESTEDFOR"),
            event=_value(env, "BUILD_REASON"),
            change_request=f"PR #{pull_request}" if pull_request else None,
            is_fork=is_fork,
            fork_source=_value(env, "SYSTEM_PULLREQUEST_SOURCEREPOSITORYURI") if is_fork else None,
        )

    # -- the log ---------------------------------------------------------------------------

    @property
    def commands(self) -> TextIO:
        """Where ``##vso`` lines go: stdout, unless stdout is reserved for ``eval``."""
        return self.stderr if self.output_format() == "shell" else self.stdout

    def command(self, line: str) -> None:
        print(line, file=self.commands, flush=True)

    def warn(self, message: str) -> None:
        self.command(vso("task.logissue", untrusted(message, 2000), type="warning"))

    def error(self, message: str) -> None:
        self.command(vso("task.logissue", untrusted(message, 2000), type="error"))

    def mask(self, secrets: Sequence[Secret]) -> None:
        """``task.setsecret`` for each value, and for each line of a multi-line one (the
        agent masks whole values; a PEM printed line by line needs each line)."""
        for secret in secrets:
            value = secret.reveal()
            pieces = [value] if "\n" not in value.strip() else value.splitlines()
            for piece in pieces:
                if piece.strip():
                    self.command(vso("task.setsecret", piece))

    # -- the approval ----------------------------------------------------------------------

    def announce(self, request: ApprovalRequest) -> None:
        super().announce(request)  # the link stays outside the group, always visible
        print("##[group]ci_shark: waiting for approval", file=self.stderr, flush=True)
        self._group_open = True

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        if self._group_open:
            self._group_open = False
            print("##[endgroup]", file=self.stderr, flush=True)
        super().finish(outcome, request)
        if "summary" in self.channels:
            self._upload_summary(outcome_markdown(outcome, request))

    def _upload_summary(self, markdown: str) -> None:
        directory = _value(self.env, "AGENT_TEMPDIRECTORY") or tempfile.gettempdir()
        try:
            handle, name = tempfile.mkstemp(dir=directory, prefix="ci-shark-summary-", suffix=".md")
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(markdown)
        except OSError as exc:
            self.log(f"ci_shark: no build summary: could not write it ({exc.strerror})")
            return
        self.command(vso("task.uploadsummary", str(Path(name).resolve())))

    # -- outputs ---------------------------------------------------------------------------

    def export(self, credentials: Credentials) -> Credentials:
        """The files (dotenv/json/key, or stdout for `shell`) first, all or none; then every
        ``SHARK_*`` as a pipeline variable for the later steps of this job."""
        exported = super().export(credentials)
        for name, value in exported.named().items():
            text = reveal(value)
            if "\n" in text or "\r" in text:
                continue  # the named outputs are single-line; never split a secret
            if name in SECRET_OUTPUTS:
                self.command(vso("task.setvariable", text, variable=name, issecret="true"))
            else:
                self.command(vso("task.setvariable", text, variable=name))
        return exported


def _value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None
