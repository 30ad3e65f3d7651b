"""Build ci_shark's sdist and wheel (or take built ones) and check them as a release would.

Usage:
  python scripts/check_dist.py [--install]            build into a temp dir, then check
                                                      (needs build, twine and hatchling)
  python scripts/check_dist.py [options] DIST_DIR     check DIST_DIR's sdist and wheel

Options:
  --version X.Y.Z        the version the files must carry (default: ci_shark/__init__.py's)
  --repository O/N       every project URL must point into https://github.com/O/N
  --lock FILE            write the user lock: ci-shark==X.Y.Z and every dependency, hashed
  --install              install the lock into a fresh venv (--require-hashes) and run it

Checks: `twine check --strict`; exactly one sdist and one wheel, named for the version; the
wheel holds ci_shark/ (as in the source tree, py.typed included) and its .dist-info, nothing
else; the sdist holds what a rebuild needs (pyproject.toml, hatch_build.py, README.md,
LICENSE, ci_shark/) and the release notes, nothing else, and the same ci_shark/ as the wheel
(`python -m build` makes the wheel from the sdist, so the wheel is the rebuild); the
metadata: name, version, Python >= 3.10, the license, classifiers for 3.10-3.14, the
`ci-shark` console script, project URLs, and a markdown long description with no relative
link left (PyPI has no repository to resolve them against).

The lock is requirements/action.txt (the action's own pins: every dependency, transitive
included, with the hashes of the wheels for Linux x86_64/aarch64, macOS arm64 and Windows
amd64 on CPython 3.10-3.14) plus ci-shark itself with the wheel's hash.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "ci_shark"
DEPENDENCY_LOCK = ROOT / "requirements" / "action.txt"
PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14")
# The sdist's top level: what a rebuild needs, then the notes that belong with the code.
SDIST_REQUIRED = {"PKG-INFO", "pyproject.toml", "hatch_build.py", "README.md", "LICENSE"}
SDIST_ALLOWED = SDIST_REQUIRED | {"CHANGELOG.md", "SECURITY.md", ".gitignore", PACKAGE}
CONSOLE_SCRIPT = "ci-shark = ci_shark.cli:main"
# A markdown link target that is neither absolute (has a scheme) nor an anchor.
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)|^\[[^\]\n]+\]:[ \t]*(?P<defined>\S+)", re.M)
_ABSOLUTE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:|#)")


class DistError(Exception):
    """A release file is not what it should be: the message says which and why."""


def source_version() -> str:
    text = (ROOT / PACKAGE / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if not match:
        raise DistError(f"{PACKAGE}/__init__.py has no __version__ line")
    return match[1]


def run(command: list[str]) -> None:
    subprocess.run(command, check=True)  # noqa: S603 - fixed argv, no shell


def build(into: Path) -> None:
    """`python -m build`: the sdist, then the wheel built from the unpacked sdist.

    --no-isolation, as in the release job: the backend is the pinned hatchling installed
    beside build (the test extra, requirements/release.txt), not the index's newest.
    """
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(into), str(ROOT)])


def dist_files(dist: Path, version: str) -> tuple[Path, Path]:
    wheel = dist / f"{PACKAGE}-{version}-py3-none-any.whl"
    sdist = dist / f"{PACKAGE}-{version}.tar.gz"
    found = sorted(path.name for path in dist.iterdir())
    if found != sorted([wheel.name, sdist.name]):
        raise DistError(f"{dist} holds {found}, expected exactly {sdist.name} and {wheel.name}")
    return sdist, wheel


def source_package_files() -> set[str]:
    """The files under ci_shark/ in the source tree, as the builds should ship them."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / PACKAGE).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def check_wheel_contents(names: list[str], version: str) -> set[str]:
    """Return the wheel's package files; refuse anything outside the package and metadata."""
    dist_info = f"{PACKAGE}-{version}.dist-info/"
    unexpected = [
        name
        for name in names
        if not name.startswith((f"{PACKAGE}/", dist_info))
        or "__pycache__/" in name
        or name.endswith(".pyc")
    ]
    if unexpected:
        raise DistError(f"the wheel holds files it should not: {unexpected[:10]}")
    for required in (f"{PACKAGE}/__init__.py", f"{dist_info}METADATA", f"{dist_info}RECORD"):
        if required not in names:
            raise DistError(f"the wheel lacks {required}")
    return {name for name in names if name.startswith(f"{PACKAGE}/") and not name.endswith("/")}


def check_sdist_contents(names: list[str], version: str) -> set[str]:
    """Return the sdist's package files; refuse a top level other than SDIST_ALLOWED."""
    prefix = f"{PACKAGE}-{version}/"
    outside = [name for name in names if not name.startswith(prefix)]
    if outside:
        raise DistError(f"the sdist has entries outside {prefix}: {outside[:10]}")
    relative = [name.removeprefix(prefix) for name in names if name.removeprefix(prefix)]
    top = {PurePosixPath(name).parts[0] for name in relative}
    if top - SDIST_ALLOWED:
        raise DistError(f"the sdist holds unexpected entries: {sorted(top - SDIST_ALLOWED)}")
    missing = SDIST_REQUIRED - set(relative)
    if missing or f"{PACKAGE}/__init__.py" not in relative:
        raise DistError(f"the sdist lacks what a rebuild needs: {sorted(missing) or PACKAGE}")
    pyc = [name for name in relative if "__pycache__" in name or name.endswith(".pyc")]
    if pyc:
        raise DistError(f"the sdist holds compiled files: {pyc[:10]}")
    return {name for name in relative if name.startswith(f"{PACKAGE}/")}


def relative_links(markdown: str) -> list[str]:
    links = []
    for match in _LINK.finditer(markdown):
        target = match["target"] or match["defined"]
        if not _ABSOLUTE.match(target):
            links.append(target)
    return links


def check_metadata(metadata: Message, version: str, repository: str | None) -> None:
    def expect(field: str, wanted: str) -> None:
        if metadata.get(field) != wanted:
            raise DistError(f"metadata {field} is {metadata.get(field)!r}, expected {wanted!r}")

    expect("Name", "ci-shark")
    expect("Version", version)
    expect("Requires-Python", ">=3.10")
    expect("License-Expression", "Apache-2.0")
    expect("Description-Content-Type", "text/markdown")
    classifiers = set(metadata.get_all("Classifier") or [])
    missing = [v for v in PYTHONS if f"Programming Language :: Python :: {v}" not in classifiers]
    if missing:
        raise DistError(f"no classifier for Python {', '.join(missing)}")
    urls: dict[str, str] = {}
    for line in metadata.get_all("Project-URL") or []:
        label, _, url = line.partition(",")
        urls[label.strip()] = url.strip()
    if "Source" not in urls:
        raise DistError("metadata has no Project-URL: Source")
    if repository is not None:
        home = f"https://github.com/{repository}"
        wrong = {
            k: v
            for k, v in urls.items()
            if v != home and not v.startswith((home + "/", home + "#"))
        }
        if wrong:
            raise DistError(f"project URLs outside {home} (fix pyproject.toml): {wrong}")
    description = metadata.get_payload()
    if not isinstance(description, str) or "# ci_shark" not in description:
        raise DistError("the long description is not the README")
    left = relative_links(description)
    if left:
        raise DistError(f"the long description keeps relative links: {left[:10]}")


def wheel_metadata(wheel: Path, version: str) -> tuple[list[str], Message, str]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        dist_info = f"{PACKAGE}-{version}.dist-info"
        metadata = HeaderParser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    return names, metadata, entry_points


def sdist_metadata(sdist: Path, version: str) -> tuple[list[str], Message]:
    with tarfile.open(sdist) as archive:
        names = [member.name for member in archive.getmembers() if not member.isdir()]
        pkg_info = archive.extractfile(f"{PACKAGE}-{version}/PKG-INFO")
        if pkg_info is None:
            raise DistError("the sdist's PKG-INFO is not a file")
        metadata = HeaderParser().parsestr(pkg_info.read().decode())
    return names, metadata


def check(dist: Path, version: str, repository: str | None) -> Path:
    """Check the sdist and wheel in ``dist``; return the wheel."""
    sdist, wheel = dist_files(dist, version)
    run([sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)])
    wheel_names, metadata, entry_points = wheel_metadata(wheel, version)
    in_wheel = check_wheel_contents(wheel_names, version)
    sdist_names, sdist_meta = sdist_metadata(sdist, version)
    in_sdist = check_sdist_contents(sdist_names, version)
    if in_wheel != in_sdist:
        raise DistError(f"wheel and sdist differ in {sorted(in_wheel ^ in_sdist)[:10]}")
    if (ROOT / PACKAGE).is_dir() and in_wheel != source_package_files():
        raise DistError(
            f"wheel and source tree differ in {sorted(in_wheel ^ source_package_files())[:10]}"
        )
    if CONSOLE_SCRIPT not in entry_points.splitlines():
        raise DistError(f"the wheel has no console script `{CONSOLE_SCRIPT}`")
    check_metadata(metadata, version, repository)
    check_metadata(sdist_meta, version, repository)
    return wheel


def lock_text(wheel: Path, version: str) -> str:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    dependencies = [
        line
        for line in DEPENDENCY_LOCK.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    lines = [
        f"# ci-shark {version} and every dependency it needs, pinned with sha256 hashes: wheels",
        "# for CPython 3.10-3.14 on Linux x86_64/aarch64 (glibc), macOS arm64, Windows amd64.",
        f"# pip install --require-hashes --only-binary :all: -r ci-shark-{version}.lock",
        f"ci-shark=={version} \\",
        f"    --hash=sha256:{digest}",
        *dependencies,
    ]
    return "\n".join(lines) + "\n"


def install_and_run(lock: Path, dist: Path, version: str) -> None:
    """Install the lock as a user would, into a fresh venv, and run the console script."""
    with tempfile.TemporaryDirectory() as scratch:
        venv = Path(scratch) / "venv"
        run([sys.executable, "-m", "venv", str(venv)])
        bindir = venv / ("Scripts" if sys.platform == "win32" else "bin")
        pip = [str(bindir / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]
        # --find-links: ci-shark is not on the index yet; its hash still has to match.
        run([*pip, "install", "--require-hashes", "--only-binary", ":all:",
             "--find-links", str(dist), "-r", str(lock)])  # fmt: skip
        script = bindir / ("ci-shark.exe" if sys.platform == "win32" else "ci-shark")
        printed = subprocess.run(  # noqa: S603 - the venv's own console script
            [str(script), "--version"], check=True, capture_output=True, text=True
        ).stdout
        if version not in printed:
            raise DistError(f"`ci-shark --version` printed {printed!r}, expected {version}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("dist", nargs="?", type=Path, help="a directory with the sdist and wheel")
    parser.add_argument("--version", default=None)
    parser.add_argument("--repository", default=None, help="owner/name on GitHub")
    parser.add_argument("--lock", type=Path, default=None)
    parser.add_argument("--install", action="store_true")
    args = parser.parse_args(argv)
    version = args.version or source_version()
    with tempfile.TemporaryDirectory() as scratch:
        dist = args.dist
        if dist is None:
            dist = Path(scratch) / "dist"
            build(dist)
        try:
            wheel = check(dist, version, args.repository)
            lock = args.lock or Path(scratch) / f"ci-shark-{version}.lock"
            lock.parent.mkdir(parents=True, exist_ok=True)
            lock.write_text(lock_text(wheel, version), encoding="utf-8")
            if args.install:
                install_and_run(lock, dist, version)
        except DistError as error:
            print(f"check_dist: {error}", file=sys.stderr)
            return 1
    print(f"check_dist: {wheel.name} and its sdist are fit to publish", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
