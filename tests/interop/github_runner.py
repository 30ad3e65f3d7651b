"""The GitHub path against the real server: entrypoint.py under a simulated runner.

The runner's files and the fake REST API come from tests/integration/github_fakes.py
(one implementation of the runner's rules, shared, not copied); this module starts
entrypoint.py the way action.yml does, with the CI_SHARK_* inputs pointing at
the real oidc-provider, and reads the approval link from the posted PR comment.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from cli_job import LINK, USER_CODE, CliJob, job_env
from oidc_peer import CLIENT_ID, REPO_ROOT, SCOPE, ProviderServer

ENTRYPOINT = REPO_ROOT / "entrypoint.py"
GITHUB_TOKEN = "ghs_interop_token_5e5e5e5e"
PR_NUMBER = 7


def github_fakes() -> ModuleType:
    """tests/integration/github_fakes.py, under its own module name (as pytest loads it)."""
    loaded = sys.modules.get("github_fakes")
    if loaded is not None:
        return loaded
    path = REPO_ROOT / "tests" / "integration" / "github_fakes.py"
    spec = importlib.util.spec_from_file_location("github_fakes", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["github_fakes"] = module
    spec.loader.exec_module(module)
    return module


@contextmanager
def github_step(
    provider: ProviderServer, tmp: Path, **inputs: str
) -> Iterator[tuple[CliJob, Any, Any]]:
    """(job, runner files, fake API) for one run of the action's step on a PR."""
    fakes = github_fakes()
    files = fakes.RunnerFiles.create(tmp, fakes.pull_request_payload(PR_NUMBER))
    with fakes.fake_github_api(token=GITHUB_TOKEN) as api:
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


def link_from_pr_comment(api: Any, job: CliJob, timeout_s: float = 20) -> tuple[str, str, str]:
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
