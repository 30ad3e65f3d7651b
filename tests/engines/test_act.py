"""The composite action as a real workflow engine runs it: nektos act executes the jobs of
.github/workflows/selftest.yml (``uses: ./`` and ``uses: ./revoke``) in host mode, offline,
against the loopback sandbox that scripts/selftest-sandbox.sh starts inside the job; and the
README's GitHub example, taken from the README, against a sandbox this test starts.

What this proves that the imitations in tests/integration cannot: the setup step, the
``steps.setup.outputs.python`` hand-over, the composite's output mapping, ``export-env``,
the job summary and the runner's reading of ``::add-mask::`` — all done by an engine that
parses our log as the GitHub runner does.

How it runs offline:
- ``-P ubuntu-latest=-self-hosted``: host mode, no Docker. act gives EVERY step a
  pseudo-terminal there (act 0.2.89, pkg/container/host_environment.go allocates one
  unconditionally), whatever act's own stdout is. So "without a terminal" can only mean a
  step told its terminal is dumb (``TERM=dumb``, which ci_shark honours: no countdown);
  "with a terminal" runs act itself on a pty too, as a person would.
- ``actions/checkout``: act skips it when it checks out the repository under test and
  copies the working tree instead (the files git does not ignore), so nothing is fetched;
  ``--action-offline-mode`` keeps act from trying anyway. The test asserts the skip.
- ``--matrix os:ubuntu-latest``: the macOS leg cannot run in host mode on Linux.
- ``--env SANDBOX_PORT=<free port>`` and ``--action-cache-path <tmp>``: each run has its
  own port and its own RUNNER_TEMP (act puts it under the cache path and deletes it at the
  end), so tests never collide. The approved job hands its secrets to the test through a
  0600 file (``CI_SHARK_ENGINE_SECRETS``, a step that runs only under act), never the log.

Not covered here: act kills a cancelled step (Go's exec.CommandContext: SIGKILL to the
step's shell; what it started gets the terminal's hang-up) instead of signalling it as the
runner does (SIGINT, then SIGTERM), so cancellation stays covered by tests/unit/test_cancel.py
and by tests/integration (test_cli_login.py, test_github_action.py), which send the signals.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from engine_tools import (
    REPO,
    EngineRun,
    act_binary,
    port_is_open,
    readable_secrets,
    run_engine,
    stop_leftover_processes,
)
from support.ci_tokens import signed_by
from support.cli import clean_env
from support.doc_blocks import as_workflow, block_under, sandbox_swaps, substitute
from support.job_outputs import read_json_outputs
from support.loopback_http import free_port

from ci_shark.sandbox import FakeCiIssuer, SandboxServer

pytestmark = pytest.mark.engine

WORKFLOW = REPO / ".github" / "workflows" / "selftest.yml"
ACT_TIMEOUT_S = 100  # under pytest-timeout's 120 s, so our deadline speaks first
REPOSITORY = "enginetest/selftest"  # nothing in it that markdown escapes
SECRET_NAMES = {
    "ACCESS_TOKEN",
    "REFRESH_TOKEN",
    "ID_TOKEN",
    "PRIVATE_KEY",
    "JWK",
    "PROXY_CAPABILITY",
}


class ActJob:
    """One job of selftest.yml under act, on its own port and its own RUNNER_TEMP."""

    def __init__(self, tmp_path: Path) -> None:
        self.act = act_binary()
        self.tmp_path = tmp_path
        self.port = free_port()
        self.secrets_file = tmp_path / "secrets.json"

    def run(
        self,
        job: str,
        *,
        terminal: bool,
        workflow: Path = WORKFLOW,
        job_env: dict[str, str] | None = None,
    ) -> EngineRun:
        """``job_env``: more variables for every step, as the runner would set them."""
        env = clean_env(
            {
                # act reads flags from $XDG_CONFIG_HOME/act/actrc: none but ours.
                "XDG_CONFIG_HOME": str(self.tmp_path / "config"),
                "TERM": "xterm-256color" if terminal else "dumb",
            }
        )
        env.pop("PYTHONPATH")  # the job installs and runs the action's own copy
        argv = [
            str(self.act),
            "--workflows",
            str(workflow),
            "--job",
            job,
            "--matrix",
            "os:ubuntu-latest",
            "--platform",
            "ubuntu-latest=-self-hosted",
            "--action-offline-mode",
            "--action-cache-path",
            str(self.tmp_path / "act"),
            "--no-cache-server",
            # act names the repository after the origin remote; a CI clone's origin is a
            # local path, which is no owner/name.
            "--env",
            f"GITHUB_REPOSITORY={REPOSITORY}",
            "--env",
            f"SANDBOX_PORT={self.port}",
            "--env",
            f"CI_SHARK_ENGINE_SECRETS={self.secrets_file}",
        ]
        for name, value in (job_env or {}).items():
            argv += ["--env", f"{name}={value}"]
        return run_engine(argv, env, cwd=REPO, timeout_s=ACT_TIMEOUT_S, terminal=terminal)

    def stop(self) -> None:
        leftovers = stop_leftover_processes(["ci_shark.sandbox", str(self.port)])
        assert not leftovers, f"the job left its sandbox running (pids {leftovers})"
        proxies = stop_leftover_processes(["proxy", f"http://127.0.0.1:{self.port}", "--export"])
        assert not proxies, f"the job left its proxy running (pids {proxies})"


@pytest.fixture
def act_job(tmp_path: Path) -> Iterator[ActJob]:
    job = ActJob(tmp_path)
    yield job
    job.stop()


def assert_succeeded(run: EngineRun, step: str) -> None:
    assert run.returncode == 0, f"act exited {run.returncode}:\n{run.output[-6000:]}"
    assert f"Success - Main {step}" in run.output, run.output[-6000:]


def assert_checkout_skipped_offline(run: EngineRun) -> None:
    assert "Success - Main actions/checkout@" in run.output
    assert "git clone" not in run.output


@pytest.mark.parametrize(
    "terminal",
    [
        pytest.param(False, id="dumb-terminal"),
        pytest.param(True, id="terminal"),
    ],
)
def test_approved_run_exports_every_output_and_leaves_no_secret_in_acts_output(
    act_job: ActJob, terminal: bool
) -> None:
    run = act_job.run("approved", terminal=terminal)

    assert_succeeded(run, "Check every output")  # the workflow's own checks of each output
    # A later step with nothing installed: `ci-shark` on PATH, a DPoP-protected API called
    # through the sandbox's nonce challenge, from the SHARK_* variables and from the file.
    assert_succeeded(run, "Call an API with the token (nothing installed in this step)")
    # A tool that knows no DPoP, in a later step, through `ci-shark proxy --export`.
    assert_succeeded(run, "Call the API through the proxy with curl, which knows no DPoP")
    assert_succeeded(run, "Stop the proxy")
    assert "ci_shark: proxy: listening on 127.0.0.1:" in run.output
    assert_succeeded(run, "Revoke")
    assert_checkout_skipped_offline(run)
    assert "status=approved" in run.output
    assert f"**`{REPOSITORY}`**" in run.output  # the job summary, as act shows it
    secrets = read_json_outputs(act_job.secrets_file)  # and it is 0600
    assert set(secrets) == SECRET_NAMES
    leaked = readable_secrets(run.output, secrets)
    assert not leaked, f"readable in act's output: {', '.join(leaked)}"
    assert not port_is_open(act_job.port), "the `Stop the sandbox` step did not stop it"
    assert "did not stop within" not in run.output  # it stopped on SIGTERM, not SIGKILL


def test_denied_run_fails_the_login_step_with_status_denied(act_job: ActJob) -> None:
    run = act_job.run("denied", terminal=False)

    # The job succeeds because its last step checked outcome == failure and status == denied.
    assert_succeeded(run, "Check that it failed as denied")
    assert "Failure - Main Log in (must fail)" in run.output
    assert "status=denied" in run.output
    assert not act_job.secrets_file.exists()


def test_fork_pull_request_is_refused_with_exit_6(act_job: ActJob) -> None:
    run = act_job.run("fork", terminal=False)

    assert_succeeded(run, "Run the entrypoint on a fork PR event (must exit 6)")
    # selftest-fork.sh checked exit 6, `status=refused` and that no device code was asked.
    assert "refused as expected" in run.output


def test_workload_identity_job_authenticates_every_request_with_the_jobs_oidc_token(
    act_job: ActJob,
) -> None:
    """The `workload-identity` job: act has no OIDC token service, so a FakeCiIssuer on
    loopback stands in for the runner's (ACTIONS_ID_TOKEN_REQUEST_URL/_TOKEN, as a job with
    `id-token: write` has them), and the job's sandbox trusts it for this repository. The
    login, a later step's refresh and the revoke action each authenticate with new tokens."""
    with FakeCiIssuer(claims={"repository": REPOSITORY}) as issuer:
        job_env = {**issuer.environment(), "CI_SHARK_SELFTEST_CI_ISSUER": issuer.url}
        run = act_job.run("workload-identity", terminal=False, job_env=job_env)
        served, issuer_url = issuer.served, issuer.url

    assert_succeeded(run, "Check the login, and that later steps will authenticate the same way")
    assert_succeeded(
        run, "Refresh and call an API (a later step, authenticated by a new OIDC token)"
    )
    assert_succeeded(run, "Revoke")
    assert_checkout_skipped_offline(run)
    sandbox_url = f"http://127.0.0.1:{act_job.port}"
    assert f"authenticating with the CI's OIDC token for {sandbox_url}" in run.output
    # The device request, each poll (and nonce retry), the refresh, two revocations: every
    # one a token of its own, for the sandbox, which takes each jti once.
    assert len(served) >= 5, served
    assert {token.audience for token in served} == {sandbox_url}
    assert len({token.jti for token in served}) == len(served)
    # act obeys ::add-mask:: and prints *** for the token: none is readable in its output.
    assert signed_by(issuer_url, run.output) == []
    assert not port_is_open(act_job.port), "the `Stop the sandbox` step did not stop it"


# -- the README's example, as a user pastes it ---------------------------------------------

SandboxFactory = Callable[..., SandboxServer]
# Test harness, not the README's: act copies this working tree at a checkout of the
# repository under test, and `uses: ./` is then the action as this commit has it.
CHECKOUT = """\
- uses: actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8 # v5.0.0
  with:
    persist-credentials: false
"""


def readme_workflow(sandbox: SandboxServer) -> str:
    """The README's GitHub steps, with the action, the server and the API swapped for this
    checkout's action and the sandbox; nothing else changed."""
    steps = block_under(REPO / "README.md", "Use it").text
    swaps = {r"uses: sharkauth/ci-shark@\S+": "uses: ./", **sandbox_swaps(sandbox.url)}
    steps = substitute(steps, swaps)
    return as_workflow(steps, before=CHECKOUT)


def test_the_readme_example_runs_as_written(
    act_job: ActJob, sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    # The README's client and approvers: any other client id is refused, and the sandbox's
    # approver is one that `allowed-approvers` lists.
    sandbox = sandbox_factory(approve_after_s=1, client_ids=["ci-deploy"], subject="248289761001")
    workflow = tmp_path / "readme.yml"
    workflow.write_text(readme_workflow(sandbox))

    run = act_job.run("docs", terminal=False, workflow=workflow)

    assert run.returncode == 0, f"act exited {run.returncode}:\n{run.output[-6000:]}"
    assert_checkout_skipped_offline(run)
    assert "approved by 248289761001" in run.output
    # The API got the JSON body the README wrote (the echo shows it in the step's log).
    (echo,) = [line for line in run.output.splitlines() if '{"method":"POST"' in line]
    assert json.loads(echo[echo.index("{") :])["body"] == '{"ref": "v1.2.3"}'
    (grant,) = sandbox.grants
    assert (grant.client_id, grant.scope, grant.status) == ("ci-deploy", "deploy:write", "redeemed")
    served = [(r.method, r.path, r.outcome, r.detail) for r in sandbox.stats.requests]
    # The deploy call: a DPoP-bound POST (the sandbox's echo checks the proof and its nonce).
    assert ("POST", "/api/echo", "echo", "DPoP") in served, served
    # The `if: always()` step: the refresh token, then the access token.
    assert [r[:3] for r in served if r[1] == "/oauth/revoke"] == [
        ("POST", "/oauth/revoke", "revoked")
    ] * 2, served
