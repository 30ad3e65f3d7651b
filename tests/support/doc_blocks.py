"""The fenced code blocks of the docs users paste from (README.md, docs/*.md): where each
is (file, line, the heading above it), its language and its text; YAML loaded as GitHub
and GitLab read it (GitLab's ``!reference`` kept as a tag); a steps fragment wrapped into
a whole workflow; a deployment's placeholders swapped for a sandbox's.

The tests that run a snippet take it from here, so the doc and its test cannot drift:
they change only what :func:`substitute` changes, and it fails when a placeholder it was
told to swap is no longer in the snippet.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DOC_FILES = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))

_FENCE = re.compile(r"^( {0,3})(`{3,})([^`\n]*)$")
_HEADING = re.compile(r"^#{1,6} +(.+?) *#*$")
# The keys whose value a CI hands to a shell: a string, or (GitLab) a list of strings.
SHELL_KEYS = frozenset({"run", "script", "before_script", "after_script", "command", "commands"})


@dataclass(frozen=True)
class Block:
    path: Path  # absolute
    line: int  # of the opening fence, 1-based
    heading: str  # the nearest heading above it ("" before the first)
    language: str  # the info string's first word
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """Every backtick-fenced block of a markdown file (CommonMark: a fence may be indented
    up to three spaces, and that indentation is taken off its lines)."""
    blocks: list[Block] = []
    heading = ""
    lines = path.read_text(encoding="utf-8").splitlines()
    number = 0
    while number < len(lines):
        line = lines[number]
        number += 1
        if (found := _HEADING.match(line)) is not None:
            heading = found[1]
            continue
        opening = _FENCE.match(line)
        if opening is None:
            continue
        indent, fence, info = len(opening[1]), opening[2], opening[3].strip()
        start = number
        body: list[str] = []
        while number < len(lines) and not _closes(lines[number], fence):
            body.append(_dedent(lines[number], indent))
            number += 1
        number += 1  # the closing fence (or the end of the file)
        language = info.split()[0] if info else ""
        blocks.append(Block(path, start, heading, language, "\n".join(body) + "\n"))
    return blocks


def _closes(line: str, fence: str) -> bool:
    """A closing fence: at most three spaces in, backticks only, at least as many."""
    stripped = line.strip()
    indent = len(line) - len(line.lstrip(" "))
    return indent <= 3 and stripped.startswith(fence) and set(stripped) == {"`"}


def _dedent(line: str, indent: int) -> str:
    leading = len(line) - len(line.lstrip(" "))
    return line[min(indent, leading) :]


def yaml_blocks() -> list[Block]:
    return [b for path in DOC_FILES for b in fenced_blocks(path) if b.language in ("yaml", "yml")]


def block_under(path: Path, heading: str, language: str = "yaml") -> Block:
    """The first block of ``language`` under the heading named ``heading``."""
    found = [b for b in fenced_blocks(path) if b.heading == heading and b.language == language]
    assert found, f"{path.relative_to(REPO)}: no {language} block under {heading!r}"
    return found[0]


# -- YAML as the CIs read it -----------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """GitLab's ``!reference [job, key]``: a list GitLab puts in place of the tag."""

    target: tuple[str, ...]


class _DocLoader(yaml.SafeLoader):
    pass


def _reference(loader: yaml.SafeLoader, node: yaml.Node) -> Reference:
    assert isinstance(node, yaml.SequenceNode), "!reference takes a list: [job, key]"
    return Reference(tuple(str(item) for item in loader.construct_sequence(node)))


_DocLoader.add_constructor("!reference", _reference)


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_DocLoader)  # a SafeLoader that knows one more tag


def shell_values(node: Any, trail: str = "") -> Iterator[tuple[str, Any]]:
    """Every value of a shell key (``run``, ``script``, …) anywhere in a document."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            where = f"{trail}.{key}" if trail else str(key)
            if key in SHELL_KEYS:
                yield where, value
            yield from shell_values(value, where)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from shell_values(item, f"{trail}[{index}]")


def not_text(value: Any) -> list[str]:
    """Why a shell key's value is not what a CI runs: a string, or a list of strings and
    ``!reference`` tags (GitLab also flattens nested lists of strings)."""
    if isinstance(value, str):
        return []
    if not isinstance(value, list):
        return [f"a {type(value).__name__}, not a string: {value!r}"]
    problems: list[str] = []
    for index, item in enumerate(value):
        if isinstance(item, list) and all(isinstance(inner, str) for inner in item):
            continue
        if not isinstance(item, (str, Reference)):
            problems.append(f"item {index} is a {type(item).__name__}, not a string: {item!r}")
    return problems


def is_workflow(document: Any) -> bool:
    """A whole GitHub workflow (PyYAML reads the key ``on`` as YAML 1.1's True)."""
    return (
        isinstance(document, Mapping)
        and "jobs" in document
        and ("on" in document or True in document)
    )


def is_steps_fragment(document: Any) -> bool:
    """A list of GitHub steps, as the guides show them inside a job."""
    return (
        isinstance(document, list)
        and bool(document)
        and all(
            isinstance(step, Mapping) and ("uses" in step or "run" in step) for step in document
        )
    )


def as_workflow(steps_text: str, *, before: str = "") -> str:
    """A steps fragment, as written, inside a minimal workflow; ``before`` is steps (YAML
    text at any indentation) the fragment relies on, such as the login it refers to."""
    steps = "".join(
        textwrap.indent(textwrap.dedent(part), " " * 6) for part in (before, steps_text) if part
    )
    return (
        "name: docs\n"
        "on: push\n"
        "permissions: {}\n"
        "jobs:\n"
        "  docs:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n" + steps
    )


# -- a deployment's placeholders, swapped for a sandbox's ------------------------------------


# The deployment the docs show, and what stands for it in a test: the authorization server
# and any path of the API, both the sandbox's (its /api/echo checks the token and the proof).
AUTH_URL = r"https://auth\.example\.com"
API_URL = r"https://api\.example\.com/[\w/.-]*"


def sandbox_swaps(sandbox_url: str) -> dict[str, str]:
    return {AUTH_URL: sandbox_url, API_URL: f"{sandbox_url}/api/echo"}


def substitute(text: str, swaps: Mapping[str, str]) -> str:
    """Each regular expression of ``swaps`` replaced; each must match at least once, so a
    snippet that no longer holds a placeholder fails the test instead of running something
    else than the doc shows."""
    for pattern, replacement in swaps.items():
        text, count = re.subn(pattern, replacement, text)
        assert count, f"the snippet no longer holds {pattern!r}: update the test with the doc"
    return text
