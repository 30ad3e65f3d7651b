"""A new user's first mistakes cost seconds, say exactly what is wrong, and lose nothing
(issue 13): through the CLI, as subprocesses, against loopback servers."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.cli import CliJob, clean_env, login_env, run_cli, run_process
from support.loopback_http import JsonHandler, LoopbackServer, free_port

from ci_shark.sandbox import SandboxServer

SandboxFactory = Callable[..., SandboxServer]


FIRST_LINE = re.compile(r"\A.*\n")


def first_stderr_line(
    argv: list[str], env: dict[str, str], tmp: Path
) -> tuple[str, float, int, str]:
    """The first line the run prints, how long it took, and then the exit code and the rest."""
    with CliJob(argv, env, cwd=tmp) as job:
        first = job.wait_for(FIRST_LINE, timeout_s=60, stderr_only=True)[0]
        after = time.monotonic() - job.started
        code = job.wait(60)
        return first, after, code, job.stderr[len(first) :]


# -- finding the server --------------------------------------------------------------------


def test_an_unreachable_server_is_said_at_once_and_given_up_on_time(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = clean_env({"CI_SHARK_AUTH_URL": url, "CI_SHARK_CLIENT_ID": "x", "CI_SHARK_TIMEOUT": "6"})
    began = time.monotonic()
    first, after, code, rest = first_stderr_line([], env, tmp_path)
    assert after < 3, first  # not minutes of silence
    assert f"{url}/.well-known/oauth-authorization-server: connection refused" in first
    assert "trying again until" in first
    assert code == 1
    assert time.monotonic() - began < 15
    assert "gave up at the deadline" in rest
    assert "trying again" not in rest  # said once, then retried quietly (not 57 s of lines)
    assert "reachable from this machine" in rest  # not "from CI": this is a terminal


def test_a_host_that_does_not_resolve_says_dns(tmp_path: Path) -> None:
    env = clean_env(
        {
            "CI_SHARK_AUTH_URL": "https://auth.invalid",
            "CI_SHARK_CLIENT_ID": "x",
            "CI_SHARK_TIMEOUT": "3",
        }
    )
    first, _, code, _ = first_stderr_line([], env, tmp_path)
    assert "does not resolve (DNS)" in first
    assert code == 1


class NotOAuth(JsonHandler):
    """A web server that is not an authorization server: 404 for GET, 501 for POST."""

    def do_GET(self) -> None:
        self.send_json(404, {"message": "no such page"})

    def do_POST(self) -> None:
        self.send_response(501)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def not_oauth() -> Iterator[str]:
    server = LoopbackServer(NotOAuth)
    yield server.url
    server.stop()


def test_a_server_that_is_not_an_oauth_server_says_where_it_asked(
    not_oauth: str, tmp_path: Path
) -> None:
    env = clean_env({"CI_SHARK_AUTH_URL": not_oauth, "CI_SHARK_CLIENT_ID": "x"})
    done = run_cli([], env, cwd=tmp_path)
    assert done.returncode == 5, done.log
    assert f"{not_oauth}/oauth/device (from shark default paths (no metadata at" in done.stderr
    assert f"{not_oauth}/.well-known/oauth-authorization-server" in done.stderr
    assert "answered HTTP 501" in done.stderr
    assert "check `auth-url`" in done.stderr


# -- the outputs, before any device code ---------------------------------------------------


@pytest.mark.parametrize(
    "target",
    ["missing/out.json", "a-file/out.json", "a-dir"],
    ids=["missing-folder", "file-as-folder", "a-directory"],
)
def test_a_bad_output_file_is_found_before_any_device_code(
    sandbox_factory: SandboxFactory, tmp_path: Path, target: str
) -> None:
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-dir").mkdir()
    server = sandbox_factory()
    env = login_env(server, tmp_path, CI_SHARK_OUTPUT_FILE=str(tmp_path / target))
    began = time.monotonic()
    done = run_cli([], env, cwd=tmp_path)
    assert time.monotonic() - began < 10
    assert done.returncode == 2, done.log
    assert "`output-file`" in done.stderr
    assert "existing folder you can write to" in done.stderr
    assert server.grants == ()  # no device code was asked for: nothing to approve, or lose
    assert not (tmp_path / "missing").exists()  # nothing created behind the user's back


# -- times and durations -------------------------------------------------------------------


def test_an_interval_longer_than_the_time_left_is_named(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(interval_s=30)
    done = run_cli([], login_env(server, tmp_path, CI_SHARK_TIMEOUT="10"), cwd=tmp_path)
    assert done.returncode == 4, done.log
    assert "the server asks for 30s between polls, more than the 10s left" in done.stderr


def test_the_timeout_reads_as_people_write_it(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory()
    done = run_cli([], login_env(server, tmp_path, CI_SHARK_TIMEOUT="0.05min"), cwd=tmp_path)
    assert done.returncode == 4, done.log
    assert "not approved within 3s" in done.stderr


# -- the CLI teaches itself -----------------------------------------------------------------


def test_login_help_marks_the_required_inputs_and_shows_variables_and_defaults() -> None:
    text = run_cli(["login", "--help"], clean_env()).stdout
    required = text.split("required (flag or variable):")[1].split("login options:")[0]
    assert "--auth-url URL" in required
    assert "--client-id ID" in required
    assert "[CI_SHARK_TIMEOUT; default: 10m]" in " ".join(text.split())
    assert "--allow-fork" in text
    assert "fork (anyone can open one)" in " ".join(text.split())
    assert "examples:" in text


@pytest.mark.parametrize("command", ["login", "request", "refresh", "revoke", "proof", "demo"])
def test_every_command_has_a_description(command: str) -> None:
    done = run_cli([command, "--help"], clean_env())
    assert done.returncode == 0
    description = done.stdout.split("\n\n")[1]
    assert len(description.split()) > 8, description


@pytest.mark.parametrize(
    "argv", [["--version"], ["--help"], ["proof", "--help"], ["request", "--help"]]
)
def test_help_and_version_do_not_load_the_settings(argv: list[str]) -> None:
    # config.py loads pydantic (about a third of a login's start-up): only a login needs it.
    probe = (
        "import sys\nfrom ci_shark.cli import main\ntry:\n    main(sys.argv[1:])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted({'pydantic', 'ci_shark.config'} & set(sys.modules)))"
    )
    done = run_process([sys.executable, "-c", probe, *argv], clean_env())
    assert done.returncode == 0, done.log
    assert done.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [(["logn"], "did you mean login?"), (["--scopes", "x"], "did you mean --scope?")],
)
def test_a_typo_gets_a_did_you_mean(argv: list[str], suggestion: str) -> None:
    done = run_cli(argv, clean_env())
    assert done.returncode == 2
    assert suggestion in done.stderr


def test_demo_cleans_up_and_says_so(tmp_path: Path) -> None:
    done = run_cli(["demo", "--approve-after", "1"], clean_env({"TMPDIR": str(tmp_path)}))
    assert done.returncode == 0, done.log
    assert "Removed" in done.stdout
    assert "`python -I -m ci_shark.sandbox`" in done.stdout  # to paste in a checkout too
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("ci-shark-demo-")]
    kept = run_cli(["demo", "--approve-after", "1", "--keep"], clean_env({"TMPDIR": str(tmp_path)}))
    assert kept.returncode == 0, kept.log
    (folder,) = [p for p in tmp_path.iterdir() if p.name.startswith("ci-shark-demo-")]
    assert str(folder) in kept.stdout
    assert (folder / "ci-shark.env").is_file()


def test_an_auth_url_ending_in_oauth_names_the_doubled_path_and_the_fix(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory()
    env = clean_env({"CI_SHARK_AUTH_URL": f"{server.url}/oauth", "CI_SHARK_CLIENT_ID": "x"})
    done = run_cli([], env, cwd=tmp_path)
    assert done.returncode == 5, done.log
    assert f"{server.url}/oauth/oauth/device" in done.stderr
    # One line of its own, the input spelled out as the CLI does.
    assert (
        "ci_shark: error: `auth-url` (CI_SHARK_AUTH_URL / --auth-url) ends in /oauth, which "
        f"the shark paths add again: set `auth-url` to {server.url}\n"
    ) in done.stderr
