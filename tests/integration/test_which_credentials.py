"""Which credentials a later command uses, where a login leaves them, and that a live token
is never lost or sent elsewhere (issues 20.1, 20.5, 20.7 and 23.4): each test runs the CLI
as a job's steps do, against loopback servers."""

from __future__ import annotations

import fcntl
import json
import os
import re
import resource
import shlex
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path

import httpx
from scripted_server import Answer, ScriptedServer, token_answer
from support.cli import (
    CliJob,
    CliResult,
    clean_env,
    cli_argv,
    login_env,
    run_cli,
    run_cli_twice_at_once,
    run_process,
)
from support.job_outputs import dotenv, job_folder, user_state_folder
from support.waits import until

from ci_shark.sandbox import REVOKE_PATH, TOKEN_PATH, SandboxServer

SandboxFactory = Callable[..., SandboxServer]


def ci_job(tmp: Path, server: SandboxServer, **extra: str) -> dict[str, str]:
    """A job on a CI ci_shark has no platform for (Jenkins-like: its job id in BUILD_TAG),
    logging in to ``server`` by default; the login's files go to the job's folder."""
    env = login_env(server, tmp, CI="true", BUILD_TAG="jenkins-deploy-7", TMPDIR=str(tmp))
    for name in ("CI_SHARK_OUTPUT_FORMAT", "CI_SHARK_OUTPUT_FILE", "RUNNER_TEMP"):
        env.pop(name)
    return {**env, **extra}


def step(args: list[str], env: dict[str, str], tmp: Path) -> CliResult:
    return run_cli(args, env, cwd=tmp)


def shark_variables(path: Path) -> dict[str, str]:
    """What `eval` of a login's exports leaves in a shell: its SHARK_* values."""
    return dotenv(path) if path.suffix == ".env" else json.loads(path.read_text())


def active(server: SandboxServer, token: str) -> bool:
    """Whether ``server`` still takes ``token`` (RFC 7662 introspection)."""
    answer = httpx.post(f"{server.url}/oauth/introspect", data={"token": token})
    return bool(answer.json()["active"])


# -- 20.1: what the user names wins ---------------------------------------------------------


def test_a_second_logins_variables_use_and_revoke_the_second_grant_at_the_second_server(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    first, second = sandbox_factory(approve_after_s=0), sandbox_factory(approve_after_s=0)
    job = ci_job(tmp_path, first)
    assert step([], job, tmp_path).returncode == 0  # the default file: the first grant
    default = job_folder(tmp_path, "jenkins-deploy-7") / "ci-shark.env"
    other = tmp_path / "second.env"
    login = step(["--auth-url", second.url, "--output-file", str(other)], job, tmp_path)
    assert login.returncode == 0, login.log
    named = {**job, **shark_variables(other)}  # the second login's exports, eval'd

    used = step(["request", f"{second.url}/api/echo"], named, tmp_path)
    assert used.returncode == 0, used.log
    assert json.loads(used.stdout)["jkt"] == named["SHARK_DPOP_JKT"]
    assert "using the credentials in the SHARK_* variables" in used.stderr

    revoked = step(["revoke"], named, tmp_path)
    assert revoked.returncode == 0, revoked.log
    assert "revoked the refresh token" in revoked.stderr
    # The job-wide CI_SHARK_AUTH_URL (the first server) is said, and not used.
    said = f"`auth-url` is {first.url}, but the credentials in the SHARK_* variables record"
    assert f"{said} {second.url}" in revoked.stderr
    assert second.stats.outcomes(REVOKE_PATH) == ["revoked", "revoked"]
    assert first.stats.outcomes(REVOKE_PATH) == []
    assert not active(second, named["SHARK_REFRESH_TOKEN"])
    assert active(first, dotenv(default)["SHARK_REFRESH_TOKEN"])  # the first grant lives on


def test_refresh_with_a_second_logins_variables_never_overwrites_the_first_logins_file(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    first, second = sandbox_factory(approve_after_s=0), sandbox_factory(approve_after_s=0)
    job = ci_job(tmp_path, first)
    assert step([], job, tmp_path).returncode == 0
    default = job_folder(tmp_path, "jenkins-deploy-7") / "ci-shark.env"
    before = default.read_text()
    other = tmp_path / "second.env"
    assert (
        step(["--auth-url", second.url, "--output-file", str(other)], job, tmp_path).returncode == 0
    )
    refreshed = step(["refresh"], {**job, **shark_variables(other)}, tmp_path)
    assert refreshed.returncode == 2, refreshed.log
    assert f"{default} holds another login's credentials" in refreshed.stderr
    assert "--credentials FILE" in refreshed.stderr
    assert default.read_text() == before
    assert "refreshed" not in second.stats.outcomes(TOKEN_PATH)  # nothing was spent


def test_a_refreshed_default_file_of_the_same_grant_beats_the_older_variables(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=0)
    job = ci_job(tmp_path, server)
    login = step(["--output-format", "shell"], job, tmp_path)  # eval'd: SHARK_* in the shell
    assert login.returncode == 0, login.log
    exported = [shlex.split(line)[1].split("=", 1) for line in login.stdout.splitlines()]
    shell = {**job, **dict(exported)}
    default = job_folder(tmp_path, "jenkins-deploy-7") / "ci-shark.json"
    first = step(["refresh"], shell, tmp_path)  # rewrites the job's file
    assert first.returncode == 0, first.log
    # The shell still holds the spent refresh token: sent again, this server (RFC 9700
    # reuse detection) would end the grant. The file's newer one goes instead.
    second = step(["refresh"], shell, tmp_path)
    assert second.returncode == 0, second.log
    assert f"using the credentials in {default}" in second.stderr
    assert server.stats.outcomes(TOKEN_PATH).count("refreshed") == 2
    used = step(["request", f"{server.url}/api/echo"], shell, tmp_path)
    assert used.returncode == 0, used.log


def test_the_newest_default_file_wins_whatever_its_format(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=0)
    job = ci_job(tmp_path, server)
    folder = job_folder(tmp_path, "jenkins-deploy-7")
    assert step(["--output-format", "json"], job, tmp_path).returncode == 0
    assert step(["--output-format", "dotenv"], job, tmp_path).returncode == 0
    newest = step(["request", f"{server.url}/api/echo"], job, tmp_path)
    assert newest.returncode == 0, newest.log
    assert f"using the credentials in {folder / 'ci-shark.env'}" in newest.stderr
    assert json.loads(newest.stdout)["jkt"] == dotenv(folder / "ci-shark.env")["SHARK_DPOP_JKT"]
    os.utime(folder / "ci-shark.json")  # now the JSON one is the newer
    again = step(["request", f"{server.url}/api/echo"], job, tmp_path)
    assert f"using the credentials in {folder / 'ci-shark.json'}" in again.stderr


def test_a_token_endpoint_setting_never_redirects_a_stored_refresh_token(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=0)
    elsewhere = ScriptedServer().start()
    elsewhere_url = elsewhere.url
    try:
        creds = tmp_path / "out.json"
        assert run_cli([], login_env(server, tmp_path), cwd=tmp_path).returncode == 0
        env = clean_env(
            {
                "CI_SHARK_TOKEN_ENDPOINT": f"{elsewhere.url}/token",
                "CI_SHARK_AUTH_URL": elsewhere.url,
                "CI_SHARK_CLIENT_SECRET": "cs-of-another-client-9f9f",
            }
        )
        done = run_cli(["refresh", "--credentials", str(creds)], env, cwd=tmp_path)
    finally:
        elsewhere.stop()
    assert done.returncode == 0, done.log
    assert elsewhere.requests == []  # neither the refresh token nor the secret went there
    assert server.stats.outcomes(TOKEN_PATH)[-1] == "refreshed"
    said = f"`token-endpoint` is {elsewhere_url}/token, but the credentials in {creds} record"
    assert f"{said} {server.url}/oauth/token" in done.stderr


def test_another_servers_client_secret_is_not_sent_and_the_fix_is_named(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    # The login's client is confidential; this step's secret belongs to another server.
    server = sandbox_factory(approve_after_s=0, client_secrets={"ci-shark-test": "s3cret-a"})
    creds = tmp_path / "out.json"
    env = login_env(server, tmp_path, CI_SHARK_CLIENT_SECRET="s3cret-a")
    assert run_cli([], env, cwd=tmp_path).returncode == 0
    other = {"CI_SHARK_AUTH_URL": "https://other.example", "CI_SHARK_CLIENT_SECRET": "s3cret-b"}
    done = run_cli(["refresh", "--credentials", str(creds)], clean_env(other), cwd=tmp_path)
    assert done.returncode == 2, done.log
    assert "with its client secret (client_secret_basic), and this step has none" in done.stderr
    assert "client-secret" in done.stderr
    assert server.stats.outcomes(TOKEN_PATH) == ["granted"]  # nothing sent anywhere
    assert "s3cret-b" not in done.log


def test_revoke_gives_up_on_a_server_that_is_gone_within_max_time(tmp_path: Path) -> None:
    with socket.socket() as gone:
        gone.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{gone.getsockname()[1]}"
        creds = tmp_path / "creds.json"
        creds.write_text(
            json.dumps(
                {
                    "SHARK_ACCESS_TOKEN": "at-to-revoke-1",
                    "SHARK_AUTH_URL": url,
                    "SHARK_CLIENT_ID": "ci",
                    "SHARK_TOKEN_ENDPOINT": f"{url}/token",
                    "SHARK_REVOCATION_ENDPOINT": f"{url}/revoke",
                }
            )
        )
        began = time.monotonic()
        done = run_cli(["revoke", "--credentials", str(creds), "--max-time", "2"], clean_env())
        took = time.monotonic() - began
    assert done.returncode == 1, done.log
    assert took < 8, took


# -- 20.5: the login's client authentication, recorded --------------------------------------


def post_only_server() -> ScriptedServer:
    """A server whose metadata takes the client secret in the form only."""
    server = ScriptedServer(
        token=[token_answer(refresh_token="rt-scripted-1"), token_answer(refresh_token="rt-2")]
    ).start()
    server.metadata = Answer(
        body={
            "issuer": server.url,
            "device_authorization_endpoint": f"{server.url}/device",
            "token_endpoint": f"{server.url}/token",
            "revocation_endpoint": f"{server.url}/revoke",
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
        }
    )
    return server


def test_refresh_and_revoke_authenticate_as_the_login_did(tmp_path: Path) -> None:
    server = post_only_server()
    try:
        env = login_env(server, tmp_path, CI_SHARK_DPOP="false", CI_SHARK_CLIENT_SECRET="cs-1")
        assert run_cli([], env, cwd=tmp_path).returncode == 0
        creds = tmp_path / "out.json"
        assert json.loads(creds.read_text())["SHARK_CLIENT_AUTH"] == "client_secret_post"
        later = clean_env({"CI_SHARK_CLIENT_SECRET": "cs-1"})  # a later step: only the secret
        refreshed = run_cli(["refresh", "--credentials", str(creds)], later, cwd=tmp_path)
        revoked = run_cli(["revoke", "--credentials", str(creds)], later, cwd=tmp_path)
    finally:
        server.stop()
    assert refreshed.returncode == 0, refreshed.log
    assert revoked.returncode == 0, revoked.log
    later_posts = server.posts("/token")[-1:] + server.posts("/revoke")
    assert len(later_posts) == 3
    for post in later_posts:
        assert post.form["client_secret"] == ["cs-1"]
        assert post.authorization is None  # not HTTP Basic, which this server does not take


def test_a_public_login_sends_no_client_secret_later(tmp_path: Path) -> None:
    server = ScriptedServer(token=[token_answer(refresh_token="rt-scripted-1")]).start()
    try:
        login = run_cli([], login_env(server, tmp_path, CI_SHARK_DPOP="false"), cwd=tmp_path)
        assert login.returncode == 0, login.log
        creds = tmp_path / "out.json"
        assert json.loads(creds.read_text())["SHARK_CLIENT_AUTH"] == "none"
        job_wide = clean_env({"CI_SHARK_CLIENT_SECRET": "cs-job-wide-1"})
        revoked = run_cli(["revoke", "--credentials", str(creds)], job_wide, cwd=tmp_path)
    finally:
        server.stop()
    assert revoked.returncode == 0, revoked.log
    for post in server.posts("/revoke"):
        assert "client_secret" not in post.form
        assert post.authorization is None


# -- 20.7: a refresh never leaves a live token lost ------------------------------------------


def test_an_unusable_answer_after_a_rotation_revokes_what_it_issued(tmp_path: Path) -> None:
    server = ScriptedServer(
        token=[
            token_answer(refresh_token="rt-scripted-1"),
            token_answer(access_token="not a token!", refresh_token="rt-rotated-2"),
        ]
    ).start()
    try:
        login = run_cli([], login_env(server, tmp_path, CI_SHARK_DPOP="false"), cwd=tmp_path)
        assert login.returncode == 0, login.log
        creds = tmp_path / "out.json"
        done = run_cli(["refresh", "--credentials", str(creds)], clean_env(), cwd=tmp_path)
    finally:
        server.stop()
    assert done.returncode == 5, done.log
    assert "the tokens it issued were revoked" in done.stderr
    revoked = [post.form["token"][0] for post in server.posts("/revoke")]
    assert revoked == ["rt-rotated-2", "not a token!"]  # the grant first; never rt-scripted-1
    assert json.loads(creds.read_text())["SHARK_REFRESH_TOKEN"] == "rt-scripted-1"


def _small_files_only() -> None:
    # Like a full disk: any file write past 256 bytes fails (EFBIG; Python ignores SIGXFSZ).
    resource.setrlimit(resource.RLIMIT_FSIZE, (256, 256))


def test_a_write_that_fails_after_a_rotation_revokes_the_new_tokens(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=0)
    creds = tmp_path / "out.json"
    assert run_cli([], login_env(server, tmp_path), cwd=tmp_path).returncode == 0
    before = creds.read_text()
    done = run_process(
        cli_argv("refresh", "--credentials", str(creds)),
        clean_env(),
        cwd=tmp_path,
        preexec_fn=_small_files_only,
    )
    assert done.returncode == 2, done.log
    assert "could not write" in done.stderr
    assert "the tokens it issued were revoked" in done.stderr
    assert server.stats.outcomes(TOKEN_PATH)[-1] == "refreshed"
    assert server.stats.outcomes(REVOKE_PATH) == ["revoked", "revoked"]
    assert creds.read_text() == before
    # Revoking the new refresh token ended the grant: nothing of it is live and unknown.
    assert not active(server, json.loads(before)["SHARK_ACCESS_TOKEN"])


def test_two_refreshes_at_once_send_the_rotating_refresh_token_once(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    # The first refresh request answers late: without the lock, the other process would
    # send the same refresh token meanwhile, and this server (RFC 9700 reuse detection)
    # would end the whole grant.
    server = sandbox_factory(approve_after_s=0, token_faults=["ok", "slow:3"])
    creds = tmp_path / "out.json"
    assert run_cli([], login_env(server, tmp_path), cwd=tmp_path).returncode == 0
    both = run_cli_twice_at_once(
        ["refresh", "--credentials", str(creds)], clean_env(), cwd=tmp_path
    )
    assert [done.returncode for done in both] == [0, 0], [done.log for done in both]
    assert server.stats.outcomes(TOKEN_PATH).count("refreshed") == 1
    assert "invalid_grant" not in server.stats.outcomes(TOKEN_PATH)
    assert sum("another ci-shark process refreshed" in done.stderr for done in both) == 1
    after = run_cli(["request", "--credentials", str(creds), f"{server.url}/api/echo"], clean_env())
    assert after.returncode == 0, after.log  # the grant is alive
    assert stat.S_IMODE((tmp_path / "out.json.lock").stat().st_mode) == 0o600


@contextmanager
def refresh_in_flight(tmp: Path) -> Iterator[tuple[ScriptedServer, Path, threading.Event]]:
    """`ci-shark refresh` of a Bearer grant (at-spent-1, rt-spent-1), holding its lock: its
    answer (at-rotated-2, rt-rotated-2) is sent once the test sets the event."""
    answered = threading.Event()
    rotated = token_answer(
        access_token="at-rotated-2", refresh_token="rt-rotated-2", expires_in=600
    )
    server = ScriptedServer(token=[replace(rotated, held=answered)]).start()
    creds = tmp / "out.json"
    recorded = {"SHARK_AUTH_URL": server.url, "SHARK_CLIENT_ID": "ci-shark-test"}
    recorded |= {"SHARK_TOKEN_ENDPOINT": f"{server.url}/token"}
    recorded |= {"SHARK_REVOCATION_ENDPOINT": f"{server.url}/revoke"}
    tokens = {"SHARK_ACCESS_TOKEN": "at-spent-1", "SHARK_REFRESH_TOKEN": "rt-spent-1"}
    creds.write_text(json.dumps({**tokens, "SHARK_TOKEN_TYPE": "Bearer", **recorded}))
    creds.chmod(0o600)
    try:
        with CliJob(["refresh", "--credentials", str(creds)], clean_env(), cwd=tmp) as refresh:
            until(
                lambda: bool(server.posts("/token")), "the refresh reached the server", within_s=20
            )
            yield server, creds, answered
            answered.set()
            assert refresh.wait(30) == 0, refresh.transcript()
    finally:
        answered.set()
        server.stop()


def revoked_at(server: ScriptedServer) -> list[tuple[str, str]]:
    return [(r.form["token"][0], r.form["token_type_hint"][0]) for r in server.posts("/revoke")]


def test_a_revoke_during_a_refresh_revokes_the_tokens_the_refresh_brings(tmp_path: Path) -> None:
    # Without taking the refresh's lock, revoke would end only the spent tokens it read,
    # and the refresh would then save a new grant nobody revokes: a server need not end a
    # rotated refresh token's successors when the spent one is revoked (this one does not).
    with (
        refresh_in_flight(tmp_path) as (server, creds, answered),
        CliJob(["revoke", "--credentials", str(tmp_path / "out.json")], clean_env()) as revoke,
    ):
        revoke.wait_for(re.compile("using the credentials in"))
        with suppress(subprocess.TimeoutExpired):
            revoke.process.wait(timeout=1)  # an unlocked revoke is done by now
        answered.set()
        assert revoke.wait(30) == 0, revoke.transcript()
        said = f"{creds} was refreshed meanwhile: revoking its new tokens too"
        assert said in revoke.stderr
    # The new grant first; then what revoke had read (the spent refresh token, and the
    # access token it replaced, which may live until it expires).
    assert revoked_at(server) == [
        ("rt-rotated-2", "refresh_token"),
        ("at-rotated-2", "access_token"),
        ("rt-spent-1", "refresh_token"),
        ("at-spent-1", "access_token"),
    ]
    assert json.loads(creds.read_text())["SHARK_REFRESH_TOKEN"] == "rt-rotated-2"  # named: kept


def test_revoke_waits_for_a_refresh_no_longer_than_its_max_time(tmp_path: Path) -> None:
    with refresh_in_flight(tmp_path) as (server, creds, _):
        started = time.monotonic()
        revoke = run_cli(["revoke", "--credentials", str(creds), "--max-time", "1"], clean_env())
        assert time.monotonic() - started < 10
        assert revoke.returncode == 1, revoke.log
        assert f"another ci-shark process has been rewriting {creds} for over 1s" in (revoke.stderr)
        assert revoked_at(server) == []  # nothing half-done while the refresh holds the file


def test_a_refresh_waiting_for_its_lock_sends_nothing_once_revoke_removed_the_file(
    tmp_path: Path,
) -> None:
    """`revoke` holds the lock, ends the tokens and removes its files; a refresh that read
    the file before must not then trade the revoked refresh token (or, at a server that
    cannot revoke, bring a new grant after the job's last step)."""
    server = ScriptedServer(
        token=[token_answer(access_token="at-new-2", refresh_token="rt-new-2", expires_in=600)]
    ).start()
    creds = tmp_path / "out.json"
    recorded = {"SHARK_AUTH_URL": server.url, "SHARK_CLIENT_ID": "ci-shark-test"}
    recorded |= {"SHARK_TOKEN_ENDPOINT": f"{server.url}/token"}
    tokens = {"SHARK_ACCESS_TOKEN": "at-old-1", "SHARK_REFRESH_TOKEN": "rt-old-1"}
    creds.write_text(json.dumps({**tokens, "SHARK_TOKEN_TYPE": "Bearer", **recorded}))
    creds.chmod(0o600)
    try:
        with (
            open(f"{creds}.lock", "a+b") as held,  # the lock, as a revoke holds it
            CliJob(["refresh", "--credentials", str(creds)], clean_env(), cwd=tmp_path) as job,
        ):
            fcntl.flock(held.fileno(), fcntl.LOCK_EX)
            job.wait_for(re.compile("using the credentials in"))  # it has read the file
            creds.unlink()  # as revoke removes the file it ended
            fcntl.flock(held.fileno(), fcntl.LOCK_UN)
            assert job.wait(30) == 1, job.transcript()
            said = job.stderr
    finally:
        server.stop()
    assert f"{creds} was removed while this command waited for its lock" in said
    assert server.posts("/token") == []  # the revoked refresh token was not sent
    assert not creds.exists()  # and no new grant was written


# -- 23.4: a terminal that remembers ---------------------------------------------------------


def new_terminal(args: list[str], env: dict[str, str], cwd: Path) -> CliResult:
    """A command in another terminal: a login session of its own."""
    return run_process(cli_argv(*args), env, cwd=cwd, preexec_fn=os.setsid)


def test_a_new_terminal_finds_the_logins_credentials_and_revokes_them(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=0)
    terminal = clean_env({"CI_SHARK_AUTH_URL": server.url, "CI_SHARK_CLIENT_ID": "ci-shark-test"})
    login = new_terminal([], terminal, tmp_path)
    assert login.returncode == 0, login.log
    folder = user_state_folder(terminal)
    creds = folder / "ci-shark.env"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert login.stderr.splitlines()[-1] == (
        f"ci_shark: the credentials are in {creds}: `ci-shark request|refresh|revoke` "
        "read them from there"
    )
    used = new_terminal(["request", f"{server.url}/api/echo"], terminal, tmp_path)
    assert used.returncode == 0, used.log
    refresh_token = dotenv(creds)["SHARK_REFRESH_TOKEN"]
    revoked = new_terminal(["revoke"], terminal, tmp_path)
    assert revoked.returncode == 0, revoked.log
    assert "revoked the refresh token" in revoked.stderr
    assert not active(server, refresh_token)
    assert not creds.exists()


def test_without_xdg_state_home_the_credentials_go_to_local_state_in_home(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=0)
    home = tmp_path / "home"
    home.mkdir()
    env = clean_env({"CI_SHARK_AUTH_URL": server.url, "CI_SHARK_CLIENT_ID": "ci-shark-test"})
    env.pop("XDG_STATE_HOME")
    env["HOME"] = str(home)
    login = run_cli([], env, cwd=tmp_path)
    assert login.returncode == 0, login.log
    folder = home / ".local" / "state" / "ci-shark"
    assert (folder / "ci-shark.env").is_file()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_login_over_an_earlier_ones_credentials_says_so_before_the_code(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=0)
    env = clean_env({"CI_SHARK_AUTH_URL": server.url, "CI_SHARK_CLIENT_ID": "ci-shark-test"})
    assert run_cli([], env, cwd=tmp_path).returncode == 0
    again = run_cli([], env, cwd=tmp_path)
    assert again.returncode == 0, again.log
    warning = again.stderr.index("holds the credentials of an earlier login")
    assert warning < again.stderr.index("code:")  # while they can still be revoked
