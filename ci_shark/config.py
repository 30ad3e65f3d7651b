"""Every input of a run, read and validated in one place.

Three ways in, one configuration: GitHub Action inputs arrive as ``CI_SHARK_*`` variables
(action.yml maps them), other CIs set the same variables, and CLI flags win over both.
Every error names the input as each of those spells it, and says how to fix it. Errors
never quote the value: it may be a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from ci_shark import _settings_import  # noqa: F401 (first: see there)

# isort: split
from pydantic import BeforeValidator, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ci_shark.errors import ConfigError
from ci_shark.secret import Secret
from ci_shark.urls import url_problem

ENV_PREFIX = "CI_SHARK_"
DEFAULT_TIMEOUT_S = 600.0
MAX_TIMEOUT_S = 24 * 3600.0
NOTIFY_CHANNELS = ("auto", "log", "summary", "comment", "none")
PROVIDERS = ("auto", "shark", "github", "google", "entra", "auth0", "okta", "keycloak", "generic")
# Fields whose CLI flag is not simply --<input-name>, or which have none.
_FLAGS = {
    "dpop": "--dpop/--no-dpop",
    "dpop_private_key": "--dpop-private-key-file",
    "extra_params": "--extra-param",
    "github_token": None,
    "gitlab_token": None,
    "export_env": None,
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600}


def input_names(field: str) -> str:
    """How users spell one input: `action-input` (CI_SHARK_ENV / --flag)."""
    action = field.replace("_", "-")
    flag = _FLAGS.get(field, f"--{action}")
    ways = f"{ENV_PREFIX}{field.upper()}" + (f" / {flag}" if flag else "")
    return f"`{action}` ({ways})"


def parse_duration(value: object) -> float:
    """``300``, ``300s``, ``15m``, ``1h`` as seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError("is not a duration: use seconds or a unit, e.g. 300, 300s, 15m, 1h")
        seconds = float(match.group(1)) * _UNIT_S[(match.group(2) or "s").lower()]
    if not 0 < seconds <= MAX_TIMEOUT_S:
        raise ValueError("must be more than 0 and at most 24h")
    return seconds


def _to_secret(value: object) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return Secret(value.strip()) if value.strip() else None


def _split(separators: str) -> Any:
    def split(value: object) -> object:
        if isinstance(value, str):
            return tuple(item for item in re.split(f"[{separators}]+", value) if item)
        return value

    return split


def _key_values(value: object) -> object:
    """``K=V`` pairs, one per line or comma-separated (or a mapping from the CLI)."""
    if not isinstance(value, str):
        return value
    pairs: dict[str, str] = {}
    for item in re.split(r"[\n,]+", value):
        if not item.strip():
            continue
        key, sep, val = item.strip().partition("=")
        if not sep or not key.strip():
            raise ValueError("takes K=V pairs, one per line or separated by commas")
        pairs[key.strip()] = val.strip()
    return pairs


SecretInput = Annotated[Secret | None, BeforeValidator(_to_secret)]
Words = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split(r"\s"))]
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split(r",\s"))]


class Settings(BaseSettings):
    """The inputs of SPEC.md's table, validated. Flags are passed in as keyword arguments."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,  # the action passes "" for every input left unset
        extra="forbid",
        arbitrary_types_allowed=True,
        frozen=True,
    )

    auth_url: str | None = None
    client_id: str | None = None
    client_secret: SecretInput = None
    scope: str | None = None
    resource: Words = ()
    device_authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    timeout: Annotated[float, BeforeValidator(parse_duration)] = DEFAULT_TIMEOUT_S
    dpop: bool = True
    dpop_private_key: SecretInput = None
    notify: CommaList = ("auto",)
    github_token: SecretInput = None
    gitlab_token: SecretInput = None
    allow_fork: bool = False
    export_env: bool = False
    output_format: Literal["auto", "github", "dotenv", "shell", "json"] = "auto"
    output_file: str | None = None
    ca_bundle: str | None = None
    provider: Literal[PROVIDERS] = "auto"  # type: ignore[valid-type]
    allowed_approvers: CommaList = ()
    renew: bool = False
    extra_params: Annotated[dict[str, str], NoDecode, BeforeValidator(_key_values)] = {}

    @field_validator("auth_url", "device_authorization_endpoint", "token_endpoint")
    @classmethod
    def _safe_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        problem = url_problem(value)
        if problem:
            raise ValueError(problem)
        return value.rstrip("/")

    @field_validator("resource")
    @classmethod
    def _resource_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # RFC 8707: absolute URIs; the https rule is the server's business, not ours.
        for item in value:
            if "://" not in item:
                raise ValueError("takes absolute URIs (RFC 8707), separated by spaces")
        return value

    @field_validator("notify")
    @classmethod
    def _notify_channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [item for item in value if item not in NOTIFY_CHANNELS]
        if unknown:
            raise ValueError(f"takes a comma list of {', '.join(NOTIFY_CHANNELS)}")
        return value or ("auto",)

    @field_validator("github_token", "gitlab_token")
    @classmethod
    def _header_safe(cls, value: Secret | None) -> Secret | None:
        # They travel in an HTTP header: ASCII only, or the client fails mid-flow.
        if value is not None and not all(" " < ch <= "~" for ch in value.reveal()):
            raise ValueError("must be printable ASCII without spaces: check for a pasted extra")
        return value

    @field_validator("ca_bundle")
    @classmethod
    def _readable_file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError("must be the path of a readable PEM file")
        return value

    @field_validator("extra_params")
    @classmethod
    def _no_protocol_overrides(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = {"client_id", "client_secret", "scope", "resource", "grant_type"}
        clash = sorted(reserved & set(value))
        if clash:
            raise ValueError(f"cannot set {', '.join(clash)}: use their own inputs")
        return value

    def required(self, field: str) -> str:
        """An input the command cannot do without."""
        value = getattr(self, field)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{input_names(field)} is required", hint=f"set {input_names(field)}")
        return value


class ExplicitSettings(Settings):
    """Settings from the values given and the defaults only, never the environment: for
    the demo, and for finishing a run whose environment held a bad input."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def load_settings(flags: Mapping[str, Any] | None = None) -> Settings:
    """Settings from the environment, with ``flags`` (given CLI options only) on top."""
    try:
        return Settings(**dict(flags or {}))
    except ValidationError as exc:
        raise _config_error(exc) from None


def _config_error(exc: ValidationError) -> ConfigError:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else "?"
        kind = error["type"]
        if kind == "value_error":
            what = str(error.get("ctx", {}).get("error", error["msg"]))
        elif kind.startswith("bool"):
            what = "must be true or false"
        elif kind == "literal_error":
            what = f"must be one of {error.get('ctx', {}).get('expected', '')}"
        elif kind == "extra_forbidden":
            return ConfigError(f"unknown input {field!r}", hint="see `ci-shark --help`")
        else:
            what = str(error["msg"]).lower()
        problems.append(f"{input_names(field)} {what}")
    return ConfigError(
        "; ".join(problems),
        hint="correct the input named above (the message never repeats its value)",
    )


class IssuedCredentials(BaseSettings):
    """What an earlier ``login`` exported (``SHARK_*``), for ``proof`` and ``revoke``."""

    model_config = SettingsConfigDict(
        env_prefix="SHARK_", env_ignore_empty=True, extra="ignore", arbitrary_types_allowed=True
    )

    access_token: SecretInput = None
    refresh_token: SecretInput = None
    token_type: str | None = None
    dpop_key_file: str | None = None
    dpop_jwk: SecretInput = None


def load_issued_credentials() -> IssuedCredentials:
    try:
        return IssuedCredentials()
    except ValidationError as exc:
        raise _config_error(exc) from None
