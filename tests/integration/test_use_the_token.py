"""Using the credential after login, as later steps do: `ci-shark request`, `refresh`,
`revoke`, each a subprocess against the sandbox's DPoP-protected `/api/*` (issue 10)."""

from __future__ import annotations

import gzip
import json
import socket
import stat
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from support.cli import (
    CliResult,
    clean_env,
    login_env,
    run_bash,
    run_cli,
    run_cli_twice_at_once,
    run_process,
)
from support.github_fakes import RunnerFiles, workflow_commands
from support.job_outputs import job_folder, secrets_of
from support.loopback_http import LoopbackServer

from ci_shark.sandbox import TOKEN_PATH, SandboxServer

SandboxFactory = Callable[..., SandboxServer]


class EchoingApi:
    """An API on loopback that answers every request the same way."""

    def __init__(
        self, text: str, *, status: int = 403, raw: bytes | None = None, encoding: str = ""
    ) -> None:
        body = raw if raw is not None else text.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(status)
                if encoding:
                    self.send_header("Content-Encoding", encoding)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = LoopbackServer(Handler)
        self.url = self._server.url + "/api"

    def stop(self) -> None:
        self._server.stop()


def logged_in(server: SandboxServer, tmp: Path, **extra: str) -> Path:
    """A login that left its credentials in out.json (and the key file beside it)."""
    done = run_cli([], login_env(server, tmp, **extra), cwd=tmp)
    assert done.returncode == 0, done.log
    return tmp / "out.json"


def use(tmp: Path, *args: str, **env: str) -> CliResult:
    return run_cli(list(args), clean_env(env), cwd=tmp)


def secrets_in(credentials: Path) -> list[str]:
    return secrets_of(json.loads(credentials.read_text()))


def assert_no_secret(result: CliResult, credentials: Path, *, allow_stdout: bool = False) -> None:
    for secret in secrets_in(credentials):
        assert secret not in result.stderr
        if not allow_stdout:
            assert secret not in result.stdout


# -- request -------------------------------------------------------------------------------


def test_get_with_a_dpop_proof_through_a_nonce_challenge(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    creds = logged_in(server, tmp_path)
    challenges = server.stats.nonce_challenges
    done = use(tmp_path, "request", "--credentials", str(creds), f"{server.url}/api/echo?x=1")
    assert done.returncode == 0, done.log
    echoed = json.loads(done.stdout)
    assert echoed["method"] == "GET"
    assert echoed["path"] == "/api/echo?x=1"
    assert echoed["scheme"] == "DPoP"
    assert echoed["jkt"] == json.loads(creds.read_text())["SHARK_DPOP_JKT"]
    assert server.stats.nonce_challenges == challenges + 1  # answered with exactly one retry
    assert_no_secret(done, creds)


def test_a_bare_401_with_a_fresh_nonce_is_answered_too(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    # glewlwyd sends only a fresh DPoP-Nonce with a bare 401.
    server = sandbox_factory(approve_after_s=1, bare_nonce_challenge=True)
    creds = logged_in(server, tmp_path)
    done = use(tmp_path, "request", "--credentials", str(creds), f"{server.url}/api/echo")
    assert done.returncode == 0, done.log
    assert json.loads(done.stdout)["scheme"] == "DPoP"


@pytest.mark.parametrize(
    ("flags", "content_type", "body"),
    [
        (["-d", "a=1&b=2"], "application/x-www-form-urlencoded", "a=1&b=2"),
        (["--json", '{"ref": "v1"}'], "application/json", '{"ref": "v1"}'),
        (["-d", "@payload.txt", "-H", "Content-Type: text/plain"], "text/plain", "from a file\n"),
    ],
    ids=["form", "json", "file"],
)
def test_post_with_a_body(
    sandbox_factory: SandboxFactory,
    tmp_path: Path,
    flags: list[str],
    content_type: str,
    body: str,
) -> None:
    server = sandbox_factory(approve_after_s=1)
    creds = logged_in(server, tmp_path)
    (tmp_path / "payload.txt").write_text("from a file\n")
    done = use(tmp_path, "request", "--credentials", str(creds), *flags, f"{server.url}/api/echo")
    assert done.returncode == 0, done.log
    echoed = json.loads(done.stdout)
    assert echoed["method"] == "POST"
    assert echoed["content_type"] == content_type
    assert echoed["body"] == body


def test_a_bearer_token_goes_as_bearer(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory(approve_after_s=1, require_dpop=False)
    creds = logged_in(server, tmp_path, CI_SHARK_DPOP="false")
    assert json.loads(creds.read_text())["SHARK_TOKEN_TYPE"] == "Bearer"
    done = use(tmp_path, "request", "--credentials", str(creds), f"{server.url}/api/echo")
    assert done.returncode == 0, done.log
    assert json.loads(done.stdout)["scheme"] == "Bearer"


def test_an_http_error_exits_22_with_the_status_and_writes_the_body(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    creds = logged_in(server, tmp_path)
    done = use(tmp_path, "request", "--credentials", str(creds), f"{server.url}/api/nothing-here")
    assert done.returncode == 22, done.log
    assert "HTTP 404" in done.stderr
    assert done.stdout  # the body, as curl --fail-with-body


def test_a_redirect_to_another_origin_is_not_followed_with_the_token(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    creds = logged_in(server, tmp_path)
    port = server.url.rsplit(":", 1)[1]
    elsewhere = f"http://localhost:{port}/api/echo"  # the same server, another origin
    done = use(
        tmp_path,
        "request",
        "--credentials",
        str(creds),
        f"{server.url}/api/redirect?to={elsewhere}&status=302",
    )
    assert done.returncode == 5, done.log
    assert "another origin" in done.stderr
    assert not any(record.path.startswith("/api/echo") for record in server.stats.requests), (
        "the token went to the other origin"
    )


def test_a_same_origin_redirect_is_followed(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    creds = logged_in(server, tmp_path)
    done = use(
        tmp_path,
        "request",
        "--credentials",
        str(creds),
        f"{server.url}/api/redirect?to=/api/echo&status=307",
    )
    assert done.returncode == 0, done.log
    assert json.loads(done.stdout)["path"] == "/api/echo"


def test_a_large_body_goes_to_a_0600_file(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory(approve_after_s=1)
    creds = logged_in(server, tmp_path)
    out = tmp_path / "body.bin"
    n = 3 * 1024 * 1024
    done = use(
        tmp_path,
        "request",
        "--credentials",
        str(creds),
        "-o",
        str(out),
        f"{server.url}/api/bytes?n={n}",
    )
    assert done.returncode == 0, done.log
    data = out.read_bytes()
    assert len(data) == n
    assert data[:300] == bytes(i % 256 for i in range(300))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_an_expired_token_is_refreshed_once_and_the_file_rewritten(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1, access_token_ttl_s=1)
    creds = logged_in(server, tmp_path)
    before = json.loads(creds.read_text())
    time.sleep(1.2)  # the access token lives 1 s
    done = use(tmp_path, "request", "--credentials", str(creds), f"{server.url}/api/echo")
    assert done.returncode == 0, done.log
    assert done.stderr.count("refreshing it") == 1
    after = json.loads(creds.read_text())
    assert after["SHARK_ACCESS_TOKEN"] != before["SHARK_ACCESS_TOKEN"]
    assert after["SHARK_DPOP_JKT"] == before["SHARK_DPOP_JKT"]  # the same key, cnf.jkt unchanged
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert json.loads(done.stdout)["jkt"] == before["SHARK_DPOP_JKT"]
    assert_no_secret(done, creds)


def test_two_requests_refreshing_at_once_send_the_rotating_refresh_token_once(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    # Issue 20.7: two steps (or two background jobs) calling the API as the token expires.
    # The first refresh answers late; without the lock beside the file the other process
    # would send the same refresh token meanwhile, and this server (RFC 9700 reuse
    # detection, on by default) would end the whole grant.
    server = sandbox_factory(approve_after_s=0, access_token_ttl_s=1, token_faults=["ok", "slow:3"])
    creds = logged_in(server, tmp_path)
    time.sleep(1.2)  # the access token lives 1 s
    both = run_cli_twice_at_once(
        ["request", "--credentials", str(creds), f"{server.url}/api/echo"],
        clean_env(),
        cwd=tmp_path,
    )
    assert [done.returncode for done in both] == [0, 0], [done.log for done in both]
    assert "invalid_grant" not in server.stats.outcomes(TOKEN_PATH)
    assert sum("another ci-shark process refreshed" in done.stderr for done in both) == 1
    later = use(tmp_path, "refresh", "--credentials", str(creds))
    assert later.returncode == 0, later.log  # the grant is alive


def test_refresh_rewrites_the_credentials_with_the_same_key(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    creds = logged_in(server, tmp_path)
    before = json.loads(creds.read_text())
    done = use(tmp_path, "refresh", "--credentials", str(creds))
    assert done.returncode == 0, done.log
    after = json.loads(creds.read_text())
    assert after["SHARK_ACCESS_TOKEN"] != before["SHARK_ACCESS_TOKEN"]
    assert after["SHARK_TOKEN_TYPE"] == "DPoP"
    assert after["SHARK_DPOP_JKT"] == before["SHARK_DPOP_JKT"]
    assert after["SHARK_DPOP_KEY_FILE"] == before["SHARK_DPOP_KEY_FILE"]
    assert_no_secret(done, creds)
    # the new token works
    echo = use(tmp_path, "request", "--credentials", str(creds), f"{server.url}/api/echo")
    assert echo.returncode == 0, echo.log


def test_revoke_reads_the_same_credentials_file(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    creds = logged_in(server, tmp_path)
    values = json.loads(creds.read_text())
    done = use(tmp_path, "revoke", "--credentials", str(creds))
    assert done.returncode == 0, done.log
    assert "revoked the refresh token" in done.stderr
    assert "revoked the access token" in done.stderr
    assert not Path(values["SHARK_DPOP_KEY_FILE"]).exists()
    after = use(tmp_path, "request", "--credentials", str(creds), f"{server.url}/api/echo")
    assert after.returncode != 0  # the token is dead (and its key gone)


def test_a_gitlab_shaped_job_evals_requests_and_revokes_in_after_script(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    """The recipe docs/gitlab.md gives: the login and the use in one shell; the revoke in
    `after_script`, a new shell that has none of the eval'ed variables, from the 0600 file
    the login wrote into the job's private folder."""
    server = sandbox_factory(approve_after_s=1)
    env = login_env(server, tmp_path, GITLAB_CI="true", CI_JOB_ID="77", CI_SHARK_NOTIFY="log")
    env.pop("CI_SHARK_OUTPUT_FORMAT")
    env.pop("CI_SHARK_OUTPUT_FILE")
    env["TMPDIR"] = str(tmp_path)
    env["PYTHON"] = sys.executable
    script = f"""
set -euo pipefail
SHARK_EXPORTS="$("$PYTHON" -m ci_shark --output-format shell)"
eval "$SHARK_EXPORTS"; unset SHARK_EXPORTS
"$PYTHON" -m ci_shark request {server.url}/api/echo > reply.json
"""
    job = run_bash(script, env, cwd=tmp_path)
    assert job.returncode == 0, job.log
    assert json.loads((tmp_path / "reply.json").read_text())["scheme"] == "DPoP"
    # after_script: a new shell, no SHARK_* in it
    after = run_bash('"$PYTHON" -m ci_shark revoke', env, cwd=tmp_path)
    assert after.returncode == 0, after.log
    assert "revoked the access token" in after.stderr
    assert list(job_folder(tmp_path, "77").iterdir()) == []  # key and credentials removed


# -- what a review found: each a way the token or the job was hurt ---------------------------


def gitlab_shell_env(server: SandboxServer, tmp: Path) -> dict[str, str]:
    """A GitLab job that logged in the documented way: shell exports, eval'd."""
    env = login_env(server, tmp, GITLAB_CI="true", CI_JOB_ID="88", CI_SHARK_NOTIFY="log")
    env.pop("CI_SHARK_OUTPUT_FILE")
    env["CI_SHARK_OUTPUT_FORMAT"] = "shell"  # as the template sets it, for every command
    env["TMPDIR"] = str(tmp)
    env["PYTHON"] = sys.executable
    return env


def test_a_refresh_inside_request_prints_no_secret_and_saves_the_new_tokens(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1, access_token_ttl_s=1)
    env = gitlab_shell_env(server, tmp_path)
    script = f"""
set -euo pipefail
eval "$("$PYTHON" -m ci_shark)"
sleep 1.2
"$PYTHON" -m ci_shark request {server.url}/api/echo > first.json
"$PYTHON" -m ci_shark request {server.url}/api/echo > second.json
"""
    job = run_bash(script, env, cwd=tmp_path)
    assert job.returncode == 0, job.log
    first = json.loads((tmp_path / "first.json").read_text())  # only the API's answer
    assert json.loads((tmp_path / "second.json").read_text())["scheme"] == "DPoP"
    assert first["scheme"] == "DPoP"
    saved = json.loads((job_folder(tmp_path, "88") / "ci-shark.json").read_text())
    for secret in secrets_in(job_folder(tmp_path, "88") / "ci-shark.json"):
        assert secret not in job.stderr  # GitLab cannot mask: nothing printed at all
    # after_script, a new shell: the newest tokens, from the job's file
    revoked = run_bash('"$PYTHON" -m ci_shark revoke', env, cwd=tmp_path)
    assert revoked.returncode == 0, revoked.log
    echo = run_cli(
        ["request", f"{server.url}/api/echo"],
        clean_env(
            {"SHARK_ACCESS_TOKEN": saved["SHARK_ACCESS_TOKEN"], "SHARK_TOKEN_TYPE": "Bearer"}
        ),
    )
    assert echo.returncode != 0  # the refreshed token is dead too


def test_azure_request_writes_only_the_answer_to_stdout(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    creds = logged_in(server, tmp_path)
    env = clean_env({"TF_BUILD": "True", "AGENT_TEMPDIRECTORY": str(tmp_path)})
    done = run_cli(["request", "--credentials", str(creds), f"{server.url}/api/echo"], env)
    assert done.returncode == 0, done.log
    assert json.loads(done.stdout)["scheme"] == "DPoP"  # no ##vso line in the data
    assert "##vso[task.setsecret]" in done.stderr  # the agent reads stderr too


def test_partial_variables_do_not_shadow_the_jobs_file(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    # A GitHub step that maps only the access token still sends it DPoP-bound, from the file.
    server = sandbox_factory(approve_after_s=1)
    env = login_env(server, tmp_path, GITHUB_ACTIONS="true", GITHUB_OUTPUT=str(tmp_path / "o"))
    env.pop("CI_SHARK_OUTPUT_FORMAT")
    env.pop("CI_SHARK_OUTPUT_FILE")
    (tmp_path / "o").write_text("")
    assert run_cli([], env, cwd=tmp_path).returncode == 0
    values = json.loads((tmp_path / "ci-shark.json").read_text())
    later = clean_env(
        {
            "GITHUB_ACTIONS": "true",
            "RUNNER_TEMP": str(tmp_path),
            "SHARK_ACCESS_TOKEN": values["SHARK_ACCESS_TOKEN"],
        }
    )
    done = run_cli(["request", f"{server.url}/api/echo"], later)
    assert done.returncode == 0, done.log
    assert json.loads(done.stdout)["scheme"] == "DPoP"


def test_an_echoed_token_is_redacted_from_the_error(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    creds = logged_in(server, tmp_path)
    token = json.loads(creds.read_text())["SHARK_ACCESS_TOKEN"]
    echo = EchoingApi(f"invalid token: DPoP {token}")
    try:
        done = use(tmp_path, "request", "--credentials", str(creds), "-o", "x", echo.url)
    finally:
        echo.stop()
    assert done.returncode == 22, done.log
    assert "invalid token: DPoP ***" in done.stderr
    assert token not in done.log


def test_max_time_bounds_a_server_that_never_answers(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    creds = logged_in(server, tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/api"
        began = time.monotonic()
        done = use(tmp_path, "request", "--credentials", str(creds), "--max-time", "2", url)
    assert time.monotonic() - began < 10
    assert done.returncode == 1, done.log
    assert "--max-time 2s" in done.stderr


@pytest.mark.parametrize("status", [200, 401])
def test_a_compressed_answer_is_written_as_sent_never_inflated(
    sandbox_factory: SandboxFactory, tmp_path: Path, status: int
) -> None:
    server = sandbox_factory(approve_after_s=1)
    creds = logged_in(server, tmp_path)
    bomb = gzip.compress(gzip.compress(gzip.compress(b"\0" * (256 << 20))))
    api = EchoingApi("", status=status, raw=bomb, encoding="gzip, gzip, gzip")
    out = tmp_path / "body"
    try:
        done = use(tmp_path, "request", "--credentials", str(creds), "-o", str(out), api.url)
    finally:
        api.stop()
    assert done.returncode == (0 if status == 200 else 22), done.log
    assert out.read_bytes() == bomb  # as curl without --compressed: what came off the wire
    assert "MemoryError" not in done.log


@pytest.mark.parametrize("header", ["X-Name: caf\u00e9", "X-Bad\nInjected: 1", "no-colon"])
def test_a_bad_header_is_a_usage_error_that_repeats_nothing(tmp_path: Path, header: str) -> None:
    done = run_cli(["request", "-H", header, "https://api.example/x"], clean_env())
    assert done.returncode == 2, done.log
    assert header.split(":", maxsplit=1)[0] not in done.stderr.replace("-H number 1", "")


def test_a_failed_refresh_stops_an_eval(tmp_path: Path) -> None:
    done = run_bash(
        f'eval "$({sys.executable} -m ci_shark refresh --output-format shell)"; echo still-here',
        clean_env({"TMPDIR": str(tmp_path)}),
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "still-here" not in done.stdout


def test_refresh_and_revoke_use_the_endpoints_the_login_used(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    # No metadata, a generic server: only the explicit endpoints say where it is.
    server = sandbox_factory(approve_after_s=1, metadata=False)
    creds = logged_in(
        server,
        tmp_path,
        CI_SHARK_PROVIDER="generic",
        CI_SHARK_DEVICE_AUTHORIZATION_ENDPOINT=f"{server.url}/oauth/device",
        CI_SHARK_TOKEN_ENDPOINT=f"{server.url}/oauth/token",
    )
    refreshed = use(tmp_path, "refresh", "--credentials", str(creds))
    assert refreshed.returncode == 0, refreshed.log
    # A generic server without metadata names no revocation endpoint: revoke says so
    # plainly rather than guessing a path (see the next test for what it leaves).
    revoked = use(tmp_path, "revoke", "--credentials", str(creds))
    assert revoked.returncode == 0, revoked.log
    assert "names no revocation endpoint (RFC 7009)" in revoked.stderr
    assert server.stats.outcomes("/oauth/revoke") == []


def test_revoke_at_a_server_that_cannot_revoke_warns_until_when_and_exits_0(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    """GitHub and Entra ID have no RFC 7009 endpoint. The always-run last step cannot change
    that: a failure there would fail every job. It warns (an annotation on GitHub) with the
    recorded expiry, leaves the server alone, and removes ci_shark's own copies."""
    server = sandbox_factory(approve_after_s=0, metadata=False)
    runner = RunnerFiles.create(tmp_path, {})
    default = runner.temp / "ci-shark.json"  # where a GitHub job's login leaves them
    login = run_cli(
        [],
        login_env(
            server,
            runner.temp,
            CI_SHARK_PROVIDER="generic",
            CI_SHARK_DEVICE_AUTHORIZATION_ENDPOINT=f"{server.url}/oauth/device",
            CI_SHARK_TOKEN_ENDPOINT=f"{server.url}/oauth/token",
            CI_SHARK_OUTPUT_FILE=str(default),
        ),
        cwd=tmp_path,
    )
    assert login.returncode == 0, login.log
    issued = json.loads(default.read_text())
    key_file = Path(issued["SHARK_DPOP_KEY_FILE"])
    secrets = secrets_of(issued)

    github_step = clean_env(runner.env(event_name="push", api_url="http://127.0.0.1:9"))
    revoked = run_cli(["revoke"], github_step, cwd=tmp_path)

    assert revoked.returncode == 0, revoked.log
    (warning,) = [c for c in workflow_commands(revoked.stderr) if c.name == "warning"]
    assert f"{server.url} names no revocation endpoint (RFC 7009)" in warning.data
    assert "nothing was revoked" in warning.data
    assert f"the access token until {issued['SHARK_EXPIRES_AT']}" in warning.data
    assert "the refresh token until the server ends the grant" in warning.data
    assert "error" not in [c.name for c in workflow_commands(revoked.stderr)]
    assert server.stats.outcomes("/oauth/revoke") == []
    introspected = httpx.post(
        f"{server.url}/oauth/introspect", data={"token": issued["SHARK_REFRESH_TOKEN"]}
    )
    assert introspected.json()["active"] is True  # nothing guessed, nothing sent
    # Nothing on this machine goes on using them: the key and the default file are gone.
    assert not default.exists()
    assert not key_file.exists()
    for secret in secrets:
        assert secret not in revoked.stderr.replace(f"::add-mask::{secret}", "")


# A later command runs, then says which modules of the configuration library it loaded.
LOADED_PROBE = """\
import sys
from ci_shark.cli import main
code = main(sys.argv[1:])
loaded = [m for m in sys.modules if m.split(".")[0] in ("pydantic", "pydantic_settings")]
print("loaded:", " ".join(sorted(loaded)) or "nothing of pydantic", file=sys.stderr)
raise SystemExit(code)
"""


@pytest.mark.parametrize(
    "command",
    [
        ["request", "{url}/api/echo"],
        ["request", "{url}/api/no-such-path"],  # an HTTP error (exit 22) too
        ["proof", "--method", "GET", "--url", "{url}/api/echo", "--with-access-token"],
        ["refresh"],
        ["proxy", "--upstream", "{url}", "--", "true"],
        ["revoke"],
    ],
    ids=["request", "request-http-error", "proof", "refresh", "proxy", "revoke"],
)
def test_later_commands_do_not_load_the_logins_configuration_library(
    sandbox_factory: SandboxFactory, tmp_path: Path, command: list[str]
) -> None:
    """pydantic-settings is half of a later command's start-up (docs/perf.md), and the
    credentials file holds everything a later command needs."""
    server = sandbox_factory(approve_after_s=1)
    creds = logged_in(server, tmp_path)
    argv = [part.format(url=server.url) for part in command]
    done = run_process(
        [sys.executable, "-c", LOADED_PROBE, argv[0], "--credentials", str(creds), *argv[1:]],
        clean_env(),
        cwd=tmp_path,
    )
    assert done.returncode in (0, 22), done.log
    assert done.stderr.rstrip().endswith("loaded: nothing of pydantic"), done.stderr
