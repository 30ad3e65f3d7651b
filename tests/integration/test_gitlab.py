"""`python -m ci_shark` as a GitLab job runs it: a real subprocess, the loopback sandbox as the
authorization server, and a loopback fake of the GitLab notes API.

Every run approves itself after about a second.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from support.cli import REPO, clean_env, run_bash, run_cli
from support.gitlab_fakes import JOB_ENV, GitLabNotesServer
from support.job_outputs import dotenv, job_folder, secrets_of
from support.loopback_tls import loopback_certificate

from ci_shark.sandbox import SandboxServer

GITLAB_TOKEN = "glpat-integration-SECRET-0123456789"
SandboxFactory = Callable[..., SandboxServer]


@pytest.fixture
def notes_api() -> Iterator[GitLabNotesServer]:
    server = GitLabNotesServer().start()
    yield server
    server.stop()


def gitlab_env(
    sandbox: SandboxServer, notes: GitLabNotesServer, tmp_path: Path, **extra: str
) -> dict[str, str]:
    env = {
        **JOB_ENV,
        "CI_API_V4_URL": notes.api_url,
        "CI_SHARK_AUTH_URL": sandbox.url,
        "CI_SHARK_CLIENT_ID": "ci-shark-test",
        "CI_SHARK_GITLAB_TOKEN": GITLAB_TOKEN,
        "TMPDIR": str(tmp_path),  # the job's private folder is made here
        "CI_JOB_ID": JOB_ID,
    }
    env.update(extra)
    return clean_env(env)


JOB_ID = "1234"
MR = {
    "CI_PIPELINE_SOURCE": "merge_request_event",
    "CI_MERGE_REQUEST_IID": "34",
    "CI_MERGE_REQUEST_PROJECT_ID": "7",
    "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "7",
    "CI_MERGE_REQUEST_PROJECT_URL": "https://gitlab.example.com/team/app",
}


def test_mr_pipeline_posts_the_note_and_edits_it_with_the_outcome(
    sandbox_factory: SandboxFactory, notes_api: GitLabNotesServer, tmp_path: Path
) -> None:
    sandbox = sandbox_factory(approve_after_s=1)
    env = gitlab_env(sandbox, notes_api, tmp_path, **MR)
    done = run_cli([], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    notes = notes_api.notes_of("7", "34")
    assert len(notes) == 1
    assert notes[0]["body"].startswith("<!-- ci-shark:team/app/-/deploy -->")
    assert "Approved" in notes[0]["body"]
    asked = [(r.method, r.path.rsplit("/", 1)[1]) for r in notes_api.requests]
    # who the token is, its notes (none of them ours), the new note, its outcome
    assert asked == [("GET", "user"), ("GET", "notes"), ("POST", "notes"), ("PUT", "1000")]
    assert all(r.token == GITLAB_TOKEN for r in notes_api.requests)
    assert len({r.client_port for r in notes_api.requests}) == 1  # one connection
    posted = next(r for r in notes_api.requests if r.method == "POST")
    assert posted.body is not None
    assert "Approve at" in posted.body["body"]

    values = dotenv(job_folder(tmp_path, JOB_ID) / "ci-shark.env")
    assert values["SHARK_STATUS"] == "approved"
    assert values["SHARK_TOKEN_TYPE"] == "DPoP"
    log = done.stdout + done.stderr
    for secret in [*secrets_of(values), GITLAB_TOKEN]:
        assert secret not in log
    assert "section_start:" in done.stderr
    assert "section_end:" in done.stderr

    # a re-run of the same job edits the same note instead of adding one
    again = run_cli([], env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(notes_api.notes_of("7", "34")) == 1


def test_self_managed_gitlab_with_its_own_ca(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    # The runner hands the job the GitLab server's CA as CI_SERVER_TLS_CA_FILE.
    certificate = loopback_certificate(tmp_path)
    notes_api = GitLabNotesServer(tls=certificate.server_context()).start()
    try:
        sandbox = sandbox_factory(approve_after_s=1)
        env = gitlab_env(sandbox, notes_api, tmp_path, **MR)
        untrusted = run_cli([], env, cwd=tmp_path)
        env["CI_SERVER_TLS_CA_FILE"] = str(certificate.cert_file)
        trusted = run_cli([], env, cwd=tmp_path)
    finally:
        notes_api.stop()

    # Without the CA: a warning, no note, and the approval still goes through the log.
    assert untrusted.returncode == 0, untrusted.stderr
    assert (
        "no MR note: the GitLab API could not be reached (TLS failed, the certificate is not "
        "trusted: self-signed certificate)" in untrusted.stderr
    )
    assert trusted.returncode == 0, trusted.stderr
    assert "no MR note" not in trusted.stderr
    (note,) = notes_api.notes_of("7", "34")
    assert "Approved" in note["body"]


def test_an_unreadable_gitlab_ca_file_is_a_warning(
    sandbox_factory: SandboxFactory, notes_api: GitLabNotesServer, tmp_path: Path
) -> None:
    sandbox = sandbox_factory(approve_after_s=1)
    missing = str(tmp_path / "no-such-ca.pem")
    env = gitlab_env(sandbox, notes_api, tmp_path, CI_SERVER_TLS_CA_FILE=missing, **MR)
    done = run_cli([], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("CI_SERVER_TLS_CA_FILE could not be read as a CA bundle") == 1
    # the system's trust still applies: the note is written all the same
    (note,) = notes_api.notes_of("7", "34")
    assert "Approved" in note["body"]


def test_branch_pipeline_notes_the_open_mr(
    sandbox_factory: SandboxFactory, notes_api: GitLabNotesServer, tmp_path: Path
) -> None:
    sandbox = sandbox_factory(approve_after_s=1)
    env = gitlab_env(
        sandbox,
        notes_api,
        tmp_path,
        CI_PIPELINE_SOURCE="push",
        CI_OPEN_MERGE_REQUESTS="someone/else!3,team/app!12",
    )
    done = run_cli([], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    notes = notes_api.notes_of("7", "12")
    assert len(notes) == 1
    assert "Approved" in notes[0]["body"]
    assert notes_api.notes_of("someone%2Felse", "3") == []


def test_fork_mr_is_refused_before_any_device_code(
    sandbox_factory: SandboxFactory, notes_api: GitLabNotesServer, tmp_path: Path
) -> None:
    sandbox = sandbox_factory(approve_after_s=1)
    env = gitlab_env(
        sandbox,
        notes_api,
        tmp_path,
        **{**MR, "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "8"},
        CI_MERGE_REQUEST_SOURCE_PROJECT_PATH="mallory/app",
    )
    done = run_cli([], env, cwd=tmp_path)
    assert done.returncode == 6, done.stderr
    assert "fork" in done.stderr
    assert "allow-fork" in done.stderr
    assert not any(r.path.endswith("/device") for r in sandbox.stats.requests)
    assert notes_api.requests == []
    assert not (job_folder(tmp_path, JOB_ID) / "ci-shark.env").exists()


def test_no_token_warns_and_the_flow_goes_on(
    sandbox_factory: SandboxFactory, notes_api: GitLabNotesServer, tmp_path: Path
) -> None:
    sandbox = sandbox_factory(approve_after_s=1)
    env = gitlab_env(sandbox, notes_api, tmp_path, **MR)
    del env["CI_SHARK_GITLAB_TOKEN"]
    done = run_cli([], env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "CI_JOB_TOKEN cannot post MR notes" in done.stderr
    assert "`api` scope" in done.stderr
    assert notes_api.requests == []
    assert dotenv(job_folder(tmp_path, JOB_ID) / "ci-shark.env")["SHARK_STATUS"] == "approved"


@pytest.mark.parametrize("status", [401, 403])
def test_api_refusal_is_a_warning_and_the_flow_goes_on(
    sandbox_factory: SandboxFactory, notes_api: GitLabNotesServer, tmp_path: Path, status: int
) -> None:
    notes_api.status = status
    sandbox = sandbox_factory(approve_after_s=1)
    done = run_cli([], gitlab_env(sandbox, notes_api, tmp_path, **MR), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"HTTP {status}" in done.stderr
    assert "`api` scope" in done.stderr
    assert done.stderr.count("warning:") == 1, done.stderr
    assert GITLAB_TOKEN not in done.stderr
    assert len(notes_api.requests) == 1


def test_eval_shell_output_sets_the_variables_in_that_shell(
    sandbox_factory: SandboxFactory, notes_api: GitLabNotesServer, tmp_path: Path
) -> None:
    sandbox = sandbox_factory(approve_after_s=1)
    env = gitlab_env(sandbox, notes_api, tmp_path, **MR)
    env["PYTHON"] = sys.executable
    script = (
        'eval "$("$PYTHON" -m ci_shark --output-format shell)"\n'
        'test -n "$SHARK_ACCESS_TOKEN" || exit 91\n'
        'test "$SHARK_STATUS" = approved || exit 92\n'
        'test "$SHARK_TOKEN_TYPE" = DPoP || exit 93\n'
        'test -f "$SHARK_DPOP_KEY_FILE" || exit 94\n'
        'test -n "$SHARK_DPOP_JWK" || exit 95\n'
        # hand the values to the test through a file, never through the output
        'printf "%s\\n%s\\n%s\\n" "$SHARK_ACCESS_TOKEN" "$SHARK_REFRESH_TOKEN" "$SHARK_DPOP_JWK"'
        ' > "$OUT"\n'
        'printf "%s" "$SHARK_DPOP_KEY_FILE" > "$OUT.key"\n'
    )
    env["OUT"] = str(tmp_path / "seen")
    done = run_bash(script, env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    access, refresh, jwk = (tmp_path / "seen").read_text().splitlines()
    key_file = Path((tmp_path / "seen.key").read_text())
    pem_lines = [line for line in key_file.read_text().splitlines() if "-----" not in line]
    for secret in [access, refresh, jwk, *pem_lines]:
        assert secret
        assert secret not in done.stderr
        assert secret not in done.stdout
    assert "WDJB" not in done.stdout  # nothing but the exports went to eval
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert not (
        job_folder(tmp_path, JOB_ID) / "ci-shark.env"
    ).exists()  # shell: no dotenv file by default


def test_denied_stops_the_documented_two_line_pattern_with_the_exit_code(
    sandbox_factory: SandboxFactory, notes_api: GitLabNotesServer, tmp_path: Path
) -> None:
    sandbox = sandbox_factory(approve_after_s=1, decision="deny")
    env = gitlab_env(sandbox, notes_api, tmp_path, **MR)
    env["PYTHON"] = sys.executable
    script = (
        "set -e\n"
        'SHARK_EXPORTS="$("$PYTHON" -m ci_shark --output-format shell)"\n'
        'eval "$SHARK_EXPORTS"\n'
        "echo reached-the-deploy\n"
    )
    done = run_bash(script, env, cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert "reached-the-deploy" not in done.stdout
    notes = notes_api.notes_of("7", "34")
    assert len(notes) == 1
    assert "Denied" in notes[0]["body"]


def test_the_include_template_script_sets_the_variables(
    sandbox_factory: SandboxFactory, notes_api: GitLabNotesServer, tmp_path: Path
) -> None:
    """The template's before_script (minus the pip install) run as GitLab would: one shell."""
    template = (REPO / "templates" / "ci-shark.gitlab-ci.yml").read_text()
    lines = re.findall(r"^    - '(.*)'$", template, flags=re.MULTILINE)
    assert "pip install" in lines[0]
    # `.ci-shark`'s own variables (not its -workload-identity job's, which extends it).
    variables = yaml.safe_load(template)[".ci-shark"]["variables"]
    sandbox = sandbox_factory(approve_after_s=1)
    env = gitlab_env(sandbox, notes_api, tmp_path, **MR)
    env.update(variables)
    env["CI_SHARK_PYTHON"] = sys.executable
    script = "set -eo pipefail\n" + "\n".join(lines[1:]) + '\ntest "$SHARK_STATUS" = approved\n'
    script += 'test -n "$SHARK_ACCESS_TOKEN"\ntest -z "${SHARK_EXPORTS:-}"\n'
    done = run_bash(script, env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


PLANTED = {
    # What a merge request can add to the checkout the job runs in.
    "pip/__init__.py": "",
    "pip/__main__.py": "open({ran!r} + '/pip', 'w').close()\n",
    "ci_shark/__init__.py": "",
    "ci_shark/__main__.py": (
        "open({ran!r} + '/ci_shark', 'w').close()\nprint('touch {ran}/eval')\n"
    ),
    "httpx.py": "open({ran!r} + '/httpx', 'w').close()\n",
}


def test_the_include_template_runs_no_code_from_the_checkout(
    sandbox_factory: SandboxFactory, notes_api: GitLabNotesServer, tmp_path: Path
) -> None:
    """The template's whole before_script, pip install included, in a checkout where a merge
    request planted pip/, ci_shark/ and httpx.py: none of them runs, the login does."""
    template = (REPO / "templates" / "ci-shark.gitlab-ci.yml").read_text()
    lines = re.findall(r"^    - '(.*)'$", template, flags=re.MULTILINE)
    variables = yaml.safe_load(template)[".ci-shark"]["variables"]
    checkout, ran = tmp_path / "checkout", tmp_path / "ran"
    ran.mkdir()
    for name, code in PLANTED.items():
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_text(code.format(ran=str(ran)))
    sandbox = sandbox_factory(approve_after_s=1)
    env = gitlab_env(sandbox, notes_api, tmp_path, **MR)
    env.pop("PYTHONPATH")  # the job's ci_shark is the installed one
    env |= variables | {
        "CI_SHARK_PYTHON": sys.executable,
        # Installed already (this test's venv): pip finds it without an index.
        "CI_SHARK_PIP_SPEC": "ci-shark",
        "PIP_NO_INDEX": "1",
    }
    script = "set -eo pipefail\n" + "\n".join(line.replace("''", "'") for line in lines)
    script += '\ntest "$SHARK_STATUS" = approved\ntest -n "$SHARK_ACCESS_TOKEN"\n'

    done = run_bash(script, env, cwd=checkout)

    assert sorted(path.name for path in ran.iterdir()) == []  # pip, ci_shark, httpx, eval
    assert done.returncode == 0, done.stderr


def test_a_marked_note_by_someone_else_is_not_adopted(
    sandbox_factory: SandboxFactory, notes_api: GitLabNotesServer, tmp_path: Path
) -> None:
    """Issue 12, item 5: with a token that may edit others' notes, adopting a note that
    merely carries our marker would put the link into a note its author can change."""
    planted = {
        "id": 900,
        "body": "<!-- ci-shark:team/app/-/deploy -->\nplanted by mallory",
        "system": False,
        "author": {"id": 666, "username": "mallory"},
    }
    notes_api.notes[("7", "34")] = [planted]
    sandbox = sandbox_factory(approve_after_s=1)
    done = run_cli([], gitlab_env(sandbox, notes_api, tmp_path, **MR), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    notes = notes_api.notes_of("7", "34")
    assert notes[0]["body"].endswith("planted by mallory")  # untouched
    assert len(notes) == 2
    assert "Approved" in notes[1]["body"]
    assert not any(r.method == "PUT" and r.path.endswith("/900") for r in notes_api.requests)
