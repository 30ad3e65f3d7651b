"""The README's snippets run as written, against the sandbox (issue 13: docs a user can
paste). Only the deployment's own URLs are swapped for the sandbox's; the GitLab guide's
example runs under gitlab-ci-local (tests/engines)."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from support.cli import REPO, clean_env, run_bash, run_process

from ci_shark.sandbox import SandboxServer

SandboxFactory = Callable[..., SandboxServer]
README = (REPO / "README.md").read_text(encoding="utf-8")


def blocks(language: str, containing: str) -> list[str]:
    found = re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)
    return [block for block in found if containing in block]


def at_the_sandbox(text: str, server: SandboxServer) -> str:
    text = text.replace("https://auth.example.com", server.url)
    return re.sub(r"https://api\.example\.com/[\w/.-]*", f"{server.url}/api/echo", text)


def test_the_first_command_names_the_demo_and_the_test_command_exists() -> None:
    (first,) = blocks("sh", "ci-shark demo")
    commands = [line for line in first.splitlines() if line.strip()]
    assert len(commands) == 2  # exactly two set-up commands
    assert commands[1].startswith("./scripts/test")
    assert "python3 -m venv" in commands[0]  # works on a PEP 668 system Python too


def test_use_the_token_runs_as_written(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory(approve_after_s=1)
    (snippet,) = blocks("sh", "trap 'ci-shark revoke' EXIT")
    env = clean_env({"TMPDIR": str(tmp_path)})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # pip's ci-shark
    done = run_bash("set -e\n" + at_the_sandbox(snippet, server), env, cwd=tmp_path)
    assert done.returncode == 0, done.log
    echoed = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert echoed[0]["method"] == "POST"
    assert json.loads(echoed[0]["body"]) == {"ref": "v1.2.3"}
    assert json.loads((tmp_path / "status.json").read_text())["scheme"] == "DPoP"
    assert "revoked the access token" in done.stderr  # the trap ran


def test_the_library_example_runs_as_written(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    (snippet,) = blocks("python", "DeviceFlow(")
    done = run_process([sys.executable, "-c", at_the_sandbox(snippet, server)], clean_env())
    assert done.returncode == 0, done.log
    assert f"Visit: {server.url}/device" in done.stdout
