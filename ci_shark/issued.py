"""What a login issued, read back by the later commands (`request`, `refresh`, `revoke`,
`proof`), always the same way.

Where: ``--credentials FILE``; else the file the login left in the job's private folder
(``$RUNNER_TEMP/ci-shark.json`` on GitHub): every output format writes it, and `refresh`
rewrites it, so it is the job's newest; else the ``SHARK_*`` variables (a shell that
``eval``'d the exports, or a step they were mapped into).

The secrets are :class:`Secret` objects for as long as the command runs: masked before
anything is sent, and taken out of anything a server echoes back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ci_shark.errors import ConfigError
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.outputs import read_credentials
from ci_shark.platforms.base import Platform
from ci_shark.secret import Secret

EXPIRY_MARGIN_S = 30.0  # a token this close to its expiry may die in flight: refresh it
SECRET_NAMES = ("SHARK_ACCESS_TOKEN", "SHARK_REFRESH_TOKEN", "SHARK_ID_TOKEN", "SHARK_DPOP_JWK")
# Without a token or a file, these in the environment still serve `proof` (a key is enough).
KEY_NAMES = ("SHARK_DPOP_KEY_FILE", "SHARK_DPOP_JWK")


@dataclass(frozen=True)
class Issued:
    """The credentials of an earlier login, and where they were read from."""

    values: Mapping[str, str]  # SHARK_* as exported
    file: Path | None  # None: the environment
    secrets: dict[str, Secret] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        held = {name: Secret(self.values[name].strip()) for name in SECRET_NAMES if self.text(name)}
        object.__setattr__(self, "secrets", held)

    def text(self, name: str) -> str | None:
        value = self.values.get(name, "").strip()
        return value or None

    def secret(self, name: str) -> Secret | None:
        return self.secrets.get(name)

    @property
    def where(self) -> str:
        return str(self.file) if self.file else "the SHARK_* variables"

    @property
    def is_dpop_bound(self) -> bool:
        return (self.text("SHARK_TOKEN_TYPE") or "").lower() == "dpop"

    def expires_at(self) -> datetime | None:
        text = self.text("SHARK_EXPIRES_AT") or ""
        try:
            return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            return None

    def has_expired(self, *, now: datetime | None = None) -> bool:
        expires = self.expires_at()
        now = now or datetime.now(timezone.utc)
        return expires is not None and now >= expires - timedelta(seconds=EXPIRY_MARGIN_S)

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
    """Where a login with default settings left its credentials, newest format first."""
    folder = platform.state_directory()
    return [folder / "ci-shark.json", folder / "ci-shark.env"]


def load_issued(credentials: Path | None, platform: Platform) -> Issued:
    """``--credentials FILE``, else the job's file, else the ``SHARK_*`` variables."""
    if credentials is not None:
        return Issued(read_credentials(credentials), credentials)
    for candidate in credential_files(platform):
        if candidate.is_file():
            return Issued(read_credentials(candidate), candidate)
    in_env = Issued({k: v for k, v in platform.env.items() if k.startswith("SHARK_")}, None)
    if any(in_env.text(name) for name in ("SHARK_ACCESS_TOKEN", "SHARK_REFRESH_TOKEN", *KEY_NAMES)):
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
        hint="run this in the job that ran the login (after it), pass `--credentials FILE`, "
        "or eval the login's shell exports first",
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
