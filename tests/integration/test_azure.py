"""`python -m ci_shark` as an Azure Pipelines step runs it: the ``##vso`` lines on stdout, the
loopback sandbox approving after about a second."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from support.cli import clean_env, run_cli

from ci_shark.sandbox import SandboxServer

SandboxFactory = Callable[..., SandboxServer]
_VSO = re.compile(r"##vso\[(?P<command>[\w.]+)(?: (?P<props>[^\]]*))?\](?P<message>.*)")


def test_azure_masks_then_sets_variables(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    sandbox = sandbox_factory(approve_after_s=1)
    env = clean_env(
        {
            "TF_BUILD": "True",
            "BUILD_REPOSITORY_NAME": "acme/shop",
            "AGENT_TEMPDIRECTORY": str(tmp_path),
            "CI_SHARK_AUTH_URL": sandbox.url,
            "CI_SHARK_CLIENT_ID": "ci-shark-test",
            "TMPDIR": str(tmp_path),
        }
    )
    done = run_cli([], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    parsed = [(i, _VSO.search(line)) for i, line in enumerate(lines)]
    commands = [(i, m) for i, m in parsed if m]
    assert len(commands) == len(lines)  # stdout carries commands only
    masked_at = {m["message"]: i for i, m in commands if m["command"] == "task.setsecret"}
    variables = {
        dict(p.split("=", 1) for p in (m["props"] or "").split(";"))["variable"]: (i, m)
        for i, m in commands
        if m["command"] == "task.setvariable"
    }
    access_at, access = variables["SHARK_ACCESS_TOKEN"]
    assert "issecret=true" in (access["props"] or "")
    assert masked_at[access["message"]] < access_at  # masked before it is set
    assert "issecret" not in (variables["SHARK_STATUS"][1]["props"] or "")
    assert access["message"] not in done.stderr
    assert any(m["command"] == "task.uploadsummary" for _, m in commands)
    assert "##[group]" in done.stderr
