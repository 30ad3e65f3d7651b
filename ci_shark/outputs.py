"""What a successful run hands to later steps, and the safe ways to write it down.

Files are created 0600 and moved into place with ``os.replace``, so a reader sees the
whole file or none. A run writes everything or nothing: see :func:`write_all`. Processes
that rewrite one credentials file take turns: see :func:`locked_beside`.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ci_shark.errors import CiSharkError, ConfigError
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.secret import Secret

if TYPE_CHECKING:  # a later command reads credentials without the token endpoint's code
    from ci_shark.oauth.tokens import TokenSet

Value = str | Secret
# The values that are tokens: a credentials file holding one of them holds a live grant.
TOKEN_NAMES = ("SHARK_ACCESS_TOKEN", "SHARK_REFRESH_TOKEN")


@dataclass(frozen=True)
class Credentials:
    """The approved token set, the DPoP key that it is bound to, and where it came from
    (so later commands can refresh and revoke with nothing else configured)."""

    tokens: TokenSet
    dpop_key: DPoPKey | None
    dpop_key_file: str | None = None  # set by the platform when it writes the key
    approver: str | None = None
    auth_url: str | None = None
    client_id: str | None = None
    token_endpoint: str | None = None  # the ones it used, for `refresh` and `revoke`
    revocation_endpoint: str | None = None
    # How it authenticated (oauth.tokens.CLIENT_AUTH_METHODS): later steps do the same,
    # with workload identity for this audience (its tokens are never written down).
    client_auth: str | None = None
    workload_identity_audience: str | None = None

    def secrets(self) -> list[Secret]:
        """Every secret value, so each can be masked before anything is written."""
        found = [self.tokens.access_token, self.tokens.refresh_token, self.tokens.id_token]
        if self.dpop_key is not None:
            # `d` on its own too: `jq .` on the JWK prints it on a line of its own.
            jwk = self.dpop_key.private_jwk()
            found += [self.dpop_key.private_pem(), jwk, Secret(json.loads(jwk.reveal())["d"])]
        return [secret for secret in found if secret]

    def named(self) -> dict[str, Value]:
        """The ``SHARK_*`` variables (single-line values only); a :class:`Secret` value is
        a secret output."""
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
            "SHARK_AUTH_URL": self.auth_url or "",
            "SHARK_CLIENT_ID": self.client_id or "",
            "SHARK_TOKEN_ENDPOINT": self.token_endpoint or "",
            "SHARK_REVOCATION_ENDPOINT": self.revocation_endpoint or "",
            "SHARK_CLIENT_AUTH": self.client_auth or "",
            "SHARK_WORKLOAD_IDENTITY_AUDIENCE": self.workload_identity_audience or "",
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


def new_key_file_path(directory: Path) -> Path:
    """A fresh, unpredictable name for the DPoP key PEM."""
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
            if planned.path.is_dir():  # found now, not at the rename after earlier files moved
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(planned.path))
            staged.append((_staged(directory, reveal(planned.content)), planned.path))
    except OSError as exc:
        _discard(staged)
        raise ConfigError(
            f"could not write {exc.filename or 'an output file'}: {exc.strerror}",
            hint="choose an `output-file` in an existing folder you can write to",
        ) from None
    except BaseException:  # KeyboardInterrupt in a library caller: no staged secret left
        _discard(staged)
        raise
    for temp, final in staged:
        os.replace(temp, final)


def rewrite_credentials(path: Path, values: Mapping[str, Value]) -> None:
    """A credentials file written again whole, in its own format (JSON for a new one)."""
    fmt = "json" if not path.is_file() or is_json(path.read_text(encoding="utf-8")) else "dotenv"
    write_all([PlannedFile(path, RENDERERS[fmt](values))])


LOCK_POLL_S = 0.05


def lock_file(path: Path) -> Path:
    """The lock beside a credentials file, which :func:`locked_beside` holds."""
    return path.with_name(path.name + ".lock")


@contextmanager
def locked_beside(
    path: Path,
    *,
    wait_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (0600, beside ``path``) for the block,
    waiting up to ``wait_s`` for another process to release it. ``flock``: the kernel
    releases it when its holder exits, however it exits, so a crash leaves nothing stale.
    Windows has no ``flock``: there no lock is taken, and processes are not kept apart."""
    if sys.platform == "win32":
        yield
        return
    import fcntl  # noqa: PLC0415 (POSIX only)

    lock_path = lock_file(path)
    try:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the lock file {lock_path}: {exc.strerror}",
            hint="the credentials file must be in a folder you can write to",
        ) from None
    try:
        give_up_at = clock() + wait_s
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if clock() >= give_up_at:
                    raise CiSharkError(
                        f"another ci-shark process has been rewriting {path} for over "
                        f"{wait_s:g}s (it holds {lock_path})",
                        hint="let the other `ci-shark refresh` or `request` finish, then "
                        "run this again",
                    ) from None
                sleep(LOCK_POLL_S)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _discard(staged: list[tuple[Path, Path]]) -> None:
    for temp, _ in staged:
        with suppress(OSError):
            temp.unlink()


def check_writable(path: Path, *, what: str) -> None:
    """Fail now, before a device code exists, if ``path`` could not be written later: its
    folder must exist (it is not created), be a folder, and take a new file."""
    folder = path.parent
    fix = f"point {what} at a file in an existing folder you can write to"
    if path.is_dir():
        raise ConfigError(f"{what}: {path} is a directory, not a file", hint=fix)
    if not folder.exists():
        raise ConfigError(f"{what}: the folder {folder} does not exist", hint=fix)
    if not folder.is_dir():
        raise ConfigError(f"{what}: {folder} is a file, not a folder", hint=fix)
    try:
        handle, name = tempfile.mkstemp(dir=folder, prefix=".ci-shark-check-")
    except OSError as exc:
        raise ConfigError(f"{what}: cannot write in {folder}: {exc.strerror}", hint=fix) from None
    os.close(handle)
    os.unlink(name)


def private_directory(path: Path) -> Path:
    """``path`` as a folder only we can enter (0700), created if missing. An existing one
    must be ours and private: in a shared temp dir, another user could have made it first
    and be waiting for our files."""
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError as exc:
        raise ConfigError(
            f"cannot make the private folder {path}: {exc.strerror}",
            hint="set `output-file` to a file in a folder you own",
        ) from None
    owner = getattr(os, "getuid", None)
    if not stat.S_ISDIR(info.st_mode) or (
        owner is not None and (info.st_uid != owner() or info.st_mode & 0o077)
    ):
        raise ConfigError(
            f"{path} exists but is not a private folder of this user (owner, mode 0700)",
            hint="remove it, or set `output-file` to a file in a folder you own",
        )
    return path


def is_json(text: str) -> bool:
    """A credentials file written as JSON (else it is dotenv)."""
    return text.lstrip().startswith("{")


def read_credentials(path: Path) -> dict[str, str]:
    """``SHARK_*`` values from a file written by :func:`render_dotenv` or
    :func:`render_json` (a dotenv line is ``NAME=value``, never quoted)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the credentials file {path}: {exc.strerror}",
            hint="pass the file the login wrote (`--credentials FILE`), or run in its job",
        ) from None
    if is_json(text):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            raise ConfigError(f"the credentials file {path} is not a JSON object")
        return {str(k): v for k, v in data.items() if isinstance(v, str)}
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip():
            values[name.strip()] = value
    return values
