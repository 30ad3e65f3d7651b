"""The layer rules of docs/architecture.md, read from the source with ``ast``.

Imports go down the layers, never up: the OAuth client knows no CI and no product rule, a
platform never calls back into the flow. Only the entry points end the process. The sandbox
shares nothing with the client it judges. No two modules import each other at load time.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ci_shark"

# Lowest first; a module may import its own layer and the layers below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "ci_shark.secret",
            "ci_shark.safe_text",
            "ci_shark.urls",
            "ci_shark.errors",
            "ci_shark.units",
        ),
    ),
    ("oauth", ("ci_shark.oauth",)),
    (
        "ci",
        (
            "ci_shark.config",
            "ci_shark.input_values",
            "ci_shark._settings_import",
            "ci_shark.later_settings",
            "ci_shark.outputs",
            "ci_shark.render",
            "ci_shark.cancel",
            "ci_shark.platforms",
        ),
    ),
    (
        "product",
        (
            "ci_shark.flow",
            "ci_shark.issued",
            "ci_shark.commands",
            "ci_shark.revocation",
            "ci_shark.request",
            "ci_shark.token_auth",
            "ci_shark.login_session",
            "ci_shark.proxy",
            "ci_shark.client",
            "ci_shark.demo",
            "ci_shark.http_client",
            "ci_shark.workload",
        ),
    ),
    # The package root is the library's face (its re-exports load lazily); any module may
    # read its __version__, which needs nothing loaded (see the root test below).
    (
        "entry",
        (
            "ci_shark.cli",
            "ci_shark.cli_args",
            "ci_shark.cli_options",
            "ci_shark.__main__",
            "ci_shark",
        ),
    ),
]
ROOT = "ci_shark"
SANDBOX = "ci_shark.sandbox"  # beside the layers: only the entry points and the demo start it
ENTRY_POINTS = {"ci_shark.cli", "ci_shark.__main__", "ci_shark.sandbox.__main__"}
# `ci-shark demo` logs in against the sandbox: the one product module that starts it.
SANDBOX_STARTERS = {*ENTRY_POINTS, "ci_shark.demo"}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the ci_shark module it loads
    names: tuple[str, ...]  # what it takes from it
    line: int
    at_load: bool  # module level, outside `if TYPE_CHECKING:` (it runs on import)

    def __str__(self) -> str:
        return f"{self.source}:{self.line} imports {self.target}"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def resolve(node: ast.ImportFrom, importer: str) -> str:
    if not node.level:
        return node.module or ""
    package = importer if is_package(importer) else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def targets(node: ast.Import | ast.ImportFrom, importer: str) -> Iterator[tuple[str, str]]:
    """(module, name taken from it) for each ci_shark module the statement loads."""
    if isinstance(node, ast.Import):
        yield from ((alias.name, "*") for alias in node.names if alias.name in MODULES)
        return
    base = resolve(node, importer)
    for alias in node.names:
        if f"{base}.{alias.name}" in MODULES:  # `from ci_shark import cancel`: the module
            yield f"{base}.{alias.name}", "*"
        elif base in MODULES:
            yield base, alias.name


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str) -> Iterator[Import]:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))

    def walk(nodes: list[ast.stmt], at_load: bool) -> Iterator[Import]:
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target, name in targets(node, module):
                    yield Import(module, target, (name,), node.lineno, at_load)
            elif isinstance(node, ast.If):
                yield from walk(node.body, at_load and not is_type_checking(node))
                yield from walk(node.orelse, at_load)
            elif isinstance(node, (ast.Try, ast.With)):
                for block in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, block, []):
                        yield from walk(
                            child.body if isinstance(child, ast.ExceptHandler) else [child],
                            at_load,
                        )
            else:  # functions, classes: what they import runs later, if ever
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.stmt):
                        yield from walk([child], False)

    yield from walk(tree.body, True)


ALL_IMPORTS = [found for module in MODULES for found in imports_of(module)]


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> int | None:
    """The layer's index; None for the sandbox. The longest matching prefix wins (the
    root matches only itself)."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == ROOT if prefix == ROOT else within(module, prefix)
            if matches and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def test_every_module_has_a_place() -> None:
    homeless = [m for m in MODULES if layer_of(m) is None and not within(m, SANDBOX)]
    assert homeless == [], "add new modules to LAYERS here and to docs/architecture.md"


def test_imports_go_down_the_layers() -> None:
    upward = [
        f"{found} ({LAYERS[source][0]} -> {LAYERS[target][0]})"
        for found in ALL_IMPORTS
        if (source := layer_of(found.source)) is not None
        and (target := layer_of(found.target)) is not None
        and target > source
        and not (found.target == ROOT and found.names == ("__version__",))
    ]
    assert upward == []


def test_the_root_loads_nothing() -> None:
    """So that reading ``ci_shark.__version__`` (the User-Agent, --version) costs nothing
    and closes no cycle: the public names load on first use."""
    assert [str(found) for found in imports_of(ROOT) if found.at_load] == []


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        # The OAuth client knows no CI, no configuration, no product rule.
        (
            "ci_shark.oauth",
            (
                "ci_shark.config",
                "ci_shark.platforms",
                "ci_shark.flow",
                "ci_shark.cli",
                "ci_shark.commands",
                "ci_shark.render",
                "ci_shark.outputs",
            ),
        ),
        # Platforms supply facts and channels; the flow decides.
        ("ci_shark.platforms", ("ci_shark.flow", "ci_shark.cli", "ci_shark.commands")),
    ],
)
def test_named_layer_rules(layer: str, forbidden: tuple[str, ...]) -> None:
    broken = [
        str(found)
        for found in ALL_IMPORTS
        if within(found.source, layer) and any(within(found.target, f) for f in forbidden)
    ]
    assert broken == []


RENDER_FORMATS = {
    "ci_shark.render.gfm",
    "ci_shark.render.log_lines",
    "ci_shark.render.slack",
    "ci_shark.render.teams",
    "ci_shark.render.json_message",
}


def test_render_formats_learn_what_to_show_from_the_facts_only() -> None:
    """Each format writes the facts of render/facts.py; none reads another format (json
    carries the markdown comment, its one exception), and the facts import no format."""
    allowed = {("ci_shark.render.json_message", "ci_shark.render.gfm")}
    crossing = [
        str(found)
        for found in ALL_IMPORTS
        if found.source in RENDER_FORMATS | {"ci_shark.render.facts", "ci_shark.render.domain"}
        and found.target in RENDER_FORMATS
        and (found.source, found.target) not in allowed
    ]
    assert MODULES.keys() >= RENDER_FORMATS
    assert crossing == []


def test_the_sandbox_shares_no_code_with_the_client_it_judges() -> None:
    """An oracle: a misreading of RFC 9449 written once and used on both sides would pass
    every test. Only the entry points and the demo start it."""
    out = [
        str(found)
        for found in ALL_IMPORTS
        if within(found.source, SANDBOX) and not within(found.target, SANDBOX)
    ]
    into = [
        str(found)
        for found in ALL_IMPORTS
        if within(found.target, SANDBOX)
        and not within(found.source, SANDBOX)
        and found.source not in SANDBOX_STARTERS
    ]
    assert out == []
    assert into == []


def exits(module: str) -> Iterator[str]:
    """Where ``module`` ends the process: sys.exit(), os._exit(), exit(), quit(), or
    SystemExit raised or made."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in ("exit", "_exit"):
                yield f"{module}:{node.lineno} calls .{func.attr}()"
            elif isinstance(func, ast.Name) and func.id in ("exit", "quit"):
                yield f"{module}:{node.lineno} calls {func.id}()"
        if isinstance(node, ast.Name) and node.id == "SystemExit":
            yield f"{module}:{node.lineno} names SystemExit"


def test_only_the_entry_points_end_the_process() -> None:
    """Everything else raises a CiSharkError; cli.py turns it into the exit code and the
    message (a library caller must never lose its process to ci_shark)."""
    assert [where for m in MODULES if m not in ENTRY_POINTS for where in exits(m)] == []


HTTP_CLIENT_FACTORY = "ci_shark.oauth.http"  # new_client: trust, proxies, loopback, the cap


def http_clients_built(source: str) -> list[int]:
    """The lines where ``source`` builds an httpx client itself: ``httpx.Client(...)``, or
    a client class imported from httpx by name."""
    tree = ast.parse(source)
    named = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "httpx"
        for alias in node.names
        if alias.name in ("Client", "AsyncClient")
    }
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (
                isinstance(node.func, ast.Attribute)
                and node.func.attr in ("Client", "AsyncClient")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "httpx"
            )
            or (isinstance(node.func, ast.Name) and node.func.id in named)
        )
    ]


def test_one_module_builds_http_clients() -> None:
    """The run's trust, the proxy rules with loopback always direct, the byte cap, no
    redirects: decided once, for every request ci_shark sends (issue 21)."""
    builders = {
        module
        for module, path in MODULES.items()
        if http_clients_built(path.read_text(encoding="utf-8"))
    }
    assert builders == {HTTP_CLIENT_FACTORY}


def test_the_client_finder_sees_every_spelling() -> None:
    source = (
        "import httpx\nfrom httpx import Client as C, AsyncClient\n"
        "httpx.Client()\nC()\nAsyncClient()\nhttpx.Request('GET', 'x')\n"
    )
    assert http_clients_built(source) == [3, 4, 5]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(edges.get(module, ())):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1 or module in edges.get(module, ()):
                found.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return found


def test_cycles_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_at_load_time() -> None:
    edges: dict[str, set[str]] = {module: set() for module in MODULES}
    for found in ALL_IMPORTS:
        if found.at_load and found.target != found.source:
            edges[found.source].add(found.target)
    assert cycles(edges) == []


def test_the_reader_sees_every_kind_of_import() -> None:
    """The rules above are only as good as this reader: it finds the imports that run at
    load time, the lazy ones in functions, and the type-only ones."""
    cli = {(found.target, found.at_load) for found in imports_of("ci_shark.cli")}
    assert ("ci_shark.errors", True) in cli
    assert ("ci_shark.flow", False) in cli  # imported when the login command runs
    assert ("ci_shark.cancel", True) in cli  # `from ci_shark import cancel`: the module
    root = {(found.target, found.at_load) for found in imports_of("ci_shark")}
    assert ("ci_shark.client", False) in root  # under `if TYPE_CHECKING:`
