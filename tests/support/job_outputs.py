"""What a login leaves for the rest of the job: the dotenv or JSON outputs, the key file."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def dotenv(path: Path) -> dict[str, str]:
    """A dotenv file as ci_shark writes it (NAME=value, never quoted)."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def read_json_outputs(path: Path) -> dict[str, Any]:
    """The JSON outputs file, which must be private to the user (0600)."""
    assert path.exists(), f"no output file at {path}"
    mode = path.stat().st_mode & 0o777
    assert mode == 0o600, f"{path} has mode {oct(mode)}, the README says 0600"
    return dict(json.loads(path.read_text()))


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
    as on a CI ci_shark does not know that names no job), under the temp dir (``TMPDIR``)."""
    return temp / f"ci-shark-{os.getuid()}" / (job or f"session-{os.getsid(0)}")


def user_state_folder(env: Mapping[str, str] | None = None) -> Path:
    """Where a login outside CI keeps its files: one folder per user, found again by a new
    terminal (``$XDG_STATE_HOME/ci-shark``; every test has its own XDG_STATE_HOME)."""
    return Path((env or os.environ)["XDG_STATE_HOME"]) / "ci-shark"
