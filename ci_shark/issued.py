"""What a login issued, read back by the later commands (`request`, `refresh`, `revoke`,
`proof`), always by the one rule of :func:`load_issued`. What the user names wins:

1. ``--credentials FILE``.
2. The ``SHARK_*`` variables, when they hold a token (an access or a refresh token): a
   shell that ``eval``'d a login's exports, or a step they were mapped into. Except when a
   default file holds the **same grant** (:meth:`Issued.same_grant`: the same DPoP key
   thumbprint ``SHARK_DPOP_JKT`` and token endpoint ``SHARK_TOKEN_ENDPOINT``, or the
   variables' very tokens or key file): `refresh` rewrote that file, so it holds the
   grant's newer tokens, and the variables the older ones.
3. The newest default file, by modification time: ``ci-shark.json`` or ``ci-shark.env`` in
   the job's private folder (:meth:`Platform.state_directory`; outside CI, the user's),
   where a login with default settings leaves them.
4. The ``SHARK_*`` variables holding only a DPoP key: enough for `proof`.

One log line says which was used. A default file of another grant never shadows the
variables: after a second login with its own `output-file`, `revoke` with that login's
variables must end that grant at that server, not the first login's.

The secrets are :class:`Secret` objects for as long as the command runs: masked before
anything is sent, and taken out of anything a server echoes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ci_shark.errors import ConfigError
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.outputs import TOKEN_NAMES, Value, read_credentials
from ci_shark.platforms.base import DEFAULT_OUTPUT_FILES, Platform
from ci_shark.secret import Secret
from ci_shark.urls import same_endpoint

SECRET_NAMES = ("SHARK_ACCESS_TOKEN", "SHARK_REFRESH_TOKEN", "SHARK_ID_TOKEN", "SHARK_DPOP_JWK")
# Without a token or a file, these in the environment still serve `proof` (a key is enough).
KEY_NAMES = ("SHARK_DPOP_KEY_FILE", "SHARK_DPOP_JWK")
IN_ENVIRONMENT = "the SHARK_* variables"


@dataclass(frozen=True)
class Issued:
    """The credentials of an earlier login, and where they were read from."""

    values: Mapping[str, str]  # SHARK_* as exported
    file: Path | None  # None: the environment
    secrets: dict[str, Secret] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        held = {name: Secret(self.values[name].strip()) for name in SECRET_NAMES if self.text(name)}
        object.__setattr__(self, "secrets", held)

    @classmethod
    def read(cls, path: Path) -> Issued:
        return cls(read_credentials(path), path)

    def text(self, name: str) -> str | None:
        value = self.values.get(name, "").strip()
        return value or None

    def secret(self, name: str) -> Secret | None:
        return self.secrets.get(name)

    def named(self) -> dict[str, Value]:
        """The ``SHARK_*`` values as a login exports them (a secret as :class:`Secret`)."""
        return {name: self.secrets.get(name) or value for name, value in self.values.items()}

    @property
    def where(self) -> str:
        return str(self.file) if self.file else IN_ENVIRONMENT

    @property
    def holds_token(self) -> bool:
        return any(self.secret(name) for name in TOKEN_NAMES)

    @property
    def is_dpop_bound(self) -> bool:
        return (self.text("SHARK_TOKEN_TYPE") or "").lower() == "dpop"

    def same_grant(self, other: Issued) -> bool:
        """Whether ``other`` holds this grant too, maybe refreshed since: a token of ours
        in it; our key file (each login writes its own, under a random name: the revoke
        action maps only that and the tokens); or the same DPoP key at the same token
        endpoint (a login makes a fresh key, so its thumbprint names the login; two logins
        at one server with one fixed `dpop-private-key` look alike, and either's tokens
        still go only to the server that issued them)."""
        if any(
            (mine := self.secret(name)) is not None and mine == other.secret(name)
            for name in TOKEN_NAMES
        ):
            return True
        key_file = self.text("SHARK_DPOP_KEY_FILE")
        if key_file is not None and key_file == other.text("SHARK_DPOP_KEY_FILE"):
            return True
        jkt, endpoint = self.text("SHARK_DPOP_JKT"), self.text("SHARK_TOKEN_ENDPOINT")
        theirs = other.text("SHARK_TOKEN_ENDPOINT")
        return (
            jkt is not None
            and jkt == other.text("SHARK_DPOP_JKT")
            and endpoint is not None
            and theirs is not None
            and same_endpoint(endpoint, theirs)
        )

    def same_tokens(self, other: Issued) -> bool:
        return all(self.secret(name) == other.secret(name) for name in TOKEN_NAMES)

    def expires_at(self) -> datetime | None:
        text = self.text("SHARK_EXPIRES_AT") or ""
        try:
            return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            return None

    def expires_in_s(self) -> float | None:
        """The token's lifetime as the server gave it (``SHARK_EXPIRES_IN``)."""
        text = self.text("SHARK_EXPIRES_IN") or ""
        return float(text) if text.isdigit() else None

    def dpop_key(self) -> DPoPKey | None:
        """The login's key: its PEM file, else its JWK."""
        key_file = self.text("SHARK_DPOP_KEY_FILE")
        jwk = self.secret("SHARK_DPOP_JWK")
        if key_file and Path(key_file).is_file():
            return DPoPKey.load(read_key_file(Path(key_file)))
        if jwk is not None:
            return DPoPKey.from_jwk(jwk.reveal())
        if key_file:
            raise ConfigError(
                f"the DPoP key file {key_file} (SHARK_DPOP_KEY_FILE) is gone",
                hint="use the credentials in the job that ran the login; `revoke` removes the key",
            )
        return None


def credential_files(platform: Platform) -> list[Path]:
    """Where a login with default settings leaves its credentials (either format)."""
    folder = platform.state_directory()
    return [folder / name for name in sorted(set(DEFAULT_OUTPUT_FILES.values()))]


def default_files(platform: Platform) -> list[Issued]:
    """The default credentials files there are, newest first."""
    found = []
    for path in credential_files(platform):
        with suppress(OSError):  # none there (or gone since)
            found.append((path.stat().st_mtime, path))
    return [Issued.read(path) for _, path in sorted(found, reverse=True)]


def load_issued(credentials: Path | None, platform: Platform) -> Issued:
    """The credentials a later command uses, by the rule in this module's docstring:
    masked, then named in the log."""
    issued = _chosen(credentials, platform)
    mask_issued(issued, platform)
    platform.log(f"ci_shark: using the credentials in {issued.where}")
    return issued


def _chosen(credentials: Path | None, platform: Platform) -> Issued:
    if credentials is not None:
        return Issued.read(credentials)
    in_env = Issued({k: v for k, v in platform.env.items() if k.startswith("SHARK_")}, None)
    files = default_files(platform)
    if in_env.holds_token:
        return next((file for file in files if in_env.same_grant(file)), in_env)
    if files:
        return files[0]
    if any(in_env.text(name) for name in KEY_NAMES):
        return in_env
    template = platform.env.get("CI_SHARK_TEMPLATE", "").strip()
    if template:  # set by the GitLab template/component, whose variables survive
        raise ConfigError(
            f"no credentials in this shell: the `{template}` template's login did not run",
            hint=f"a job that extends `{template}` and sets its own before_script replaces "
            f"the template's install and login: add `- !reference [{template}, "
            "before_script]` to it (docs/gitlab.md)",
        )
    raise ConfigError(
        "no credentials: no login left "
        f"{' or '.join(str(path) for path in credential_files(platform))}, and "
        "SHARK_ACCESS_TOKEN is not set",
        hint="run this after the login (in its job, or at this terminal), pass "
        "`--credentials FILE`, or eval the login's shell exports first",
    )


def read_key_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the DPoP key file {path}: {exc.strerror}",
            hint="pass the path of a readable PEM or JWK file",
        ) from None


def mask_issued(issued: Issued, platform: Platform) -> None:
    """Every secret read, masked before anything is sent (the runner may not know them:
    a later step that read a file, not an output)."""
    platform.mask(list(issued.secrets.values()))
