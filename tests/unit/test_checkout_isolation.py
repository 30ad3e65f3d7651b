"""Code from the checkout never runs before approval: ``python -m X`` puts the working
directory first on ``sys.path``, so in a CI job (which runs in the checkout) a merge or pull
request's ``pip/``, ``ci_shark/`` or ``httpx.py`` would run with the job's secrets. Every
line the templates run and every line the docs tell users to paste is ``python -I -m``
(or the ``ci-shark`` console script). tests/integration/test_gitlab.py runs the template
in a checkout with those files planted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ci_shark.sandbox.options import argument_parser

REPO = Path(__file__).resolve().parents[2]
# Every file a user reads or includes: a guide added later is covered without a list to keep.
PASTED = sorted(
    [
        "README.md",
        "SECURITY.md",
        *(str(path.relative_to(REPO)) for path in (REPO / "docs").glob("*.md")),
        *(str(path.relative_to(REPO)) for path in (REPO / "templates").glob("*.yml")),
    ]
)
# An interpreter started on a module: `python -m pip`, `"$CI_SHARK_PYTHON" -m ci_shark`.
MODULE_RUN = re.compile(r'(?:python[0-9.]*|PYTHON"?)((?: -[A-Za-z]+)*) -m (?:pip|ci_shark)\b')


def loose_module_runs(text: str) -> list[str]:
    return [
        match.group(0)
        for match in MODULE_RUN.finditer(text.replace("\n", " "))
        if "-I" not in match.group(1).split()
    ]


def test_the_pasted_files_include_every_guide_and_template() -> None:
    assert {"README.md", "docs/approving.md", "templates/ci-shark.gitlab-ci.yml"} <= set(PASTED)


@pytest.mark.parametrize("name", PASTED)
def test_every_python_module_run_is_isolated(name: str) -> None:
    loose = loose_module_runs((REPO / name).read_text())
    assert loose == [], f"{name}: use `python -I -m` or the `ci-shark` command"


def test_the_sandboxs_help_shows_an_isolated_command_line() -> None:
    # Its usage line is what a reader pastes to start it from a checkout (the demo's last
    # lines point there too: tests/integration/test_first_minutes.py).
    assert loose_module_runs(argument_parser().format_help()) == []
