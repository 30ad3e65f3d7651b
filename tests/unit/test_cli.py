"""The CLI's own promises: how errors become exit codes and what they may print."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest

from ci_shark import cli, cli_args
from ci_shark.commands import REVOKE_BUDGET_S
from ci_shark.config import ExplicitSettings
from ci_shark.demo import listing
from ci_shark.oauth.tokens import TokenSet
from ci_shark.outputs import Credentials
from ci_shark.sandbox.options import argument_parser
from ci_shark.secret import Secret


def test_an_unexpected_error_prints_its_type_and_place_never_its_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(args: argparse.Namespace) -> None:
        raise ValueError("token=canary-secret-8d1f")

    monkeypatch.setitem(
        cli.COMMANDS, "proof", dataclasses.replace(cli.COMMANDS["proof"], run=broken)
    )
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


def parse(argv: list[str]) -> argparse.Namespace:
    return cli_args.parse_args(argv, cli.COMMANDS)


def test_bare_options_mean_login() -> None:
    args = parse(["--scope", "x"])
    assert args.command == "login"
    assert args.scope == "x"


def test_revoke_has_a_short_deadline_of_its_own_by_default() -> None:
    assert parse(["revoke"]).max_time == REVOKE_BUDGET_S == 15.0
    assert parse(["revoke", "--max-time", "3"]).max_time == 3.0


@pytest.mark.parametrize("command", ["request", "revoke", "proxy"])
def test_max_time_takes_a_duration_and_refuses_what_bounds_nothing(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = {"request": ["https://api.example.com"], "proxy": ["--upstream", "https://a.example"]}
    args = [command, *extra.get(command, [])]
    assert parse([*args, "--max-time", "2m"]).max_time == 120.0
    for unbounded in ("inf", "nan", "-1", "0", "abc"):
        with pytest.raises(SystemExit) as refused:
            parse([*args, "--max-time", unbounded])
        assert refused.value.code == 2
        said = capsys.readouterr().err
        assert f"argument --max-time: {unbounded!r} " in said
        assert ("e.g. 300, 15m" in said) or ("more than 0" in said)


@pytest.mark.parametrize("nonce", ["-starts-with-a-dash", "--two-dashes", "plain"])
def test_a_nonce_may_start_with_a_dash(nonce: str) -> None:
    # base64url nonces start with "-" one time in 64; argparse alone reads that as an option.
    argv = ["proof", "--method", "GET", "--url", "https://api.test/", "--nonce", nonce]
    args = parse(argv)
    assert args.nonce == nonce
    assert args.url == "https://api.test/"


def test_a_login_secret_may_start_with_a_dash() -> None:
    argv = ["--client-id", "-id", "--client-secret", "-s3cret", "--scope", "read"]
    args = parse(argv)
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
    args = parse(argv)
    assert (args.nonce, str(args.key_file)) == ("n", "k")


@pytest.mark.parametrize(
    "after",
    [["--no-dpop"], ["--allowed-approvers=alice"], ["--no-dp"]],
)
def test_a_missing_value_before_another_option_is_still_an_error(
    after: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # `--client-id $UNSET --no-dpop`: the next option is not taken as the value.
    with pytest.raises(SystemExit) as stopped:
        parse(["--client-id", *after])
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


def help_exit_codes(command: str, capsys: pytest.CaptureFixture[str]) -> set[str]:
    with pytest.raises(SystemExit) as stopped:
        cli.main([command, "--help"])
    assert stopped.value.code == 0
    listed = capsys.readouterr().out.split("exit codes:\n", 1)[1]
    return {line.split()[0] for line in listed.splitlines() if line.startswith("  ")}


@pytest.mark.parametrize(
    ("command", "codes"),
    [
        ("login", {"0", "1", "2", "3", "4", "5", "6", "130/143"}),
        ("request", {"0", "1", "2", "5", "22", "130/143"}),
        ("refresh", {"0", "1", "2", "5", "130/143"}),
        ("revoke", {"0", "1", "2", "5", "130/143"}),
        ("proof", {"0", "1", "2"}),
        ("demo", {"0", "1", "2", "3", "4", "130/143"}),
    ],
)
def test_each_command_lists_its_own_exit_codes(
    command: str, codes: set[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # A login's denial (3) or policy refusal (6) cannot end `request`; only it exits 22.
    assert help_exit_codes(command, capsys) == codes


# `python -m X` in a checkout runs the checkout's `X.py` (or a PR's `httpx.py`) first.
NOT_ISOLATED = re.compile(r"python3?\s+-m\s+ci_shark")


@pytest.mark.parametrize(
    "command", ["login", "request", "refresh", "revoke", "proof", "proxy", "demo"]
)
def test_no_help_shows_a_python_m_without_isolation(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    shown = capsys.readouterr().out
    assert not NOT_ISOLATED.search(shown), NOT_ISOLATED.findall(shown)


def test_the_sandboxs_help_and_the_demos_listing_show_python_i_m() -> None:
    sandbox_help = argument_parser().format_help()
    assert sandbox_help.startswith("usage: python -I -m ci_shark.sandbox ")
    assert not NOT_ISOLATED.search(sandbox_help)
    tokens = TokenSet(Secret("at"), "DPoP", 60, None, None, None, received_at=0.0)
    said = listing(Credentials(tokens, dpop_key=None), Path("listing"))
    assert "`python -I -m ci_shark.sandbox`" in said
    assert not NOT_ISOLATED.search(said)


def test_the_key_flag_takes_a_file_and_its_variable_the_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["login", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--dpop-private-key-file FILE a PEM or JWK private key file" in text
    assert "[CI_SHARK_DPOP_PRIVATE_KEY holds the key itself, not a path]" in text


def test_nothing_after_a_double_dash_is_rewritten() -> None:
    # What follows `--` is positional (e.g. a command to run), and must reach it verbatim.
    argv = ["--nonce", "-a", "--", "tool", "--client-id", "-b"]
    glued = cli_args.glue_opaque_values(argv, {"--nonce", "--client-id"})
    assert glued == ["--nonce=-a", "--", "tool", "--client-id", "-b"]
