"""Every input of a run, read and validated in one place.

Three ways in, one configuration: GitHub Action inputs arrive as ``CI_SHARK_*`` variables
(action.yml maps them), other CIs set the same variables, and CLI flags win over both.
Each field carries its :class:`Input` metadata — the help text, the flag, the fix for a
bad value — and that one description drives the CLI's flags and ``--help``, the names an
error message uses, and the fix it gives. Errors never quote the value: it may be a secret.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from ci_shark import _settings_import  # noqa: F401 (first: see there)

# isort: split
from pydantic import BeforeValidator, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ci_shark.errors import ConfigError
from ci_shark.input_values import (
    ENV_PREFIX,
    Input,
    approver_entry,
    audience,
    key_values,
    one_client_authentication,
    readable_file,
    safe_url,
    splitter,
    to_secret,
)
from ci_shark.oauth.providers import PROVIDERS
from ci_shark.render import GITHUB_NAME
from ci_shark.secret import Secret
from ci_shark.units import parse_duration

DEFAULT_TIMEOUT_S = 600.0
NOTIFY_CHANNELS = ("auto", "log", "summary", "comment", "issue", "webhook", "none")
PROVIDER_NAMES = ("auto", *PROVIDERS)
SecretInput = Annotated[Secret | None, BeforeValidator(to_secret)]
Words = Annotated[tuple[str, ...], NoDecode, BeforeValidator(splitter(r"\s"))]
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(splitter(r",\s"))]
Duration = Annotated[float, BeforeValidator(parse_duration)]
KeyValues = Annotated[dict[str, str], NoDecode, BeforeValidator(key_values)]


class Settings(BaseSettings):
    """The inputs of the README's table, validated. Flags are passed in as keyword arguments."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,  # the action passes "" for every input left unset
        extra="forbid",
        arbitrary_types_allowed=True,
        frozen=True,
    )

    auth_url: Annotated[
        str | None,
        Input(
            "the authorization server's issuer URL",
            "set it to the server's issuer URL: https://, or http:// to a loopback host",
            metavar="URL",
            required=True,
        ),
    ] = None
    client_id: Annotated[
        str | None,
        Input(
            "the OAuth client registered for this job",
            "set it to the client's id",
            metavar="ID",
            required=True,
        ),
    ] = None
    client_secret: Annotated[
        SecretInput,
        Input(
            "the client's secret, for a confidential client (prefer the variable: argv is "
            "visible to other processes)",
            "pass the secret from a CI secret",
            metavar="SECRET",
        ),
    ] = None
    workload_identity: Annotated[
        bool,
        Input(
            "authenticate to the server with the CI's OIDC token (RFC 7523 client assertion, "
            "a fresh one per request), so the server can show the approver which run asks",
            "use true or false",
        ),
    ] = False
    workload_identity_audience: Annotated[
        str | None,
        Input(
            "the aud of the CI's OIDC token (default: the server's issuer from its metadata, "
            "else auth-url)",
            "give the audience your server expects of a CI token, usually its issuer URL",
            metavar="AUD",
        ),
    ] = None
    scope: Annotated[
        str | None,
        Input("the scopes to request, space-separated", "check the scope names", metavar="SCOPES"),
    ] = None
    resource: Annotated[
        Words,
        Input(
            "RFC 8707 resource indicators, space-separated absolute URIs",
            "give absolute URIs such as https://api.example.com, separated by spaces",
            metavar="URIS",
        ),
    ] = ()
    device_authorization_endpoint: Annotated[
        str | None,
        Input(
            "the device authorization endpoint, used exactly as given (default: discovered)",
            "give the endpoint's full https:// URL",
            metavar="URL",
        ),
    ] = None
    token_endpoint: Annotated[
        str | None,
        Input(
            "the token endpoint, used exactly as given (default: discovered)",
            "give the endpoint's full https:// URL",
            metavar="URL",
        ),
    ] = None
    timeout: Annotated[
        Duration,
        Input(
            "how long to wait for approval: 300, 300s, 15m, 10min, 1h30m; never longer than "
            "the code lives",
            "give a duration between 1s and 24h, e.g. 600, 10m or 1h",
            metavar="DURATION",
        ),
    ] = DEFAULT_TIMEOUT_S
    dpop: Annotated[
        bool,
        Input(
            "bind the token to a DPoP key (RFC 9449)",
            "use true or false",
            flag="--dpop/--no-dpop",
        ),
    ] = True
    dpop_private_key: Annotated[
        SecretInput,
        Input(
            "a PEM or JWK private key file to sign DPoP proofs with (default: a fresh P-256 key)",
            "give an unencrypted EC P-256 private key, PEM or JWK",
            flag="--dpop-private-key-file",
            metavar="FILE",
        ),
    ] = None
    notify: Annotated[
        CommaList,
        Input(
            "where to ask for approval: auto, or a comma list of log, summary, comment, "
            "issue (GitHub), webhook, none",
            f"use a comma list of {', '.join(NOTIFY_CHANNELS)}",
            metavar="CHANNELS",
        ),
    ] = ("auto",)
    github_token: Annotated[
        SecretInput,
        Input(
            "the GitHub token that writes the PR comment / issue",
            "pass a GitHub token (the action's default is the job's own)",
            flag=None,
        ),
    ] = None
    gitlab_token: Annotated[
        SecretInput,
        Input(
            "a GitLab project/group access token with the api scope, for the MR note",
            "pass a GitLab access token with the api scope from a masked CI/CD variable",
            flag=None,
        ),
    ] = None
    allow_fork: Annotated[
        bool,
        Input(
            "ask for approval even on a pull/merge request from a fork (anyone can open one)",
            "use true or false",
        ),
    ] = False
    export_env: Annotated[
        bool,
        Input(
            "GitHub: also export SHARK_* variables to the later steps of the job",
            "use true or false",
            flag=None,
        ),
    ] = False
    output_format: Annotated[
        Literal["auto", "github", "dotenv", "shell", "json"],
        Input(
            "auto (github on GitHub, else dotenv), github, dotenv, shell (for eval), json",
            "use one of auto, github, dotenv, shell, json",
            metavar="FORMAT",
        ),
    ] = "auto"
    output_file: Annotated[
        str | None,
        Input(
            "where dotenv/json credentials go, 0600 (default: ci-shark.env/.json in a "
            "private folder of the job's temp dir)",
            "give a file in an existing folder you can write to",
            metavar="FILE",
        ),
    ] = None
    ca_bundle: Annotated[
        str | None,
        Input(
            "a PEM file of CAs to trust instead of the system's",
            "give the path of a readable PEM file",
            metavar="FILE",
        ),
    ] = None
    provider: Annotated[
        Literal[PROVIDER_NAMES],  # type: ignore[valid-type]
        Input(
            f"the server's preset: {', '.join(PROVIDER_NAMES)}",
            f"use one of {', '.join(PROVIDER_NAMES)}",
            metavar="NAME",
        ),
    ] = "auto"
    allowed_approvers: Annotated[
        CommaList,
        Input(
            "who may approve, comma-separated: sub:<subject>, user:<username>, "
            "email:<verified email>; a bare name is a GitHub login (provider github only)",
            "list entries like sub:248289761001, email:alice@example.com, user:alice",
            metavar="LIST",
        ),
    ] = ()
    renew: Annotated[
        bool,
        Input("when the code expires, ask for a new one until the timeout", "use true or false"),
    ] = False
    extra_params: Annotated[
        KeyValues,
        Input(
            "an extra form field K=V for the device authorization request (repeatable)",
            "give K=V pairs, one per line or comma-separated",
            flag="--extra-param",
            metavar="K=V",
        ),
    ] = {}
    webhook_url: Annotated[
        SecretInput,
        Input(
            "an incoming-webhook URL (a secret) that gets the approval request and the outcome",
            "pass the webhook URL (https://, or http:// to a loopback host) from a CI secret",
            flag=None,
        ),
    ] = None
    webhook_format: Annotated[
        Literal["slack", "teams", "json"],
        Input(
            "the webhook's message format: slack (also Mattermost, Rocket.Chat, Discord's "
            "/slack), teams, json",
            "use one of slack, teams, json",
            metavar="FORMAT",
        ),
    ] = "slack"
    notify_users: Annotated[
        CommaList,
        Input(
            "GitHub users or teams (alice, @org/team) that `notify: issue` mentions",
            "list GitHub logins or org/team names, comma-separated",
            metavar="LIST",
        ),
    ] = ()

    @field_validator("auth_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        # A base that paths are added to: one trailing slash is not part of it.
        return safe_url(value).rstrip("/") if value is not None else None

    @field_validator("device_authorization_endpoint", "token_endpoint")
    @classmethod
    def _endpoint_url(cls, value: str | None) -> str | None:
        # Used exactly as given: a Django server's /o/token/ keeps its slash.
        return safe_url(value) if value is not None else None

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: Secret | None) -> Secret | None:
        if value is not None:
            safe_url(value.reveal())
        return value

    @field_validator("resource")
    @classmethod
    def _resource_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # RFC 8707: absolute URIs; the https rule is the server's business, not ours.
        for item in value:
            if "://" not in item:
                raise ValueError("takes absolute URIs (RFC 8707), separated by spaces")
        return value

    @field_validator("workload_identity_audience")
    @classmethod
    def _audience(cls, value: str | None) -> str | None:
        return audience(value) if value is not None else None

    @model_validator(mode="after")
    def _one_client_authentication(self) -> Settings:
        one_client_authentication(
            workload_identity=self.workload_identity, client_secret=self.client_secret is not None
        )
        if self.workload_identity_audience is not None and not self.workload_identity:
            raise ConfigError(
                "`workload-identity-audience` is set but `workload-identity` is not",
                hint="set `workload-identity` to true, or remove `workload-identity-audience`",
            )
        return self

    @field_validator("notify")
    @classmethod
    def _notify_channels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [item for item in value if item not in NOTIFY_CHANNELS]
        if unknown:
            raise ValueError(f"takes a comma list of {', '.join(NOTIFY_CHANNELS)}")
        return value or ("auto",)

    @field_validator("allowed_approvers")
    @classmethod
    def _approver_entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            kind, name = approver_entry(entry)
            if kind is not None and not name:
                raise ValueError(f"has an empty {kind}: entry")
            if kind is None and ":" in name:
                raise ValueError(f"has `{name}`: an entry starts with sub:, user: or email:")
            if kind is None and "@" in name:
                raise ValueError(f"has the bare address `{name}`: write email:{name}")
        return value

    @field_validator("notify_users")
    @classmethod
    def _github_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if not GITHUB_NAME.fullmatch(entry):
                raise ValueError("takes GitHub logins or org/team names, comma-separated")
        return value

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
        return readable_file(value) if value is not None else None

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
            raise ConfigError(
                f"{input_names(field)} is required", hint=f"`{dashed(field)}`: {spec(field).fix}"
            )
        return value


class ExplicitSettings(Settings):
    """Settings from the values given and the defaults only, never the environment: for
    the demo, and for finishing a run whose environment held a bad input."""

    # Built on first use, not when login imports this module: a login rarely needs it.
    model_config = SettingsConfigDict(defer_build=True)

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


# -- how inputs are named ------------------------------------------------------------------


def dashed(field: str) -> str:
    return field.replace("_", "-")


def spec(field: str) -> Input:
    """The :class:`Input` metadata of a Settings field."""
    for item in Settings.model_fields[field].metadata:
        if isinstance(item, Input):
            return item
    raise KeyError(field)


def flag(field: str) -> str | None:
    chosen = spec(field).flag
    return f"--{dashed(field)}" if chosen == "" else chosen


def input_names(field: str) -> str:
    """How users spell one input: `action-input` (CI_SHARK_ENV / --flag)."""
    cli = flag(field)
    ways = f"{ENV_PREFIX}{field.upper()}" + (f" / {cli}" if cli else "")
    return f"`{dashed(field)}` ({ways})"


_MENTIONED_INPUT = re.compile(r"`([a-z][a-z-]+)`( \()?")


def spell_inputs(text: str) -> str:
    """Messages name inputs as `action-name`; spell each input out in full the first time
    it is mentioned, as the user can set it (the variable, the flag)."""
    seen: set[str] = set()

    def spelled(match: re.Match[str]) -> str:
        field = match.group(1).replace("-", "_")
        if field in seen or field not in Settings.model_fields:
            return match.group(0)
        seen.add(field)
        return match.group(0) if match.group(2) else input_names(field)

    return _MENTIONED_INPUT.sub(spelled, text)


# -- loading -------------------------------------------------------------------------------


def load_settings(flags: Mapping[str, Any] | None = None) -> Settings:
    """Settings from the environment, with ``flags`` (given CLI options only) on top."""
    try:
        return Settings(**dict(flags or {}))
    except ValidationError as exc:
        raise _config_error(exc) from None


def _config_error(exc: ValidationError) -> ConfigError:
    problems: list[str] = []
    fixes: list[str] = []
    for error in exc.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else "?"
        kind = error["type"]
        if kind == "extra_forbidden" or field not in Settings.model_fields:
            return ConfigError(f"unknown input {field!r}", hint="see `ci-shark login --help`")
        if kind == "value_error":
            what = str(error.get("ctx", {}).get("error", error["msg"]))
        elif kind.startswith("bool"):
            what = "must be true or false"
        elif kind == "literal_error":
            what = f"must be one of {error.get('ctx', {}).get('expected', '')}"
        else:
            what = str(error["msg"]).lower()
        problems.append(f"{input_names(field)} {what}")
        fixes.append(f"`{dashed(field)}`: {spec(field).fix}")
    return ConfigError("; ".join(problems), hint="; ".join(fixes))
