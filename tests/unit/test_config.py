"""Settings: one configuration from CI_SHARK_* variables and CLI flags, validated up front."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ci_shark.config import (
    DEFAULT_TIMEOUT_S,
    Settings,
    input_names,
    load_settings,
    parse_duration,
)
from ci_shark.errors import ConfigError, ExitCode
from ci_shark.secret import Secret

CANARY = "ghp_CANARY0123456789abcdefSECRET"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's (or CI's) own CI_SHARK_* / SHARK_* variables must not leak in."""
    for name in list(os.environ):
        if name.startswith(("CI_SHARK_", "SHARK_")):
            monkeypatch.delenv(name)


def config_error(flags: dict[str, object] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_settings(flags)
    assert caught.value.exit_code == ExitCode.CONFIG == 2
    return caught.value


# -- defaults and precedence ---------------------------------------------------------------


def test_defaults() -> None:
    settings = load_settings()
    assert settings.auth_url is None
    assert settings.timeout == DEFAULT_TIMEOUT_S == 600
    assert settings.dpop is True
    assert settings.notify == ("auto",)
    assert settings.output_format == "auto"
    assert settings.provider == "auto"
    assert settings.resource == ()
    assert settings.extra_params == {}
    assert (settings.allow_fork, settings.export_env, settings.renew) == (False, False, False)


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_SHARK_AUTH_URL", "https://auth.example")
    monkeypatch.setenv("CI_SHARK_CLIENT_ID", "ci-client")
    monkeypatch.setenv("CI_SHARK_SCOPE", "deploy read")
    settings = load_settings()
    assert (settings.auth_url, settings.client_id, settings.scope) == (
        "https://auth.example",
        "ci-client",
        "deploy read",
    )


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_SHARK_SCOPE", "from-env")
    monkeypatch.setenv("CI_SHARK_TIMEOUT", "1h")
    monkeypatch.setenv("CI_SHARK_DPOP", "true")
    monkeypatch.setenv("CI_SHARK_CLIENT_ID", "env-client")
    settings = load_settings({"scope": "from-flag", "timeout": "5m", "dpop": False})
    assert settings.scope == "from-flag"
    assert settings.timeout == 300
    assert settings.dpop is False
    assert settings.client_id == "env-client"  # no flag given: the environment's


def test_a_valid_flag_hides_an_invalid_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_SHARK_TIMEOUT", "forever")
    assert load_settings({"timeout": "90s"}).timeout == 90


def test_empty_environment_values_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # The composite action maps every input, passing "" for those left unset.
    for field in Settings.model_fields:
        monkeypatch.setenv(f"CI_SHARK_{field.upper()}", "")
    assert load_settings() == load_settings({})
    settings = load_settings()
    assert settings.timeout == 600
    assert settings.dpop is True
    assert settings.client_secret is None
    assert settings.notify == ("auto",)


def test_whitespace_only_secret_is_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_SHARK_CLIENT_SECRET", "  \n")
    assert load_settings().client_secret is None


def test_secrets_are_secret_objects_and_stripped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_SHARK_CLIENT_SECRET", f"  {CANARY}\n")
    monkeypatch.setenv("CI_SHARK_GITHUB_TOKEN", CANARY)
    settings = load_settings()
    assert isinstance(settings.client_secret, Secret)
    assert settings.client_secret.reveal() == CANARY
    assert CANARY not in repr(settings)
    assert CANARY not in str(settings)


def test_unknown_flag_is_refused() -> None:
    error = config_error({"client_sercet": CANARY})
    assert "client_sercet" in error.message
    assert CANARY not in error.diagnostics()


# -- durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300", 300),
        ("300s", 300),
        ("15m", 900),
        ("1h", 3600),
        ("1H", 3600),
        (" 2m ", 120),
        ("1.5m", 90),
        ("24h", 86400),
        (45, 45),
    ],
)
def test_durations(text: str | int, seconds: float, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_duration(text) == seconds
    monkeypatch.setenv("CI_SHARK_TIMEOUT", str(text))
    assert load_settings().timeout == seconds


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10min", 600), ("15 minutes", 900), ("5m30s", 330), ("1h30m", 5400), ("1d", 86400)],
)
def test_durations_as_people_write_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_a_negative_duration_says_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_SHARK_TIMEOUT", "-5")
    error = config_error()
    assert "must be more than 0" in error.message
    assert "`timeout`: give a duration" in (error.hint or "")


@pytest.mark.parametrize("text", ["ten", "1w", "-5", "0", "0s", "25h", "m5", "5 parsecs"])
def test_bad_duration_names_the_input(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("CI_SHARK_TIMEOUT", text)
    error = config_error()
    assert "`timeout`" in error.message
    assert "CI_SHARK_TIMEOUT" in error.message
    assert "--timeout" in error.message


# -- URLs ----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["auth_url", "device_authorization_endpoint", "token_endpoint"])
def test_plain_http_is_refused_unless_loopback(field: str) -> None:
    error = config_error({field: "http://auth.example"})
    assert input_names(field) in error.message
    assert f"CI_SHARK_{field.upper()}" in error.message
    assert "https://" in error.message


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080", "http://localhost:9000/", "http://[::1]:8000", "https://a.example/"],
)
def test_loopback_http_and_https_are_accepted(url: str) -> None:
    assert load_settings({"auth_url": url}).auth_url == url.rstrip("/")


@pytest.mark.parametrize(
    "url", ["auth.example", "ftp://auth.example", "https://", "javascript:alert(1)"]
)
def test_other_bad_urls_are_refused(url: str) -> None:
    assert "`auth-url`" in config_error({"auth_url": url}).message


def test_resource_takes_absolute_uris() -> None:
    settings = load_settings({"resource": "https://api.example/a  https://api.example/b"})
    assert settings.resource == ("https://api.example/a", "https://api.example/b")
    assert "`resource`" in config_error({"resource": "api-a"}).message


def test_ca_bundle_must_exist(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert load_settings({"ca_bundle": str(bundle)}).ca_bundle == str(bundle)
    assert "`ca-bundle`" in config_error({"ca_bundle": str(tmp_path / "missing.pem")}).message


# -- lists, maps, choices, booleans --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "channels"),
    [
        ("log", ("log",)),
        ("log,summary", ("log", "summary")),
        ("log, summary ,comment", ("log", "summary", "comment")),
        ("none", ("none",)),
        (" , ", ("auto",)),
    ],
)
def test_notify_channels(monkeypatch: pytest.MonkeyPatch, text: str, channels: tuple[str]) -> None:
    monkeypatch.setenv("CI_SHARK_NOTIFY", text)
    assert load_settings().notify == channels


def test_unknown_notify_channel() -> None:
    error = config_error({"notify": "log,email"})
    assert "`notify`" in error.message
    assert "comment" in error.message  # says what is allowed


@pytest.mark.parametrize(
    ("text", "params"),
    [
        ("audience=deploy-api", {"audience": "deploy-api"}),
        ("audience=api,prompt=consent", {"audience": "api", "prompt": "consent"}),
        ("audience = api\nprompt=consent\n", {"audience": "api", "prompt": "consent"}),
        ("claims=a=b", {"claims": "a=b"}),
        ("empty=", {"empty": ""}),
    ],
)
def test_extra_params(monkeypatch: pytest.MonkeyPatch, text: str, params: dict[str, str]) -> None:
    monkeypatch.setenv("CI_SHARK_EXTRA_PARAMS", text)
    assert load_settings().extra_params == params


@pytest.mark.parametrize("text", ["audience", "=value", "a=1,oops"])
def test_malformed_extra_params(text: str) -> None:
    assert "`extra-params`" in config_error({"extra_params": text}).message


@pytest.mark.parametrize("name", ["client_id", "client_secret", "scope", "resource", "grant_type"])
def test_extra_params_cannot_override_the_protocol(name: str) -> None:
    error = config_error({"extra_params": f"{name}={CANARY}"})
    assert name in error.message
    assert CANARY not in error.diagnostics()


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
    ],
)
@pytest.mark.parametrize("field", ["dpop", "allow_fork", "export_env", "renew"])
def test_booleans(monkeypatch: pytest.MonkeyPatch, field: str, text: str, *, value: bool) -> None:
    monkeypatch.setenv(f"CI_SHARK_{field.upper()}", text)
    assert getattr(load_settings(), field) is value


def test_bad_boolean_names_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_SHARK_ALLOW_FORK", "maybe")
    error = config_error()
    assert "`allow-fork`" in error.message
    assert "CI_SHARK_ALLOW_FORK" in error.message
    assert "true or false" in error.message


@pytest.mark.parametrize(("field", "good"), [("output_format", "shell"), ("provider", "keycloak")])
def test_choices(field: str, good: str) -> None:
    assert getattr(load_settings({field: good}), field) == good
    assert input_names(field) in config_error({field: "bogus"}).message


def test_several_problems_are_reported_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_SHARK_TIMEOUT", "soon")
    monkeypatch.setenv("CI_SHARK_NOTIFY", "pager")
    error = config_error()
    assert "CI_SHARK_TIMEOUT" in error.message
    assert "CI_SHARK_NOTIFY" in error.message


# -- errors never echo the value -----------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CI_SHARK_TIMEOUT", CANARY),
        ("CI_SHARK_AUTH_URL", f"http://auth.example/{CANARY}"),
        ("CI_SHARK_AUTH_URL", f"https://user:{CANARY}@auth.example"),
        ("CI_SHARK_TOKEN_ENDPOINT", f"{CANARY}"),
        ("CI_SHARK_DPOP", CANARY),
        ("CI_SHARK_NOTIFY", CANARY),
        ("CI_SHARK_EXTRA_PARAMS", CANARY),
        ("CI_SHARK_OUTPUT_FORMAT", CANARY),
        ("CI_SHARK_PROVIDER", CANARY),
        ("CI_SHARK_RESOURCE", CANARY),
        ("CI_SHARK_ALLOW_FORK", CANARY),
        ("CI_SHARK_CA_BUNDLE", f"/nonexistent/{CANARY}.pem"),
        ("CI_SHARK_GITHUB_TOKEN", f"ghs_{CANARY}\u00e9"),
        ("CI_SHARK_GITLAB_TOKEN", f"glpat {CANARY}"),
    ],
)
def test_validation_errors_never_echo_the_value(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    error = config_error()
    assert variable in error.message
    for text in (error.diagnostics(), str(error), repr(error), repr(error.args)):
        assert CANARY not in text
    assert error.__cause__ is None
    assert error.__suppress_context__  # the pydantic error (which has the input) is dropped


@pytest.mark.parametrize("variable", ["CI_SHARK_GITHUB_TOKEN", "CI_SHARK_GITLAB_TOKEN"])
@pytest.mark.parametrize("token", ["tok\u00e9n", "tok en", "tok\nen"])
def test_api_tokens_must_fit_in_a_header(
    monkeypatch: pytest.MonkeyPatch, variable: str, token: str
) -> None:
    # A non-ASCII token would fail inside the HTTP client, mid-flow, as "unexpected".
    monkeypatch.setenv(variable, token)
    error = config_error()
    assert variable in error.message
    assert "printable ASCII" in error.message


# -- required() ----------------------------------------------------------------------------


@pytest.mark.parametrize(("field", "env"), [("auth_url", "AUTH_URL"), ("client_id", "CLIENT_ID")])
def test_required_names_the_input_and_the_fix(field: str, env: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings().required(field)
    assert caught.value.exit_code == 2
    assert "required" in caught.value.message
    assert f"`{field.replace('_', '-')}`" in caught.value.message
    assert f"CI_SHARK_{env}" in caught.value.message
    assert caught.value.hint is not None


def test_required_returns_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_SHARK_CLIENT_ID", "ci-client")
    assert load_settings().required("client_id") == "ci-client"


def test_input_names_spell_every_way_in() -> None:
    assert input_names("auth_url") == "`auth-url` (CI_SHARK_AUTH_URL / --auth-url)"
    assert input_names("github_token") == "`github-token` (CI_SHARK_GITHUB_TOKEN)"
    assert input_names("dpop") == "`dpop` (CI_SHARK_DPOP / --dpop/--no-dpop)"


# -- the fix for each input ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "fix"),
    [
        ("CI_SHARK_TIMEOUT", "soon", "give a duration"),
        ("CI_SHARK_AUTH_URL", "http://auth.example", "issuer URL"),
        ("CI_SHARK_NOTIFY", "pager", "comma list of"),
        ("CI_SHARK_OUTPUT_FORMAT", "yaml", "one of auto, github, dotenv, shell, json"),
        ("CI_SHARK_DPOP", "maybe", "true or false"),
        ("CI_SHARK_EXTRA_PARAMS", "novalue", "K=V pairs"),
    ],
)
def test_every_config_error_names_the_fix_for_that_input(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fix: str
) -> None:
    monkeypatch.setenv(variable, value)
    error = config_error()
    assert fix in (error.hint or "")
    assert "the message never repeats its value" not in error.diagnostics()


def test_explicit_endpoints_are_kept_exactly_as_given() -> None:
    settings = load_settings(
        {
            "auth_url": "https://as.example/",
            "token_endpoint": "https://as.example/o/token/",
            "device_authorization_endpoint": "https://as.example//api/device",
        }
    )
    assert settings.auth_url == "https://as.example"  # a base: paths are added to it
    assert settings.token_endpoint == "https://as.example/o/token/"
    assert settings.device_authorization_endpoint == "https://as.example//api/device"


@pytest.mark.parametrize(
    "entries", ["sub:248289761001,user:alice", "email:alice@example.com", "alice", "sub:1"]
)
def test_allowed_approvers_take_typed_entries(entries: str) -> None:
    assert load_settings({"allowed_approvers": entries}).allowed_approvers == tuple(
        entries.split(",")
    )


def test_an_empty_typed_approver_entry_is_refused() -> None:
    error = config_error({"allowed_approvers": "sub:"})
    assert "allowed-approvers" in error.message


@pytest.mark.parametrize(
    ("entries", "said"),
    [
        ("alice@example.com", "write email:alice@example.com"),  # was an email, implicitly
        ("sub:1,uid:alice", "`uid:alice`: an entry starts with sub:, user: or email:"),
    ],
)
def test_an_approver_entry_that_names_no_known_claim_is_refused(entries: str, said: str) -> None:
    error = config_error({"allowed_approvers": entries})
    assert said in error.message


@pytest.mark.parametrize("channels", ["webhook", "issue,log", "log,summary,comment,webhook"])
def test_notify_takes_webhook_and_issue(channels: str) -> None:
    assert load_settings({"notify": channels}).notify == tuple(channels.split(","))


def test_the_webhook_url_is_a_secret_and_follows_the_https_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CI_SHARK_WEBHOOK_URL", "https://hooks.example/T0/B0/xyz")
    url = load_settings().webhook_url
    assert isinstance(url, Secret)
    monkeypatch.setenv("CI_SHARK_WEBHOOK_URL", "http://hooks.example/T0/B0/xyz")
    error = config_error()
    assert "CI_SHARK_WEBHOOK_URL" in error.message
    assert "xyz" not in error.diagnostics()


# -- workload identity ---------------------------------------------------------------------


def test_workload_identity_is_off_by_default_and_takes_every_way_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().workload_identity is False
    assert load_settings().workload_identity_audience is None
    monkeypatch.setenv("CI_SHARK_WORKLOAD_IDENTITY", "true")
    monkeypatch.setenv("CI_SHARK_WORKLOAD_IDENTITY_AUDIENCE", "https://auth.example/realms/ci")
    settings = load_settings()
    assert settings.workload_identity is True
    assert settings.workload_identity_audience == "https://auth.example/realms/ci"
    monkeypatch.delenv("CI_SHARK_WORKLOAD_IDENTITY_AUDIENCE")
    assert load_settings({"workload_identity": False}).workload_identity is False  # flag wins
    assert "`workload-identity-audience` (CI_SHARK_WORKLOAD_IDENTITY_AUDIENCE / " in (
        input_names("workload_identity_audience")
    )


def test_workload_identity_and_a_client_secret_are_one_way_too_many(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CI_SHARK_CLIENT_SECRET", CANARY)
    error = config_error({"workload_identity": True})
    assert "`client-secret` and `workload-identity` are both set" in error.message
    assert "remove `client-secret`" in (error.hint or "")
    assert CANARY not in error.diagnostics()


def test_an_audience_without_workload_identity_is_refused() -> None:
    error = config_error({"workload_identity_audience": "https://auth.example"})
    assert "`workload-identity-audience` is set but `workload-identity` is not" in error.message


@pytest.mark.parametrize("audience", ["two words", "tab\there", "ünïcode", "x" * 1001])
def test_the_audience_is_one_printable_word(audience: str) -> None:
    error = config_error({"workload_identity": True, "workload_identity_audience": audience})
    assert "must be one word of printable ASCII" in error.message
    assert audience not in error.diagnostics()
