"""The two GitLab entry points stay one job: the CI/CD catalog component (templates/ci-shark.yml,
typed inputs) and the plain include template (templates/ci-shark.gitlab-ci.yml, variables)
share the install-and-login script word for word. tests/engines/test_gitlab_ci_local.py runs
both under gitlab-ci-local; this catches a drift in a second, without an engine."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMPONENT = REPO / "templates" / "ci-shark.yml"
PLAIN = REPO / "templates" / "ci-shark.gitlab-ci.yml"


def login_block(path: Path) -> list[str]:
    text = path.read_text()
    match = re.search(r"# ci-shark-login: begin[^\n]*\n(.*?)\n *# ci-shark-login: end", text, re.S)
    assert match, f"{path.name}: no ci-shark-login markers"
    return match.group(1).splitlines()


def test_component_and_plain_template_run_the_same_install_and_login() -> None:
    block = login_block(COMPONENT)
    assert block == login_block(PLAIN)
    assert any("-m ci_shark" in line for line in block)
    assert any('eval "$SHARK_EXPORTS"' in line for line in block)


def test_every_component_input_is_documented() -> None:
    header = COMPONENT.read_text().split("\n---\n", 1)[0]
    inputs = re.findall(r"^    ([a-z-]+):\n((?:      .*\n)+)", header, re.M)
    assert {name for name, _ in inputs} >= {"auth-url", "client-id", "pip-spec", "timeout"}
    for name, body in inputs:
        assert "description:" in body, f"input {name} has no description"
        used = f"$[[ inputs.{name} ]]"
        assert used in COMPONENT.read_text().split("\n---\n", 1)[1], f"input {name} unused"


def test_both_tell_the_job_it_was_built_from_the_template() -> None:
    # Variables survive a job's own before_script; ci_shark's later commands can tell a
    # dropped login from a job that never meant to log in.
    assert "CI_SHARK_TEMPLATE:" in COMPONENT.read_text()
    assert "CI_SHARK_TEMPLATE:" in PLAIN.read_text()
