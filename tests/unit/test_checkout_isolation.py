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

REPO = Path(__file__).resolve().parents[2]
PASTED = [
    "templates/ci-shark.gitlab-ci.yml",
    "templates/ci-shark.yml",
    "README.md",
    "docs/gitlab.md",
    "docs/other-ci.md",
    "docs/install.md",
    "docs/github.md",
]
# An interpreter started on a module: `python -m pip`, `"$CI_SHARK_PYTHON" -m ci_shark`.
MODULE_RUN = re.compile(r'(?:python[0-9.]*|PYTHON"?)((?: -[A-Za-z]+)*) -m (?:pip|ci_shark)\b')


@pytest.mark.parametrize("name", PASTED)
def test_every_python_module_run_is_isolated(name: str) -> None:
    text = (REPO / name).read_text()
    loose = [
        match.group(0)
        for match in MODULE_RUN.finditer(text.replace("\n", " "))
        if "-I" not in match.group(1).split()
    ]
    assert loose == [], f"{name}: use `python -I -m` or the `ci-shark` command"
