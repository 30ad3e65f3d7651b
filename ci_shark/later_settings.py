"""The settings of the commands that use a login's credentials (`request`, `refresh`,
`revoke`, `proof`, `proxy`), read without the login's configuration library.

A later command starts from the credentials file, which records the server, the client
and the endpoints; what it may still take from the settings is small, and pydantic-settings
is half of such a command's start-up (docs/perf.md). Its rules:

- Only the inputs a later command uses are read: `auth-url`, `client-id` and
  `token-endpoint` (filling in what the credentials do not record), `client-secret`,
  `workload-identity` and `workload-identity-audience` (how the client authenticates
  when the credentials do not say), `ca-bundle`, `provider`, `dpop-private-key`
  (`proof`), and `output-format` with `output-file` (where `refresh` saves tokens that
  came from the environment). Each is checked as config.py checks it, and the client
  authenticates one way, as at the login (not both `client-secret` and
  `workload-identity`). An input only the login uses is not read, so a bad one (a
  login's `timeout`) does not stop a later step.
- The ``CI_SHARK_*`` variables, flags on top; an empty variable is unset (the action
  passes "" for every input left out), as in config.py.
- A bad value is a :class:`ConfigError` naming the input as config.py does (its names
  and fixes are loaded only then: an error is allowed to pay for them).

:class:`PlatformSettings` and :class:`ServerSettings` are what the platforms and the later
commands read; config's ``Settings`` and :class:`LaterSettings` both have that shape.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from ci_shark.errors import ConfigError
from ci_shark.input_values import (
    ENV_PREFIX,
    audience,
    one_client_authentication,
    readable_file,
    safe_url,
)
from ci_shark.oauth.providers import PROVIDERS
from ci_shark.secret import Secret

OUTPUT_FORMATS = ("auto", "github", "dotenv", "shell", "json")
# What pydantic reads as a bool (config.py's fields), case-insensitively.
TRUE_WORDS = ("1", "on", "t", "true", "y", "yes")
FALSE_WORDS = ("0", "off", "f", "false", "n", "no")


class PlatformSettings(Protocol):
    """What a platform reads of the settings."""

    @property
    def notify(self) -> tuple[str, ...]: ...
    @property
    def notify_users(self) -> tuple[str, ...]: ...
    @property
    def webhook_url(self) -> Secret | None: ...
    @property
    def webhook_format(self) -> str: ...
    @property
    def output_format(self) -> str: ...
    @property
    def output_file(self) -> str | None: ...
    @property
    def export_env(self) -> bool: ...
    @property
    def github_token(self) -> Secret | None: ...
    @property
    def gitlab_token(self) -> Secret | None: ...
    @property
    def client_secret(self) -> Secret | None: ...


class ServerSettings(Protocol):
    """What a later command reads of the settings about the server and the key."""

    @property
    def auth_url(self) -> str | None: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def client_secret(self) -> Secret | None: ...
    @property
    def workload_identity(self) -> bool: ...
    @property
    def workload_identity_audience(self) -> str | None: ...
    @property
    def token_endpoint(self) -> str | None: ...
    @property
    def ca_bundle(self) -> str | None: ...
    @property
    def provider(self) -> str: ...
    @property
    def dpop_private_key(self) -> Secret | None: ...
    def required(self, field: str) -> str: ...


@dataclass(frozen=True)
class LaterSettings:
    """A later command's settings (see the module's rules). A later command announces
    nothing: no channel, no webhook, no token for a CI's API."""

    auth_url: str | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    workload_identity: bool = False
    workload_identity_audience: str | None = None
    token_endpoint: str | None = None
    ca_bundle: str | None = None
    provider: str = "auto"
    dpop_private_key: Secret | None = None
    output_format: str = "auto"
    output_file: str | None = None
    notify: tuple[str, ...] = ("none",)
    notify_users: tuple[str, ...] = ()
    webhook_url: Secret | None = None
    webhook_format: str = "slack"
    export_env: bool = False
    github_token: Secret | None = None
    gitlab_token: Secret | None = None

    def required(self, field: str) -> str:
        """An input the command cannot do without."""
        value = getattr(self, field)
        if not isinstance(value, str) or not value:
            raise _bad_input(field, "is required")
        return value


def load_later_settings(
    env: Mapping[str, str], flags: Mapping[str, str | None] | None = None
) -> LaterSettings:
    """The later command's settings from ``env`` (``CI_SHARK_*``), ``flags`` on top."""

    def given(field: str) -> str | None:
        flag = (flags or {}).get(field)
        value = flag if flag is not None else env.get(f"{ENV_PREFIX}{field.upper()}")
        return value.strip() if value is not None and value.strip() else None

    auth_url = _checked("auth_url", given("auth_url"), safe_url)
    secret, key = given("client_secret"), given("dpop_private_key")
    workload_identity = _bool("workload_identity", given("workload_identity"))
    one_client_authentication(workload_identity=workload_identity, client_secret=bool(secret))
    return LaterSettings(
        auth_url=auth_url.rstrip("/") if auth_url else None,  # a base: no trailing slash
        client_id=given("client_id"),
        client_secret=Secret(secret) if secret else None,
        workload_identity=workload_identity,
        workload_identity_audience=_checked(
            "workload_identity_audience", given("workload_identity_audience"), audience
        ),
        token_endpoint=_checked("token_endpoint", given("token_endpoint"), safe_url),
        ca_bundle=_checked("ca_bundle", given("ca_bundle"), readable_file),
        provider=_one_of("provider", given("provider"), ("auto", *PROVIDERS)) or "auto",
        dpop_private_key=Secret(key) if key else None,
        output_format=_one_of("output_format", given("output_format"), OUTPUT_FORMATS) or "auto",
        output_file=given("output_file"),
    )


def _bool(field: str, value: str | None) -> bool:
    if value is None or value.lower() in FALSE_WORDS:
        return False
    if value.lower() in TRUE_WORDS:
        return True
    raise _bad_input(field, "must be true or false")


def _checked(field: str, value: str | None, parse: Callable[[str], str]) -> str | None:
    """``value`` by its input's rule (input_values.py, as config.py applies it)."""
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as bad:
        raise _bad_input(field, str(bad)) from None


def _one_of(field: str, value: str | None, choices: tuple[str, ...]) -> str | None:
    if value is not None and value not in choices:
        raise _bad_input(field, f"must be one of {', '.join(choices)}")
    return value


def _bad_input(field: str, problem: str) -> ConfigError:
    """The error config.py would give: the input by all its names, and its fix."""
    from ci_shark.config import dashed, input_names, spec  # noqa: PLC0415 (errors only)

    fix = f"`{dashed(field)}`: {spec(field).fix}"
    return ConfigError(f"{input_names(field)} {problem}", hint=fix)
