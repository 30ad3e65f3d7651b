"""A later command's settings: only the inputs it uses, checked and named as config.py
does, without loading the login's configuration library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ci_shark.config import load_settings
from ci_shark.errors import ConfigError, ExitCode
from ci_shark.later_settings import LaterSettings, load_later_settings
from ci_shark.secret import Secret


def test_the_inputs_a_later_command_uses_come_from_the_variables(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = load_later_settings(
        {
            "CI_SHARK_AUTH_URL": " https://auth.example.com/ ",
            "CI_SHARK_CLIENT_ID": "ci-deploy",
            "CI_SHARK_CLIENT_SECRET": "s3cret-value",
            "CI_SHARK_TOKEN_ENDPOINT": "https://auth.example.com/o/token/",
            "CI_SHARK_CA_BUNDLE": str(bundle),
            "CI_SHARK_PROVIDER": "keycloak",
            "CI_SHARK_OUTPUT_FORMAT": "dotenv",
            "CI_SHARK_OUTPUT_FILE": "creds.env",
        }
    )
    assert settings.auth_url == "https://auth.example.com"  # a base: the slash goes
    assert settings.token_endpoint == "https://auth.example.com/o/token/"  # exactly as given
    assert settings.client_id == "ci-deploy"
    assert settings.client_secret == Secret("s3cret-value")
    assert (settings.ca_bundle, settings.provider) == (str(bundle), "keycloak")
    assert (settings.output_format, settings.output_file) == ("dotenv", "creds.env")


def test_they_read_as_the_logins_settings_do(tmp_path: Path) -> None:
    env = {
        "CI_SHARK_AUTH_URL": "https://auth.example.com/",
        "CI_SHARK_CLIENT_ID": "ci",
        "CI_SHARK_OUTPUT_FILE": str(tmp_path / "out.json"),
        "CI_SHARK_PROVIDER": "auth0",
    }
    later = load_later_settings(env)
    login = load_settings(
        {"auth_url": env["CI_SHARK_AUTH_URL"], "client_id": "ci", "provider": "auth0"}
    )
    assert later.auth_url == login.auth_url
    assert later.provider == login.provider


def test_workload_identity_reads_as_the_login_reads_it() -> None:
    env = {
        "CI_SHARK_WORKLOAD_IDENTITY": "Yes",
        "CI_SHARK_WORKLOAD_IDENTITY_AUDIENCE": "https://auth.example.com",
    }
    later = load_later_settings(env)
    assert later.workload_identity is True
    assert later.workload_identity_audience == "https://auth.example.com"
    assert load_later_settings({"CI_SHARK_WORKLOAD_IDENTITY": "off"}).workload_identity is False
    login = load_settings(
        {"workload_identity": "Yes", "workload_identity_audience": "https://auth.example.com"}
    )
    assert (login.workload_identity, login.workload_identity_audience) == (
        later.workload_identity,
        later.workload_identity_audience,
    )


def test_a_client_secret_and_workload_identity_are_refused_as_the_login_refuses_them() -> None:
    """Nothing recorded (SHARK_* variables from elsewhere): a later step given both must not
    pick one quietly, and is told what the login would say."""
    secret = "later-step-secret-canary"
    env = {"CI_SHARK_CLIENT_SECRET": secret, "CI_SHARK_WORKLOAD_IDENTITY": "true"}
    with pytest.raises(ConfigError) as later:
        load_later_settings(env)
    with pytest.raises(ConfigError) as login:
        load_settings({"client_secret": secret, "workload_identity": True})
    assert later.value.exit_code == ExitCode.CONFIG
    assert (later.value.message, later.value.hint) == (login.value.message, login.value.hint)
    assert "one way" in later.value.message
    assert secret not in later.value.diagnostics()


def test_flags_win_and_empty_variables_are_unset() -> None:
    settings = load_later_settings(
        {"CI_SHARK_AUTH_URL": "https://env.example.com", "CI_SHARK_CLIENT_ID": "  "},
        {"auth_url": "https://flag.example.com", "client_id": None},
    )
    assert settings.auth_url == "https://flag.example.com"
    assert settings.client_id is None


def test_login_only_inputs_do_not_stop_a_later_step() -> None:
    # A job-wide variable meant for the login, with a value a login would refuse.
    settings = load_later_settings({"CI_SHARK_TIMEOUT": "forever", "CI_SHARK_NOTIFY": "pigeon"})
    assert settings == LaterSettings()
    assert settings.notify == ("none",)  # a later command announces nothing


@pytest.mark.parametrize(
    ("env", "named", "fix"),
    [
        ({"CI_SHARK_AUTH_URL": "http://auth.example.com"}, "CI_SHARK_AUTH_URL", "issuer URL"),
        ({"CI_SHARK_TOKEN_ENDPOINT": "ftp://x"}, "CI_SHARK_TOKEN_ENDPOINT", "https:// URL"),
        ({"CI_SHARK_CA_BUNDLE": "/nonexistent/ca.pem"}, "CI_SHARK_CA_BUNDLE", "readable PEM"),
        ({"CI_SHARK_PROVIDER": "acme"}, "CI_SHARK_PROVIDER", "use one of"),
        ({"CI_SHARK_OUTPUT_FORMAT": "yaml"}, "CI_SHARK_OUTPUT_FORMAT", "use one of"),
        ({"CI_SHARK_WORKLOAD_IDENTITY": "maybe"}, "CI_SHARK_WORKLOAD_IDENTITY", "true or false"),
        (
            {"CI_SHARK_WORKLOAD_IDENTITY_AUDIENCE": "two words"},
            "CI_SHARK_WORKLOAD_IDENTITY_AUDIENCE",
            "audience",
        ),
    ],
)
def test_a_bad_value_names_the_input_and_its_fix(env: dict[str, str], named: str, fix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_later_settings(env)
    assert caught.value.exit_code == ExitCode.CONFIG
    assert named in caught.value.message
    assert fix in (caught.value.hint or "")


def test_a_missing_required_input_is_named_as_the_login_names_it() -> None:
    with pytest.raises(ConfigError) as later:
        LaterSettings().required("client_id")
    with pytest.raises(ConfigError) as login:
        load_settings().required("client_id")
    assert (later.value.message, later.value.hint) == (login.value.message, login.value.hint)


def test_reading_them_loads_no_pydantic() -> None:
    code = (
        "import sys; from ci_shark.later_settings import load_later_settings; "
        "import ci_shark.request, ci_shark.commands, ci_shark.platforms; "
        "load_later_settings({'CI_SHARK_AUTH_URL': 'https://a.example'}); "
        "print(sorted(m for m in sys.modules if m.startswith('pydantic')))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]"
