"""GitLab CI: the run's facts (the merge request, forks), collapsible log sections, and
exports that never touch the log. The MR note is a channel of its own
(:mod:`.gitlab_note`).

GitLab cannot mask a value at runtime (only variables defined in the project settings are
masked), so masking is a no-op here and the rule is stronger than elsewhere: no secret is
ever written to the job log. Secrets leave the process only through the 0600 dotenv/json
file or, with ``--output-format shell``, through stdout into ``eval "$(...)"``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from ci_shark.outputs import Credentials
from ci_shark.platforms.base import Platform
from ci_shark.platforms.channels import Registered
from ci_shark.platforms.common import env_value
from ci_shark.render import ApprovalRequest, Outcome, RunContext
from ci_shark.urls import url_problem

WAIT_SECTION = "ci_shark_waiting"
_OPEN_MR = re.compile(r"^(?P<path>[\w.\-/]+)!(?P<iid>\d+)$")
_IID = re.compile(r"^\d{1,12}$")


@dataclass(frozen=True)
class MergeRequest:
    """Where the note goes: the project (numeric id or path) that holds the MR, and its IID."""

    project: str
    iid: str
    url: str | None


class GitLabPlatform(Platform):
    name: ClassVar[str] = "gitlab"
    title: ClassVar[str] = "GitLab"
    ci_identity: ClassVar[str | None] = "gitlab"
    auto_channels: ClassVar[tuple[str, ...]] = ("log", "comment")
    own_channels: ClassVar[dict[str, Registered]] = {
        "comment": Registered("ci_shark.platforms.gitlab_note", "merge_request_note"),
    }
    job_id_variable: ClassVar[str | None] = "CI_JOB_ID"

    def init_state(self) -> None:
        self._section_open = False

    # -- what the run is -------------------------------------------------------------------

    def context(self) -> RunContext:
        env = self.env
        merge_request = find_merge_request(env)
        is_fork, fork_source = self._fork()
        return RunContext(
            platform=self.name,
            repository=env_value(env, "CI_PROJECT_PATH"),
            workflow=env_value(env, "CI_PIPELINE_NAME"),
            job=env_value(env, "CI_JOB_NAME"),
            job_url=env_value(env, "CI_JOB_URL"),
            run_url=env_value(env, "CI_PIPELINE_URL"),
            public=env_value(env, "CI_PROJECT_VISIBILITY") == "public",
            commit=env_value(env, "CI_COMMIT_SHA"),
            actor=env_value(env, "GITLAB_USER_LOGIN"),
            change_request=f"MR !{merge_request.iid}" if merge_request else None,
            change_request_url=merge_request.url if merge_request else None,
            is_fork=is_fork,
            fork_source=fork_source,
        )

    def _fork(self) -> tuple[bool, str | None]:
        """An MR, or an external (GitHub) pull request, from another project. One whose
        source is unknown counts as a fork: refusing is the safe side."""
        env = self.env
        if env_value(env, "CI_MERGE_REQUEST_IID"):
            source = env_value(env, "CI_MERGE_REQUEST_SOURCE_PROJECT_ID")
            if not source or source != env_value(env, "CI_MERGE_REQUEST_PROJECT_ID"):
                return True, env_value(env, "CI_MERGE_REQUEST_SOURCE_PROJECT_PATH")
        if env_value(env, "CI_PIPELINE_SOURCE") == "external_pull_request_event":
            source = env_value(env, "CI_EXTERNAL_PULL_REQUEST_SOURCE_REPOSITORY")
            target = env_value(env, "CI_EXTERNAL_PULL_REQUEST_TARGET_REPOSITORY")
            if not source or source != target:
                return True, source
        return False, None

    # -- the log ---------------------------------------------------------------------------
    # GitLab has no runtime masking (only project/group CI/CD variables are masked): the
    # generic no-op `register_secret` stays, and ci_shark never writes a secret to the log.

    def announce(self, request: ApprovalRequest) -> None:
        super().announce(request)  # the link and the code stay outside the collapsed section
        self._start_section("ci_shark: waiting for approval")

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        self._end_section()
        super().finish(outcome, request)

    def _start_section(self, header: str) -> None:
        # \e[0K clears what the runner may have drawn; the header follows the \r.
        self.writer.command(
            f"\x1b[0Ksection_start:{int(time.time())}:{WAIT_SECTION}[collapsed=true]"
            f"\r\x1b[0K{header}",
            among_lines=True,
        )
        self._section_open = True

    def _end_section(self) -> None:
        if self._section_open:
            self._section_open = False
            self.writer.command(
                f"\x1b[0Ksection_end:{int(time.time())}:{WAIT_SECTION}\r\x1b[0K", among_lines=True
            )

    # -- outputs ---------------------------------------------------------------------------

    def export(self, credentials: Credentials) -> Credentials:
        exported = super().export(credentials)
        if self.output_format() == "dotenv":
            self.log(
                "ci_shark: the dotenv file holds the tokens: as an `artifacts:reports:dotenv` "
                "it is readable by anyone who can read this job's artifacts (see docs/gitlab.md)"
            )
        return exported


def find_merge_request(env: Mapping[str, str]) -> MergeRequest | None:
    """The MR of an MR pipeline, else the first open MR of this branch in this project."""
    iid = env_value(env, "CI_MERGE_REQUEST_IID")
    if iid and _IID.match(iid):
        project = env_value(env, "CI_MERGE_REQUEST_PROJECT_ID") or env_value(
            env, "CI_MERGE_REQUEST_PROJECT_PATH"
        )
        project_url = env_value(env, "CI_MERGE_REQUEST_PROJECT_URL") or env_value(
            env, "CI_PROJECT_URL"
        )
        if project:
            return MergeRequest(project, iid, _mr_url(project_url, iid))
    # Branch pipelines: "group/project!12,other/project!3" (up to four). Only an MR in
    # this very project is used: another project's MR is another project's business.
    project_path = env_value(env, "CI_PROJECT_PATH")
    for item in (env_value(env, "CI_OPEN_MERGE_REQUESTS") or "").split(","):
        match = _OPEN_MR.match(item.strip())
        if match and project_path and match["path"] == project_path:
            project_id = env_value(env, "CI_PROJECT_ID") or project_path
            return MergeRequest(
                project_id,
                match["iid"],
                _mr_url(env_value(env, "CI_PROJECT_URL"), match["iid"]),
            )
    return None


def _mr_url(project_url: str | None, iid: str) -> str | None:
    if not project_url or url_problem(project_url):
        return None
    return f"{project_url.rstrip('/')}/-/merge_requests/{iid}"
