"""The sizes issue 21 measured, held: no module of the package over 500 lines, no function
over 60 (decorators included), and ``cli.py`` (which only parses and prints) at most 400.
Past these a module holds more than one job, or a function more than one step of it: split
it where the job or the step changes, rather than raising a figure here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "ci_shark"
MODULES = sorted(PACKAGE.rglob("*.py"))
MODULE_LINES = 500
FUNCTION_LINES = 60
CLI_LINES = 400


def lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def function_lengths(source: str) -> list[tuple[str, int]]:
    """Each function's (name, lines), from its first decorator to its last line."""
    return [
        (node.name, (node.end_lineno or node.lineno) - first + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for first in [min([node.lineno, *(d.lineno for d in node.decorator_list)])]
    ]


def test_the_package_is_where_the_sizes_are_measured() -> None:
    assert len(MODULES) > 50
    assert PACKAGE / "cli.py" in MODULES


def test_no_module_is_over_500_lines() -> None:
    long = {str(path.relative_to(PACKAGE)): lines(path) for path in MODULES}
    assert {name: size for name, size in long.items() if size > MODULE_LINES} == {}


def test_no_function_is_over_60_lines() -> None:
    long = [
        f"{path.relative_to(PACKAGE)}::{name} ({size} lines)"
        for path in MODULES
        for name, size in function_lengths(path.read_text(encoding="utf-8"))
        if size > FUNCTION_LINES
    ]
    assert long == []


def test_cli_only_parses_and_prints_in_at_most_400_lines() -> None:
    assert lines(PACKAGE / "cli.py") <= CLI_LINES


def test_a_function_is_measured_from_its_decorator_to_its_last_line() -> None:
    source = "@decorate\ndef f():\n    a = 1\n\n    return a\n\nasync def g(): pass\n"
    assert function_lengths(source) == [("f", 5), ("g", 1)]
