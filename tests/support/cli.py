"""The CLI as a CI job runs it: a separate process, no stdin, a clean environment, bounded.

Every test that starts ci_shark does it through here, with one argv (:func:`cli_argv`) and one
environment (:func:`clean_env`): :func:`run_cli` / :func:`run_process` run a step to its end;
a :class:`CliJob` streams one that the test must act on while it runs (approve, signal it,
read the link from its log).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar

from ci_shark.sandbox import SandboxServer

REPO = Path(__file__).resolve().parents[2]
# Variables that would make a subprocess think it runs on a CI platform, or configure it.
_PLATFORM_MARKERS = ("GITHUB_", "GITLAB_", "CI_", "BUILDKITE", "TF_BUILD", "RUNNER_", "SHARK_")
STOP_TIMEOUT_S = 5
T = TypeVar("T")


def cli_argv(*args: str) -> list[str]:
    """``python -m ci_shark ARGS`` with this interpreter (the working tree's ci_shark)."""
    return [sys.executable, "-m", "ci_shark", *args]


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


def job_env(home: Path, **values: str) -> dict[str, str]:
    """:func:`clean_env` for a job with its own home and runner temp dir (the key file goes
    there), unbuffered so a :class:`CliJob` sees each line as it is printed."""
    return clean_env(
        {
            "HOME": str(home),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "RUNNER_TEMP": str(home),
            **values,
        }
    )


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
    """``python -m ci_shark ARGS`` to its end."""
    return run_process(cli_argv(*args), env, cwd=cwd, timeout_s=timeout_s)


def run_bash(
    script: str, env: Mapping[str, str], *, cwd: Path | None = None, timeout_s: float = 60
) -> CliResult:
    """A CI job's script step: ``bash -c SCRIPT``."""
    return run_process(["bash", "-c", script], env, cwd=cwd, timeout_s=timeout_s)


def run_cli_twice_at_once(
    args: list[str], env: Mapping[str, str], *, cwd: Path, timeout_s: float = 60
) -> list[CliResult]:
    """``python -m ci_shark ARGS`` in two processes started together, as two steps (or a
    step's two tools) racing for the same credentials; both to their end."""
    processes = [
        subprocess.Popen(
            cli_argv(*args),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        outputs = [process.communicate(timeout=timeout_s) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [
        CliResult(process.returncode, out, err)
        for process, (out, err) in zip(processes, outputs, strict=True)
    ]


class CliJob:
    """``python -m ci_shark ARGS`` (or ``command``) running while the test acts on it.

    stdout and stderr are drained on threads so the child never blocks on a full pipe; every
    wait has a deadline; leaving the ``with`` block stops it (terminate, then kill).
    """

    def __init__(
        self,
        args: list[str],
        env: Mapping[str, str],
        *,
        cwd: Path | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.argv = [*(command or cli_argv()), *args]
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(
                target=self._drain, args=(self.process.stdout, self._out), daemon=True
            ),
            threading.Thread(
                target=self._drain, args=(self.process.stderr, self._err), daemon=True
            ),
        ]
        for reader in self._readers:
            reader.start()

    def _drain(self, stream: IO[str], into: list[str]) -> None:
        for line in stream:
            with self._changed:
                into.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def stdout(self) -> str:
        with self._lock:
            return "".join(self._out)

    @property
    def stderr(self) -> str:
        with self._lock:
            return "".join(self._err)

    def transcript(self) -> str:
        rc = self.process.poll()
        return (
            f"$ {' '.join(self.argv[1:])}  (exit {rc}, "
            f"{time.monotonic() - self.started:.1f} s)\n"
            f"--- stderr ---\n{self.stderr}--- stdout ---\n{self.stdout}"
        )

    def wait_for(
        self, pattern: re.Pattern[str], timeout_s: float = 20, *, stderr_only: bool = False
    ) -> re.Match[str]:
        """The first match of ``pattern`` in stderr (searched first) or stdout, as soon as
        the job prints it; an AssertionError with the transcript if it never does."""

        def find(err: str, out: str) -> re.Match[str] | None:
            return pattern.search(err) or (None if stderr_only else pattern.search(out))

        found = self._watch(find, timeout_s)
        if found is None:
            raise AssertionError(f"{pattern.pattern!r} not in the job's log\n{self.transcript()}")
        return found

    def wait_for_link(
        self, *, link: re.Pattern[str], user_code: re.Pattern[str], timeout_s: float = 20
    ) -> tuple[str, str]:
        """The approval link and user code, as printed in the job's log (the patterns are
        the server's: each peer spells its links and codes its own way)."""

        def find(err: str, out: str) -> tuple[str, str] | None:
            links, codes = link.findall(err + out), user_code.findall(err + out)
            if not (links and codes):
                return None
            # prefer verification_uri_complete when the log shows it
            complete = [found for found in links if "code=" in found]
            return (complete or links)[0], codes[0]

        found = self._watch(find, timeout_s)
        if found is None:
            raise AssertionError(f"no approval link in the job's log\n{self.transcript()}")
        return found

    def _watch(self, find: Callable[[str, str], T | None], timeout_s: float) -> T | None:
        """``find(stderr, stdout)`` each time the job prints, until it finds something, the
        deadline passes, or the job has ended and everything it printed has been read."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                found = find("".join(self._err), "".join(self._out))
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                drained = not any(reader.is_alive() for reader in self._readers)
                if remaining <= 0 or (drained and self.process.poll() is not None):
                    return None
                self._changed.wait(timeout=min(remaining, 0.5))

    def wait(self, timeout_s: float = 60) -> int:
        try:
            rc = self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"the job did not finish in {timeout_s} s\n{self.transcript()}"
            ) from None
        for reader in self._readers:
            reader.join(timeout=STOP_TIMEOUT_S)
        return rc

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        for reader in self._readers:
            reader.join(timeout=STOP_TIMEOUT_S)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> CliJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
