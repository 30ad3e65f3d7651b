"""Our client as a CI job runs it: ``python -m ci_shark`` in a subprocess.

A CliJob starts the command with a clean, explicit environment (no inherited
CI_SHARK_* / SHARK_* / GitHub variables), drains stdout and stderr on threads
so the child never blocks on a full pipe, finds the approval link in the log,
and is always stopped (terminate, then kill) with bounded waits.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from oidc_peer import REPO_ROOT

# oidc-provider's user codes: base-20 charset, mask ****-****
USER_CODE = re.compile(r"\b[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}\b")
LINK = re.compile(r"https?://127\.0\.0\.1:\d+/device(?:\?user_code=[A-Z0-9-]+)?")
STOP_TIMEOUT_S = 5
ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TZ", "SYSTEMROOT", "TMPDIR")


def job_env(tmp: Path, **values: str) -> dict[str, str]:
    """A minimal environment: nothing of the outer CI leaks into the job."""
    env = {name: os.environ[name] for name in ENV_KEEP if name in os.environ}
    env["HOME"] = str(tmp)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONPATH"] = str(REPO_ROOT)  # the working tree's ci_shark, installed or not
    env["RUNNER_TEMP"] = str(tmp)  # where the key file goes, if the client honours it
    env.update(values)
    return env


class CliJob:
    def __init__(
        self,
        args: list[str],
        env: Mapping[str, str],
        *,
        cwd: Path,
        command: list[str] | None = None,
    ) -> None:
        self.args = args
        self.command = command or [sys.executable, "-m", "ci_shark"]
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [*self.command, *args],
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
            f"$ {' '.join([*self.command[1:], *self.args])}  (exit {rc}, "
            f"{time.monotonic() - self.started:.1f} s)\n"
            f"--- stderr ---\n{self.stderr}--- stdout ---\n{self.stdout}"
        )

    def wait_for_link(
        self,
        timeout_s: float = 20,
        *,
        link: re.Pattern[str] = LINK,
        user_code: re.Pattern[str] = USER_CODE,
    ) -> tuple[str, str]:
        """The approval link and user code, as printed in the job's log (the patterns
        default to oidc-provider's)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                text = "".join(self._err) + "".join(self._out)
                links = link.findall(text)
                codes = user_code.findall(text)
                if links and codes:
                    # prefer verification_uri_complete when the log shows it
                    complete = [found for found in links if "code=" in found]
                    return (complete or links)[0], codes[0]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    break
                self._changed.wait(timeout=min(remaining, 0.5))
        raise AssertionError(f"no approval link in the job's log\n{self.transcript()}")

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


def run_cli(args: list[str], env: Mapping[str, str], *, cwd: Path, timeout_s: float = 30) -> CliJob:
    """Run a short command (proof, revoke) to its end."""
    job = CliJob(args, env, cwd=cwd)
    try:
        job.wait(timeout_s)
    finally:
        job.stop()
    return job


def read_json_outputs(path: Path) -> dict[str, Any]:
    assert path.exists(), f"no output file at {path}"
    mode = path.stat().st_mode & 0o777
    assert mode == 0o600, f"{path} has mode {oct(mode)}, SPEC says 0600"
    return dict(json.loads(path.read_text()))


__all__ = ["REPO_ROOT", "CliJob", "job_env", "read_json_outputs", "run_cli"]
