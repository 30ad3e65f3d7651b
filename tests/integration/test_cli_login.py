"""`python -m ci_shark` as a CI job runs it, against the loopback sandbox server.

Each test is what a user would see: the exit code, the files written (or not), and the
log, which must never carry a secret.
"""

from __future__ import annotations

import json
import signal
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from support.cli import CliJob, clean_env, login_env, run_bash, run_cli
from support.dpop_resource import DPoPResource

from ci_shark.oauth.dpop import DPoPKey
from ci_shark.sandbox import SandboxServer

SandboxFactory = Callable[..., SandboxServer]


def read_outputs(tmp_path: Path) -> dict[str, str]:
    path = tmp_path / "out.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    outputs: dict[str, str] = json.loads(path.read_text())
    return outputs


def assert_no_secret_in(text: str, outputs: dict[str, str]) -> None:
    for name in ("SHARK_ACCESS_TOKEN", "SHARK_REFRESH_TOKEN", "SHARK_ID_TOKEN", "SHARK_DPOP_JWK"):
        if outputs.get(name):
            assert outputs[name] not in text, f"{name} leaked into the log"


def test_approval_exports_a_dpop_bound_token(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1.5)
    result = run_cli([], login_env(server, tmp_path))

    assert result.returncode == 0, result.stderr
    outputs = read_outputs(tmp_path)
    assert outputs["SHARK_STATUS"] == "approved"
    assert outputs["SHARK_TOKEN_TYPE"] == "DPoP"
    assert outputs["SHARK_SCOPE"] == "openid deploy:write"
    assert outputs["SHARK_REFRESH_TOKEN"]
    assert outputs["SHARK_ID_TOKEN"]
    key_file = Path(outputs["SHARK_DPOP_KEY_FILE"])
    assert key_file.parent == tmp_path
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = DPoPKey.from_pem(key_file.read_text())
    assert key.jkt == outputs["SHARK_DPOP_JKT"] == server.grants[0].jkt
    assert DPoPKey.from_jwk(outputs["SHARK_DPOP_JWK"]).jkt == key.jkt
    # The log shows the link and code, never a secret; stdout stays empty.
    assert server.grants[0].user_code in result.stderr
    assert f"{server.url}/device" in result.stderr
    assert result.stdout == ""
    assert_no_secret_in(result.stderr, outputs)


def test_polls_at_the_servers_pace_over_one_connection(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=3.2, strict_interval=True)
    result = run_cli([], login_env(server, tmp_path))

    assert result.returncode == 0, result.stderr
    stats = server.stats
    assert stats.slow_downs == 0
    # The sandbox demands a DPoP nonce and sends it on every response: the client used
    # the one it already had, so no request was spent on a challenge.
    assert stats.nonce_challenges == 0
    assert stats.connections == 1
    assert stats.outcomes("/oauth/token")[-1] == "granted"
    assert 3 <= stats.polls <= 5


def test_denial_exits_3_and_writes_nothing(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory(approve_after_s=1, decision="deny")
    result = run_cli([], login_env(server, tmp_path))

    assert result.returncode == 3, result.stderr
    assert "denied" in result.stderr
    assert not (tmp_path / "out.json").exists()
    assert not list(tmp_path.glob("ci-shark-dpop-*"))


def test_expired_code_exits_4(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory(expires_in_s=2)
    result = run_cli([], login_env(server, tmp_path))

    assert result.returncode == 4, result.stderr
    assert "expired" in result.stderr
    assert not (tmp_path / "out.json").exists()


def test_timeout_input_bounds_the_wait(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory()
    started = time.monotonic()
    result = run_cli([], login_env(server, tmp_path, CI_SHARK_TIMEOUT="2s"))

    assert result.returncode == 4, result.stderr
    assert "timeout" in result.stderr
    assert time.monotonic() - started < 10


def test_transient_faults_are_outlasted(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory(
        approve_after_s=1,
        token_faults=["500", "reset", "429", "html", "oversized", "truncated"],
        device_faults=["503"],
    )
    result = run_cli([], login_env(server, tmp_path))

    assert result.returncode == 0, result.stderr
    outcomes = server.stats.outcomes("/oauth/token")
    assert {"fault:500", "fault:reset", "fault:429", "fault:html", "fault:oversized"} <= set(
        outcomes
    )
    assert outcomes[-1] == "granted"
    assert server.stats.slow_downs == 0


def test_faults_past_the_deadline_end_in_exit_4(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1, token_faults=["500"] * 50)
    result = run_cli([], login_env(server, tmp_path, CI_SHARK_TIMEOUT="3"))

    assert result.returncode == 4, result.stderr
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("device_flow", ["disabled", "missing"])
def test_server_without_device_flow_exits_5(
    sandbox_factory: SandboxFactory, tmp_path: Path, device_flow: str
) -> None:
    server = sandbox_factory(device_flow=device_flow)
    result = run_cli([], login_env(server, tmp_path))

    assert result.returncode == 5, result.stderr
    assert "does not offer the device flow" in result.stderr


def test_no_metadata_falls_back_to_sharkauth_paths(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(metadata=False, approve_after_s=1)
    result = run_cli([], login_env(server, tmp_path))

    assert result.returncode == 0, result.stderr
    assert read_outputs(tmp_path)["SHARK_TOKEN_TYPE"] == "DPoP"


def test_no_dpop_gives_a_bearer_token(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory(approve_after_s=1, require_dpop=False)
    result = run_cli(["--no-dpop"], login_env(server, tmp_path))

    assert result.returncode == 0, result.stderr
    outputs = read_outputs(tmp_path)
    assert outputs["SHARK_TOKEN_TYPE"] == "Bearer"
    assert outputs["SHARK_DPOP_JKT"] == outputs["SHARK_DPOP_KEY_FILE"] == ""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_cancellation_mid_wait_writes_nothing(
    sandbox_factory: SandboxFactory, tmp_path: Path, signum: int, code: int
) -> None:
    server = sandbox_factory()
    with CliJob([], login_env(server, tmp_path)) as job:
        deadline = time.monotonic() + 15
        while not server.grants and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.grants, "no device code was requested"
        time.sleep(0.3)
        job.process.send_signal(signum)
        returncode = job.wait(15)
    stderr = job.stderr
    assert returncode == code, stderr
    assert "cancelled" in stderr
    assert not (tmp_path / "out.json").exists()
    assert not list(tmp_path.glob("ci-shark-dpop-*"))


def test_shell_format_sets_variables_for_eval(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    env = login_env(server, tmp_path)
    del env["CI_SHARK_OUTPUT_FILE"]
    script = (
        f'eval "$({sys.executable} -m ci_shark --output-format shell)" && '
        'test "$SHARK_TOKEN_TYPE" = DPoP && test -n "$SHARK_ACCESS_TOKEN" && '
        'test -s "$SHARK_DPOP_KEY_FILE" && printf %s "$SHARK_ACCESS_TOKEN" > "$OUT"'
    )
    env["OUT"] = str(tmp_path / "token")
    done = run_bash(script, env)
    assert done.returncode == 0, done.stderr
    token = (tmp_path / "token").read_text()
    assert token
    assert token not in done.stderr


def test_a_failed_login_stops_the_eval_ing_script(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1, decision="deny")
    env = login_env(server, tmp_path)
    del env["CI_SHARK_OUTPUT_FILE"]
    script = f'eval "$({sys.executable} -m ci_shark --output-format shell)"; echo went-on'
    done = run_bash(script, env)
    assert done.returncode == 3
    assert "went-on" not in done.stdout


@pytest.mark.parametrize("mistake", ["--bogus", "--timeout", "--dpop=maybe"])
def test_a_usage_error_stops_the_eval_ing_script(mistake: str) -> None:
    # argparse exits before the flow could hand the eval its `exit N`: main() does it.
    env = clean_env({"CI_SHARK_AUTH_URL": "http://127.0.0.1:9", "CI_SHARK_CLIENT_ID": "x"})
    for spelling in ("--output-format shell", "--output-format=shell"):
        command = f"{sys.executable} -m ci_shark {spelling} {mistake}"
        done = run_bash(f'eval "$({command})"; echo went-on', env)
        assert done.returncode == 2, done.stderr
        assert "went-on" not in done.stdout
        assert "usage:" in done.stderr


def test_proof_then_userinfo_then_revoke(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory(approve_after_s=1)
    assert run_cli([], login_env(server, tmp_path)).returncode == 0
    outputs = read_outputs(tmp_path)
    later_step = clean_env({**outputs, "CI_SHARK_AUTH_URL": server.url})
    userinfo = f"{server.url}/userinfo"
    token = outputs["SHARK_ACCESS_TOKEN"]

    def call_userinfo(nonce: str | None) -> httpx.Response:
        args = ["proof", "--method", "GET", "--url", userinfo, "--with-access-token"]
        proof = run_cli([*args, *(["--nonce", nonce] if nonce else [])], later_step)
        assert proof.returncode == 0, proof.stderr
        headers = {
            "Authorization": f"DPoP {outputs['SHARK_ACCESS_TOKEN']}",
            "DPoP": proof.stdout.strip(),
        }
        return httpx.get(userinfo, headers=headers)

    first = call_userinfo(None)
    assert first.status_code == 401
    assert "use_dpop_nonce" in first.headers["www-authenticate"]
    answer = call_userinfo(first.headers["dpop-nonce"])
    assert answer.status_code == 200
    assert answer.json()["sub"] == "octocat"

    revoked = run_cli(["revoke"], {**later_step, "CI_SHARK_CLIENT_ID": "ci-shark-test"})
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked the access token" in revoked.stderr
    assert not Path(outputs["SHARK_DPOP_KEY_FILE"]).exists()  # no use for the key now
    key = DPoPKey.from_jwk(outputs["SHARK_DPOP_JWK"])
    proof = key.proof("GET", userinfo, nonce=server.nonce, access_token=token)
    refused = httpx.get(userinfo, headers={"Authorization": f"DPoP {token}", "DPoP": proof})
    assert refused.status_code == 401


def test_proof_names_the_url_as_the_request_goes_out(tmp_path: Path) -> None:
    """`proof --url` as a user writes it (a scheme in capitals, a `..` segment, a query):
    the proof names the target as curl or httpx send it, which an API that compares `htu`
    as a string (this one) computes from the request, as `request` and the proxy do."""
    key = DPoPKey.generate()
    key_file = tmp_path / "key.pem"
    key_file.write_text(key.private_pem().reveal())
    key_file.chmod(0o600)
    api = DPoPResource(require_nonce=False).start()
    try:
        api.accept("at-proof-1", key.jkt)
        port = api.url.rpartition(":")[2]
        written = f"HTTP://127.0.0.1:{port}/docs/../echo?page=2#top"
        args = ["proof", "--method", "get", "--url", written, "--key-file", str(key_file)]
        proof = run_cli([*args, "--access-token", "at-proof-1"], clean_env(), cwd=tmp_path)
        assert proof.returncode == 0, proof.log
        answer = httpx.get(
            written,
            headers={"Authorization": "DPoP at-proof-1", "DPoP": proof.stdout.strip()},
        )
        assert answer.status_code == 200, answer.text
        assert api.seen[-1].claims["htu"] == f"{api.url}/echo"
    finally:
        api.stop()


def test_revoke_with_nothing_to_revoke_succeeds() -> None:
    result = run_cli(["revoke"], clean_env())
    assert result.returncode == 0
    assert "nothing to revoke" in result.stderr


def test_missing_input_names_the_input_and_the_fix() -> None:
    result = run_cli([], clean_env({"CI_SHARK_CLIENT_ID": "x"}))
    assert result.returncode == 2
    assert "`auth-url`" in result.stderr
    assert "CI_SHARK_AUTH_URL" in result.stderr


def test_plain_http_to_a_remote_host_is_refused() -> None:
    env = clean_env({"CI_SHARK_AUTH_URL": "http://auth.example.com", "CI_SHARK_CLIENT_ID": "x"})
    result = run_cli([], env)
    assert result.returncode == 2
    assert "plain http://" in result.stderr


def test_version_and_help_on_every_command() -> None:
    for command in ([], ["login"], ["proof"], ["revoke"], ["demo"]):
        version = run_cli([*command, "--version"], clean_env())
        assert version.returncode == 0
        assert version.stdout.startswith("ci_shark ")
        assert run_cli([*command, "--help"], clean_env()).returncode == 0


def test_demo_runs_the_whole_flow() -> None:
    result = run_cli(["demo", "--approve-after", "1"], clean_env(), timeout_s=60)
    assert result.returncode == 0, result.stderr
    assert "SHARK_TOKEN_TYPE=DPoP" in result.stdout
    assert "SHARK_ACCESS_TOKEN=***" in result.stdout
    assert "approved" in result.stderr


def test_demo_with_workload_identity_asks_on_the_page_and_authenticates_every_request() -> None:
    result = run_cli(
        ["demo", "--workload-identity", "--approve-after", "1"], clean_env(), timeout_s=60
    )
    assert result.returncode == 0, result.stderr
    assert "the page shows what the server verified from the token and asks you" in result.stderr
    assert "authenticating with the CI's OIDC token for http://127.0.0.1:" in result.stderr
    assert "SHARK_CLIENT_AUTH=workload_identity" in result.stdout
    assert "SHARK_WORKLOAD_IDENTITY_AUDIENCE=http://127.0.0.1:" in result.stdout
    assert "eyJ" not in result.log  # no CI token (nor any other JWT) is shown
