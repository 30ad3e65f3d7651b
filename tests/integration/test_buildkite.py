"""`python -m ci_shark` as a Buildkite step runs it: a fake ``buildkite-agent`` on PATH records
every call (redactor, annotations), the loopback sandbox approves after about a second."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from support.cli import clean_env, run_cli
from support.job_outputs import dotenv, job_folder, secrets_of

from ci_shark.sandbox import SandboxServer

SandboxFactory = Callable[..., SandboxServer]


def test_buildkite_registers_every_secret_and_annotates(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "agent-calls.jsonl"
    agent = bin_dir / "buildkite-agent"
    agent.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"with open({str(calls)!r}, 'a') as log:\n"
        "    log.write(json.dumps({'argv': sys.argv[1:], 'stdin': sys.stdin.read()}) + '\\n')\n"
    )
    agent.chmod(0o755)
    sandbox = sandbox_factory(approve_after_s=1)
    env = clean_env(
        {
            "BUILDKITE": "true",
            "BUILDKITE_JOB_ID": "0190-job",
            "BUILDKITE_ORGANIZATION_SLUG": "acme",
            "BUILDKITE_PIPELINE_SLUG": "deploy",
            "BUILDKITE_LABEL": "ship",
            "BUILDKITE_PULL_REQUEST": "false",
            "CI_SHARK_AUTH_URL": sandbox.url,
            "CI_SHARK_CLIENT_ID": "ci-shark-test",
            "TMPDIR": str(tmp_path),
        }
    )
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    done = run_cli([], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    recorded = [json.loads(line) for line in calls.read_text().splitlines()]
    redacted = [call["stdin"] for call in recorded if call["argv"] == ["redactor", "add"]]
    annotations = [call for call in recorded if call["argv"][0] == "annotate"]
    values = dotenv(job_folder(tmp_path, "0190-job") / "ci-shark.env")
    for secret in secrets_of(values):
        assert secret in redacted
        assert secret not in done.stderr
    assert len(redacted) >= 5  # device code, access, refresh, PEM (+ lines), JWK
    assert len(annotations) == 2
    first_annotation = recorded.index(annotations[0])
    first_redaction = next(i for i, call in enumerate(recorded) if call["argv"][0] == "redactor")
    assert first_redaction < first_annotation  # the device code is registered before the link
    assert "Approved" in annotations[1]["stdin"]
    every_argv = " ".join(" ".join(call["argv"]) for call in recorded)
    for secret in secrets_of(values):
        assert secret not in every_argv


def test_buildkite_without_agent_falls_back_with_a_warning(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = sandbox_factory(approve_after_s=1)
    env = clean_env(
        {
            "BUILDKITE": "true",
            "BUILDKITE_JOB_ID": "0190-job",
            "CI_SHARK_AUTH_URL": sandbox.url,
            "CI_SHARK_CLIENT_ID": "ci-shark-test",
            "TMPDIR": str(tmp_path),
            "PATH": "/usr/bin:/bin",
        }
    )
    done = run_cli([], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("buildkite-agent is not on PATH") == 1
    assert dotenv(job_folder(tmp_path, "0190-job") / "ci-shark.env")["SHARK_STATUS"] == "approved"
