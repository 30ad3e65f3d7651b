"""Write requirements/action.txt: the action's pinned wheels with their sha256 hashes.

Usage: python scripts/lock_action.py   (needs pip, packaging and the package registry)

requirements/action.in lists every package the action's venv needs, transitive ones
included, with ``python_version`` markers where a version differs. For every runner
platform and CPython 3.10-3.14 this script (macOS: Apple silicon only, as
cryptography ships no Intel macOS wheels any more) downloads the wheels pip would pick
(``pip download --no-deps --only-binary :all: --platform ... --python-version ...``),
checks that each wheel's own requirements are in the list, and writes one line per
package with the hash of every wheel seen. The runner's pip keeps only candidates whose
hash is listed, so each platform installs exactly a wheel that was hashed here.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from email.parser import HeaderParser
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "requirements" / "action.in"
TARGET = ROOT / "requirements" / "action.txt"
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


def main() -> int:
    hashes: dict[tuple[str, str], set[str]] = defaultdict(set)
    seen_for: dict[tuple[str, str], set[str]] = defaultdict(set)
    with tempfile.TemporaryDirectory() as scratch:
        for python in PYTHONS:
            for platform, (tags, platform_env) in PLATFORMS.items():
                env = marker_env(python, platform_env)
                pins = wanted(env)
                into = Path(scratch) / f"{python}-{platform}"
                into.mkdir()
                download(python, tags, pins, into)
                names = {canonical(pin.name) for pin in pins}
                for wheel in sorted(into.glob("*.whl")):
                    match = _WHEEL.match(wheel.name)
                    if not match:
                        raise SystemExit(f"unexpected file {wheel.name}")
                    missing = unmet_requirements(wheel, env, names)
                    if missing:
                        raise SystemExit(f"{wheel.name} needs {missing}: add to {SOURCE.name}")
                    key = (canonical(match["name"]), match["version"])
                    hashes[key].add(hashlib.sha256(wheel.read_bytes()).hexdigest())
                    seen_for[key].add(python)
                print(f"resolved CPython {python} on {platform}", file=sys.stderr)
    lines = [
        "# Generated by scripts/lock_action.py from requirements/action.in: do not edit.",
        "# action.yml installs it with: pip install --require-hashes --only-binary :all: --no-deps",
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
