"""Fixtures shared by every test folder: a clean environment and the loopback sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from ci_shark.sandbox import SandboxServer

REPO = Path(__file__).resolve().parent.parent
# Variables that would make a subprocess think it runs on a CI platform, or configure it.
_PLATFORM_MARKERS = ("GITHUB_", "GITLAB_", "CI_", "BUILDKITE", "TF_BUILD", "RUNNER_", "SHARK_")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment minus anything CI- or ci_shark-specific."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_PLATFORM_MARKERS) and name not in ("CI",)
    }
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def login_env(server: SandboxServer, out_dir: Path, **extra: str) -> dict[str, str]:
    """A login against ``server`` writing JSON outputs (and the key file) into ``out_dir``."""
    return clean_env(
        {
            "CI_SHARK_AUTH_URL": server.url,
            "CI_SHARK_CLIENT_ID": "ci-shark-test",
            "CI_SHARK_SCOPE": "openid deploy:write",
            "CI_SHARK_OUTPUT_FORMAT": "json",
            "CI_SHARK_OUTPUT_FILE": str(out_dir / "out.json"),
            "CI_SHARK_TIMEOUT": "30",
            "RUNNER_TEMP": str(out_dir),  # where the key file goes
            **extra,
        }
    )


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def log(self) -> str:
        """Everything a CI log would show of the step."""
        return self.stdout + self.stderr


def run_process(
    argv: list[str],
    env: Mapping[str, str],
    *,
    cwd: Path | None = None,
    timeout_s: float = 60,
    preexec_fn: Callable[[], None] | None = None,
) -> CliResult:
    """One CI step as the runner starts it: a separate process, no stdin, bounded."""
    done = subprocess.run(
        argv,
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
        check=False,
        preexec_fn=preexec_fn,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def run_cli(
    args: list[str], env: Mapping[str, str], *, timeout_s: float = 60, cwd: Path | None = None
) -> CliResult:
    """``python -m ci_shark ARGS``."""
    return run_process([sys.executable, "-m", "ci_shark", *args], env, cwd=cwd, timeout_s=timeout_s)


def run_bash(
    script: str, env: Mapping[str, str], *, cwd: Path | None = None, timeout_s: float = 60
) -> CliResult:
    """A CI job's script step: ``bash -c SCRIPT``."""
    return run_process(["bash", "-c", script], env, cwd=cwd, timeout_s=timeout_s)


def dotenv(path: Path) -> dict[str, str]:
    """A dotenv file as ci_shark writes it (NAME=value, never quoted)."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def secrets_of(values: Mapping[str, str]) -> list[str]:
    """Every secret value a login exported, and each body line of its key file."""
    names = ("SHARK_ACCESS_TOKEN", "SHARK_REFRESH_TOKEN", "SHARK_ID_TOKEN", "SHARK_DPOP_JWK")
    found = [values[name] for name in names if values.get(name)]
    key_file = values.get("SHARK_DPOP_KEY_FILE")
    if key_file:
        found += [line for line in Path(key_file).read_text().splitlines() if "-----" not in line]
    return found


def job_folder(temp: Path, job: str | None = None) -> Path:
    """Where a login with default settings keeps its files on a CI without a per-job temp
    dir: a private folder per user and per job (``job``; by default this login session,
    as on a CI ci_shark does not know), under the temp dir (``TMPDIR``)."""
    return temp / f"ci-shark-{os.getuid()}" / (job or f"session-{os.getsid(0)}")


@pytest.fixture(autouse=True)
def private_temp_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test's own temp dir, for this process and the ones it starts: no test leaves a
    ci-shark folder (a key, tokens) in the machine's temp dir."""
    temp = tmp_path_factory.mktemp("tmp")
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))
    return temp


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., SandboxServer]]:
    """Start sandboxes with any options; every one is stopped after the test."""
    started: list[SandboxServer] = []

    def start(**options: object) -> SandboxServer:
        options.setdefault("interval_s", 1)
        server = SandboxServer(**options).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
