"""Every YAML snippet of README.md and docs/*.md is YAML a CI accepts (issue 23): it parses
(GitLab's ``!reference`` included), and whatever a CI hands to a shell (``run``, ``script``,
``before_script``, ``after_script``, ``command``) is a string, or a list of strings. A plain
scalar holding ``": "`` is a mapping: GitHub refuses the whole file ("mapping values are not
allowed in this context") and GitLab the job ("script contains non string value").

Whole workflows go through actionlint in tests/integration/test_docs.py; the README's
GitHub example runs under nektos act and the GitLab guide's jobs under gitlab-ci-local
(tests/engines).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from support.doc_blocks import (
    DOC_FILES,
    REPO,
    Block,
    Reference,
    as_workflow,
    fenced_blocks,
    is_steps_fragment,
    is_workflow,
    load_yaml,
    not_text,
    shell_values,
    substitute,
    yaml_blocks,
)

from ci_shark.oauth.providers import PROVIDERS, recognise

YAML_BLOCKS = yaml_blocks()


def block_id(block: Block) -> str:
    return block.where


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=block_id)
def test_every_yaml_block_parses(block: Block) -> None:
    try:
        load_yaml(block.text)
    except yaml.YAMLError as error:
        pytest.fail(f"{block.where} is not YAML: {error}", pytrace=False)


@pytest.mark.parametrize("block", YAML_BLOCKS, ids=block_id)
def test_every_shell_value_is_a_string(block: Block) -> None:
    problems = [
        f"{where}: {problem}"
        for where, value in shell_values(load_yaml(block.text))
        for problem in not_text(value)
    ]
    assert not problems, f"{block.where}: " + "; ".join(problems)


def test_every_yaml_fence_of_the_docs_is_checked() -> None:
    fences = sum(
        len(re.findall(r"^ {0,3}```ya?ml\s*$", path.read_text(encoding="utf-8"), re.M))
        for path in DOC_FILES
    )
    assert len(YAML_BLOCKS) == fences >= 15
    # The ones the issue named are among them, by the heading they sit under.
    headings = {(block.path.name, block.heading) for block in YAML_BLOCKS}
    assert {
        ("README.md", "Use it"),
        ("github.md", "The short version"),
        ("github.md", "Use the token"),
        ("gitlab.md", "Use the token"),
        ("other-ci.md", "Azure Pipelines"),
    } <= headings


def test_the_github_snippets_are_workflows_or_steps() -> None:
    github = [b for b in YAML_BLOCKS if b.path.name in ("README.md", "github.md")]
    kinds = [
        (is_workflow(doc), is_steps_fragment(doc))
        for doc in map(load_yaml, (b.text for b in github))
    ]
    assert all(workflow != steps for workflow, steps in kinds), [b.where for b in github]
    assert sum(workflow for workflow, _ in kinds) >= 2  # actionlint gets whole ones too


# -- the checks themselves fail on what the issue found ----------------------------------------


def test_a_plain_run_line_holding_colon_space_does_not_parse() -> None:
    broken = '- run: ci-shark request -X POST --json \'{"ref": "v1.2.3"}\' https://x.example\n'
    with pytest.raises(yaml.YAMLError, match="mapping values are not allowed"):
        load_yaml(broken)


def test_a_gitlab_script_item_holding_colon_space_is_not_a_string() -> None:
    job = load_yaml(
        "deploy:\n"
        "  script:\n"
        "    - ci-shark request -H 'Content-Type: application/json' https://x.example\n"
        "    - !reference [.ci-shark, before_script]\n"
        "    - ['echo nested', 'echo lists']\n"
    )
    ((where, value),) = shell_values(job)
    assert where == "deploy.script"
    assert value[1] == Reference((".ci-shark", "before_script"))
    (problem,) = not_text(value)
    assert problem.startswith("item 0 is a dict")


def test_a_fence_is_found_wherever_commonmark_allows_it(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n"
        "```yaml\na: 1\n```\n"
        "## Nested\n"
        "  ```yml title\n  b: 2\n    c: 3\n  ```\n"
        "````yaml\nd: |\n  ```\n````\n"
        "    ```yaml\n    not a fence: indented code\n    ```\n"
    )
    blocks = fenced_blocks(page)
    assert [(b.line, b.heading, b.language, b.text) for b in blocks] == [
        (2, "Title", "yaml", "a: 1\n"),
        (6, "Nested", "yml", "b: 2\n  c: 3\n"),
        (10, "Nested", "yaml", "d: |\n  ```\n"),
    ]


def test_a_steps_fragment_becomes_a_workflow_as_written() -> None:
    fragment = "      - run: |\n          echo 'a: b'\n"
    login = "- id: shark\n  uses: ./\n"
    workflow = load_yaml(as_workflow(fragment, before=login))
    assert is_workflow(workflow)
    assert workflow["jobs"]["docs"]["steps"] == [
        {"id": "shark", "uses": "./"},
        {"run": "echo 'a: b'\n"},
    ]


def test_a_substitution_that_no_longer_matches_fails_loudly() -> None:
    assert substitute("curl https://api.example.com/x", {r"https://api\.example\.com": "u"}) == (
        "curl u/x"
    )
    with pytest.raises(AssertionError, match="no longer holds"):
        substitute("curl https://elsewhere", {r"https://api\.example\.com": "u"})


# -- docs/servers.md and the presets -----------------------------------------------------------


def servers_table() -> dict[str, tuple[str, str]]:
    """docs/servers.md's summary table: server -> (`provider`, `auth-url`), code spans
    unwrapped (a cell's escaped pipe stays one cell)."""
    text = (REPO / "docs" / "servers.md").read_text(encoding="utf-8")
    rows: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        if line.startswith("| ["):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            server = re.sub(r"\[(.+?)\]\(.+?\)", r"\1", cells[0])
            preset = re.findall(r"`(\w+)`", cells[1])[0]
            rows[server] = (preset, cells[2].strip("`"))
    return rows


def test_servers_md_covers_every_preset_and_its_auth_url_is_recognised() -> None:
    rows = servers_table()
    assert set(rows) == {
        "Keycloak",
        "Okta",
        "Auth0",
        "Microsoft Entra ID",
        "GitHub",
        "Google",
        "SharkAuth",
    }
    assert {preset for preset, _ in rows.values()} == set(PROVIDERS) - {"generic"}
    for server, (preset, auth_url) in rows.items():
        if preset == "shark":  # "your server": the default for any host not recognised
            continue
        example = re.sub(r"\{\w+\}", "example", auth_url)
        assert recognise(example).name == preset, f"{server}: `provider: auto` on {example}"


# What stands for a release that does not exist yet: the placeholders of the guides.
RELEASE_PLACEHOLDER = re.compile(r"<owner>/ci-shark|ci-shark@v\d|refs/tags/vX\.Y\.Z|ci-shark/v1/")
# The plain words: that no release or tag exists yet (and the real repository's name).
NO_RELEASE_YET = re.compile(r"\bno (?:release|tag)\b|\bno tag exists\b", re.I)


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda path: path.name)
def test_a_guide_states_the_release_status_before_its_first_release_placeholder(
    path: Path,
) -> None:
    """Issue 23: a reader who copies the first snippet with `<owner>` or `@v1` in it has
    already read that sharkauth/ci-shark has no release yet."""
    pasted = [block for block in fenced_blocks(path) if RELEASE_PLACEHOLDER.search(block.text)]
    if not pasted:
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    before = " ".join(lines[: pasted[0].line - 1])
    where = f"{path.name}:{pasted[0].line}: before this block, say that"
    assert "sharkauth/ci-shark" in before, f"{where} the repository is sharkauth/ci-shark"
    assert NO_RELEASE_YET.search(before), f"{where} it has no release yet, and what to pin"


def test_every_python_m_the_docs_show_is_isolated() -> None:
    """`python -m X` in a checkout runs the checkout's (a pull request's) `X.py` or
    `httpx.py` first: what the docs show carries -I, or is the console script."""
    not_isolated = re.compile(r"python3?\s+-m\s+ci_shark")
    shown = {path.name: not_isolated.findall(path.read_text()) for path in DOC_FILES}
    assert {name: found for name, found in shown.items() if found} == {}
