"""The GitHub path against the real server: entrypoint.py under a simulated runner.

The runner's files and the fake REST API come from tests/support/github_fakes.py
(one implementation of the runner's rules, shared, not copied); this module starts
entrypoint.py the way action.yml does, with the CI_SHARK_* inputs pointing at
the real oidc-provider, and reads the approval link from the posted PR comment.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from oidc_peer import CLIENT_ID, LINK, REPO_ROOT, SCOPE, USER_CODE, ProviderServer
from support.cli import CliJob, job_env
from support.github_fakes import FakeGitHubApi, RunnerFiles, fake_github_api, pull_request_payload

ENTRYPOINT = REPO_ROOT / "entrypoint.py"
GITHUB_TOKEN = "ghs_interop_token_5e5e5e5e"
PR_NUMBER = 7


@contextmanager
def github_step(
    provider: ProviderServer, tmp: Path, **inputs: str
) -> Iterator[tuple[CliJob, RunnerFiles, FakeGitHubApi]]:
    """(job, runner files, fake API) for one run of the action's step on a PR."""
    files = RunnerFiles.create(tmp, pull_request_payload(PR_NUMBER))
    with fake_github_api(token=GITHUB_TOKEN) as api:
        env = job_env(tmp)
        env.pop("PYTHONPATH", None)  # entrypoint.py finds ci_shark beside itself
        env.update(files.env(event_name="pull_request", api_url=api.url))
        env.update(
            {
                "CI_SHARK_AUTH_URL": provider.issuer,
                "CI_SHARK_CLIENT_ID": CLIENT_ID,
                "CI_SHARK_SCOPE": SCOPE,
                "CI_SHARK_TIMEOUT": "60",
                "CI_SHARK_GITHUB_TOKEN": GITHUB_TOKEN,
                # action.yml passes every input, "" when unset
                "CI_SHARK_CLIENT_SECRET": "",
                "CI_SHARK_RESOURCE": "",
                "CI_SHARK_NOTIFY": "",
                "CI_SHARK_ALLOW_FORK": "",
                "CI_SHARK_EXPORT_ENV": "",
                **inputs,
            }
        )
        with CliJob([], env, cwd=tmp, command=[sys.executable, str(ENTRYPOINT)]) as job:
            yield job, files, api


def link_from_pr_comment(
    api: FakeGitHubApi, job: CliJob, timeout_s: float = 20
) -> tuple[str, str, str]:
    """(link, user code, comment body) from the comment the step posted on the PR."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for comment in api.comments_on(PR_NUMBER):
            body = comment["body"]
            links = LINK.findall(body)
            codes = USER_CODE.findall(_unescape_markdown(body))
            if links and codes:
                complete = [link for link in links if "user_code=" in link]
                return (complete or links)[0], codes[0], body
        if job.process.poll() is not None:
            break
        time.sleep(0.1)
    comments = [comment["body"] for comment in api.comments_on(PR_NUMBER)]
    raise AssertionError(f"no approval link in the PR comments {comments}\n{job.transcript()}")


def _unescape_markdown(text: str) -> str:
    return re.sub(r"\\([\\`*_{}\[\]()#+\-.!|<>~])", r"\1", text)
