"""What a successful run hands to later steps, and the safe ways to write it down.

Files are created 0600 and moved into place with ``os.replace``, so a reader sees the
whole file or none. A run writes everything or nothing: see :func:`write_all`.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import tempfile
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from ci_shark.errors import ConfigError
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.tokens import TokenSet
from ci_shark.secret import Secret

Value = str | Secret


@dataclass(frozen=True)
class Credentials:
    """The approved token set and the DPoP key that it is bound to."""

    tokens: TokenSet
    dpop_key: DPoPKey | None
    dpop_key_file: str | None = None  # set by the platform when it writes the key
    approver: str | None = None

    def secrets(self) -> list[Secret]:
        """Every secret value, so each can be masked before anything is written."""
        found = [self.tokens.access_token, self.tokens.refresh_token, self.tokens.id_token]
        if self.dpop_key is not None:
            # `d` on its own too: `jq .` on the JWK prints it on a line of its own.
            jwk = self.dpop_key.private_jwk()
            found += [self.dpop_key.private_pem(), jwk, Secret(json.loads(jwk.reveal())["d"])]
        return [secret for secret in found if secret]

    def named(self) -> dict[str, Value]:
        """The ``SHARK_*`` variables of SPEC.md (single-line values only)."""
        tokens = self.tokens
        expires_at = tokens.expires_at
        return {
            "SHARK_ACCESS_TOKEN": tokens.access_token,
            "SHARK_TOKEN_TYPE": tokens.token_type,
            "SHARK_EXPIRES_IN": "" if tokens.expires_in is None else str(tokens.expires_in),
            "SHARK_EXPIRES_AT": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") if expires_at else "",
            "SHARK_SCOPE": tokens.scope or "",
            "SHARK_REFRESH_TOKEN": tokens.refresh_token or "",
            "SHARK_ID_TOKEN": tokens.id_token or "",
            "SHARK_DPOP_JKT": self.dpop_key.jkt if self.dpop_key else "",
            "SHARK_DPOP_JWK": self.dpop_key.private_jwk() if self.dpop_key else "",
            "SHARK_DPOP_KEY_FILE": self.dpop_key_file or "",
            "SHARK_STATUS": "approved",
            "SHARK_APPROVER": self.approver or "",
        }


def reveal(value: Value) -> str:
    return value.reveal() if isinstance(value, Secret) else value


def _one_line(name: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ConfigError(f"{name} has a line break, which this output format cannot carry")
    return value


def render_dotenv(values: Mapping[str, Value]) -> str:
    # Unquoted KEY=value: what GitLab's dotenv artifacts and docker --env-file read.
    return "".join(f"{name}={_one_line(name, reveal(v))}\n" for name, v in values.items())


def render_shell(values: Mapping[str, Value]) -> str:
    return "".join(f"export {name}={shlex.quote(reveal(v))}\n" for name, v in values.items())


def render_json(values: Mapping[str, Value]) -> str:
    return json.dumps({name: reveal(v) for name, v in values.items()}, indent=2) + "\n"


RENDERERS = {"dotenv": render_dotenv, "shell": render_shell, "json": render_json}


def secure_temp_dir() -> Path:
    """Where the key file goes: the runner's per-job temp dir when there is one."""
    runner_temp = os.environ.get("RUNNER_TEMP")
    return (
        Path(runner_temp)
        if runner_temp and Path(runner_temp).is_dir()
        else Path(tempfile.gettempdir())
    )


def _staged(directory: Path, content: str) -> Path:
    """A 0600 file with ``content``, next to where it will live (so the rename is atomic)."""
    handle, name = tempfile.mkstemp(dir=directory, prefix=".ci-shark-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        with suppress(OSError):
            os.unlink(name)
        raise
    return Path(name)


def new_key_file_path(directory: Path | None = None) -> Path:
    """A fresh, unpredictable name for the DPoP key PEM."""
    directory = directory or secure_temp_dir()
    handle, name = tempfile.mkstemp(dir=directory, prefix="ci-shark-dpop-", suffix=".pem")
    os.close(handle)  # reserved 0600; filled by write_all
    return Path(name)


@dataclass(frozen=True)
class PlannedFile:
    path: Path
    content: Value


def write_all(files: list[PlannedFile]) -> None:
    """Write every file or none: stage all, then rename all; undo the staging on failure."""
    staged: list[tuple[Path, Path]] = []
    try:
        for planned in files:
            directory = planned.path.parent
            directory.mkdir(parents=True, exist_ok=True)
            if planned.path.is_dir():  # found now, not at the rename after earlier files moved
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(planned.path))
            staged.append((_staged(directory, reveal(planned.content)), planned.path))
    except OSError as exc:
        _discard(staged)
        raise ConfigError(
            f"could not write {exc.filename or 'an output file'}: {exc.strerror}",
            hint="choose a writable `output-file` (CI_SHARK_OUTPUT_FILE)",
        ) from None
    except BaseException:  # KeyboardInterrupt in a library caller: no staged secret left
        _discard(staged)
        raise
    for temp, final in staged:
        os.replace(temp, final)


def _discard(staged: list[tuple[Path, Path]]) -> None:
    for temp, _ in staged:
        with suppress(OSError):
            temp.unlink()
