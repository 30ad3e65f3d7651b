"""The CLI's own promises: how errors become exit codes and what they may print."""

from __future__ import annotations

import argparse

import pytest

from ci_shark import cli
from ci_shark.commands import REVOKE_BUDGET_S
from ci_shark.config import ExplicitSettings


def test_an_unexpected_error_prints_its_type_and_place_never_its_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: argparse.Namespace) -> int:
        raise ValueError("token=canary-secret-8d1f")

    monkeypatch.setattr(cli, "_proof", broken)
    code = cli.main(["proof", "--method", "GET", "--url", "https://api.example.com/x"])

    captured = capsys.readouterr()
    assert code == 1
    assert "unexpected failure: ValueError at test_cli.py:" in captured.err
    assert "canary-secret" not in captured.err + captured.out


def test_explicit_settings_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI_SHARK_AUTH_URL", "https://attacker.example")
    monkeypatch.setenv("CI_SHARK_TIMEOUT", "not a duration")
    settings = ExplicitSettings(auth_url="http://127.0.0.1:8080", client_id="demo")
    assert settings.auth_url == "http://127.0.0.1:8080"
    assert settings.timeout == 600


def test_bare_options_mean_login() -> None:
    args = cli.build_parser().parse_args(cli._with_default_command(["--scope", "x"]))
    assert args.command == "login"
    assert args.scope == "x"


def test_revoke_has_a_short_deadline_of_its_own_by_default() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["revoke"]).max_time == REVOKE_BUDGET_S == 15.0
    assert parser.parse_args(["revoke", "--max-time", "3"]).max_time == 3.0


@pytest.mark.parametrize("nonce", ["-starts-with-a-dash", "--two-dashes", "plain"])
def test_a_nonce_may_start_with_a_dash(nonce: str) -> None:
    # base64url nonces start with "-" one time in 64; argparse alone reads that as an option.
    argv = ["proof", "--method", "GET", "--url", "https://api.test/", "--nonce", nonce]
    args = cli.build_parser().parse_args(cli._with_default_command(argv))
    assert args.nonce == nonce
    assert args.url == "https://api.test/"


def test_a_login_secret_may_start_with_a_dash() -> None:
    argv = ["--client-id", "-id", "--client-secret", "-s3cret", "--scope", "read"]
    args = cli.build_parser().parse_args(cli._with_default_command(argv))
    assert (args.client_id, args.client_secret, args.scope) == ("-id", "-s3cret", "read")


def test_a_flag_followed_by_a_value_is_left_alone() -> None:
    argv = [
        "proof",
        "--method",
        "GET",
        "--url",
        "https://api.test/",
        "--nonce",
        "n",
        "--key-file",
        "k",
    ]
    args = cli.build_parser().parse_args(cli._with_default_command(argv))
    assert (args.nonce, str(args.key_file)) == ("n", "k")


@pytest.mark.parametrize(
    "after",
    [["--no-dpop"], ["--allowed-approvers=alice"], ["--no-dp"]],
)
def test_a_missing_value_before_another_option_is_still_an_error(
    after: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # `--client-id $UNSET --no-dpop`: the next option is not taken as the value.
    argv = cli._with_default_command(["--client-id", *after])
    with pytest.raises(SystemExit) as stopped:
        cli.build_parser().parse_args(argv)
    assert stopped.value.code == 2
    assert "--client-id: expected one argument" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "env", "shell"),
    [
        (["--output-format", "shell", "--bogus"], None, True),
        (["login", "--output-format=shell", "--bogus"], None, True),
        (["--output-fo", "shell", "--bogus"], None, True),  # argparse takes abbreviations
        (["--bogus"], "shell", True),
        (["--output-format", "json", "--bogus"], "shell", False),  # the flag wins
        (
            ["--output-format", "shell", "--output-format", "json", "--bogus"],
            None,
            False,
        ),  # the last wins
        (["proof", "--bogus"], "shell", False),  # proof's stdout is a proof, not exports
        (["--bogus"], None, False),
    ],
)
def test_only_a_shell_login_hands_eval_an_exit_on_a_usage_error(
    argv: list[str],
    env: str | None,
    shell: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if env is None:
        monkeypatch.delenv("CI_SHARK_OUTPUT_FORMAT", raising=False)
    else:
        monkeypatch.setenv("CI_SHARK_OUTPUT_FORMAT", env)
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert (capsys.readouterr().out == "exit 2\n") is shell
