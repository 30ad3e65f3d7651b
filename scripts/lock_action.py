"""Write the action's locks: requirements/action.txt and requirements/action-wheels.txt.

Usage: python scripts/lock_action.py   (needs pip, packaging and the package registry)

requirements/action.in lists every package the action's venv needs, transitive ones
included, with ``python_version`` markers where a version differs. For every runner
platform and CPython 3.10-3.14 this script (macOS: Apple silicon only, as
cryptography ships no Intel macOS wheels any more) downloads the wheels pip would pick
(``pip download --no-deps --only-binary :all: --platform ... --python-version ...``),
checks that each wheel's own requirements are in the list, and writes one line per
package with the hash of every wheel seen. The runner's pip keeps only candidates whose
hash is listed, so each platform installs exactly a wheel that was hashed here.

action-wheels.txt names, for each CPython and platform, the very wheels chosen here with
their sha256 and their URL on the registry (from its JSON index, PEP 691, whose hash must
agree): scripts/install_wheels.py installs those without asking any index. A wheel with
a ``.data`` directory is refused, as that installer does not handle them.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections import defaultdict
from email.parser import HeaderParser
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "requirements" / "action.in"
TARGET = ROOT / "requirements" / "action.txt"
WHEELS_TARGET = ROOT / "requirements" / "action-wheels.txt"
INDEX = "https://pypi.org/simple"
PYTHONS = ("3.10", "3.11", "3.12", "3.13", "3.14")
# (pip platform tags, marker environment) per runner kind.
PLATFORMS = {
    "linux-x86_64": (
        ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
        {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"},
    ),
    "linux-aarch64": (
        ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"),
        {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64"},
    ),
    "macos-arm64": (
        ("macosx_14_0_arm64", "macosx_11_0_arm64"),
        {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"},
    ),
    "windows-amd64": (
        ("win_amd64",),
        {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64"},
    ),
}
_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-.+\.whl$")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def marker_env(python: str, platform_env: dict[str, str]) -> dict[str, str]:
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "nt" if platform_env["sys_platform"] == "win32" else "posix",
        "extra": "",
        **platform_env,
    }


def wanted(env: dict[str, str]) -> list[Requirement]:
    """The lines of action.in that apply to one Python version and platform."""
    found = []
    for raw in SOURCE.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(env):
            found.append(requirement)
    return found


def download(python: str, tags: tuple[str, ...], pins: list[Requirement], into: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--implementation",
        "cp",
        "--python-version",
        python,
        "--dest",
        str(into),
    ]
    for tag in tags:
        command += ["--platform", tag]
    command += [f"{pin.name}{pin.specifier}" for pin in pins]
    subprocess.run(command, check=True)  # noqa: S603 - fixed argv, no shell


def unmet_requirements(wheel: Path, env: dict[str, str], names: set[str]) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        metadata_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = HeaderParser().parsestr(archive.read(metadata_name).decode("utf-8"))
    missing = []
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if requirement.marker is not None and not Marker(str(requirement.marker)).evaluate(env):
            continue
        if canonical(requirement.name) not in names:
            missing.append(str(requirement))
    return missing


def has_data_directory(wheel: Path) -> bool:
    with zipfile.ZipFile(wheel) as archive:
        return any(name.split("/", 1)[0].endswith(".data") for name in archive.namelist())


class Registry:
    """Download URLs by file name, from the registry's JSON index (one request a project)."""

    def __init__(self) -> None:
        self._files: dict[str, dict[str, tuple[str, str]]] = {}

    def url_of(self, project: str, filename: str, sha256: str) -> str:
        if project not in self._files:
            request = urllib.request.Request(  # noqa: S310 - INDEX is a fixed https URL
                f"{INDEX}/{project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
            )
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
                listing = json.load(response)
            self._files[project] = {
                entry["filename"]: (entry["url"], entry["hashes"].get("sha256", ""))
                for entry in listing["files"]
            }
        url, listed = self._files[project].get(filename, ("", ""))
        if not url.startswith("https://"):
            raise SystemExit(f"{filename} is not on {INDEX}/{project}/")
        if listed != sha256:
            raise SystemExit(f"{filename}: the index says sha256 {listed}, the download {sha256}")
        return url


def main() -> int:
    hashes: dict[tuple[str, str], set[str]] = defaultdict(set)
    seen_for: dict[tuple[str, str], set[str]] = defaultdict(set)
    # (lock key, e.g. cp312-linux-x86_64) -> [(sha256, url)], for install_wheels.py
    direct: dict[str, list[tuple[str, str]]] = defaultdict(list)
    registry = Registry()
    with tempfile.TemporaryDirectory() as scratch:
        for python in PYTHONS:
            for platform, (tags, platform_env) in PLATFORMS.items():
                env = marker_env(python, platform_env)
                pins = wanted(env)
                into = Path(scratch) / f"{python}-{platform}"
                into.mkdir()
                download(python, tags, pins, into)
                names = {canonical(pin.name) for pin in pins}
                key = f"cp{python.replace('.', '')}-{platform}"
                for wheel in sorted(into.glob("*.whl")):
                    match = _WHEEL.match(wheel.name)
                    if not match:
                        raise SystemExit(f"unexpected file {wheel.name}")
                    missing = unmet_requirements(wheel, env, names)
                    if missing:
                        raise SystemExit(f"{wheel.name} needs {missing}: add to {SOURCE.name}")
                    if has_data_directory(wheel):
                        raise SystemExit(f"{wheel.name} has a .data directory: see the docstring")
                    name = canonical(match["name"])
                    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
                    hashes[(name, match["version"])].add(digest)
                    seen_for[(name, match["version"])].add(python)
                    direct[key].append((digest, registry.url_of(name, wheel.name, digest)))
                print(f"resolved CPython {python} on {platform}", file=sys.stderr)
    write_requirements(hashes, seen_for)
    write_direct_wheels(direct)
    return 0


def write_requirements(
    hashes: dict[tuple[str, str], set[str]], seen_for: dict[tuple[str, str], set[str]]
) -> None:
    lines = [
        "# Generated by scripts/lock_action.py from requirements/action.in: do not edit.",
        "# scripts/action-setup.sh installs it with pip (--require-hashes --only-binary :all:",
        "# --no-deps) when requirements/action-wheels.txt has no wheels for the platform.",
    ]
    for (name, version), digests in sorted(hashes.items()):
        pythons = sorted(seen_for[(name, version)])
        marker = ""
        if tuple(pythons) != PYTHONS:
            marker = " ; " + " or ".join(f'python_version == "{v}"' for v in pythons)
        lines.append(f"{name}=={version}{marker} \\")
        ordered = sorted(digests)
        for index, digest in enumerate(ordered):
            tail = " \\" if index < len(ordered) - 1 else ""
            lines.append(f"    --hash=sha256:{digest}{tail}")
    TARGET.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)} ({len(hashes)} pins)", file=sys.stderr)


def write_direct_wheels(direct: dict[str, list[tuple[str, str]]]) -> None:
    lines = [
        "# Generated by scripts/lock_action.py from requirements/action.in: do not edit.",
        "# scripts/install_wheels.py reads it: KEY SHA256 URL, the wheels of one CPython and",
        "# platform (the same hashes as action.txt).",
    ]
    for key in sorted(direct):
        lines += [f"{key} {digest} {url}" for digest, url in sorted(direct[key], key=_by_url)]
    WHEELS_TARGET.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {WHEELS_TARGET.relative_to(ROOT)} ({len(direct)} platforms)", file=sys.stderr)


def _by_url(entry: tuple[str, str]) -> str:
    return entry[1].rsplit("/", 1)[-1]


if __name__ == "__main__":
    raise SystemExit(main())
