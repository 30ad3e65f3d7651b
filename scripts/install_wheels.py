"""Fill the action's venv from the hash-pinned direct wheel URLs of the lock.

scripts/action-setup.sh runs this with the new venv's own python (``-I``). For this
interpreter and platform it takes the wheels that scripts/lock_action.py chose
(requirements/action-wheels.txt), fetches them in parallel from their URLs, checks each
one's sha256 against the lock before it touches the disk, and unpacks it into the venv's
site-packages. No index is read and no resolver runs: here that is ~0.7 s faster than
``pip install --no-index --no-compile`` of the same URLs, ~4.5 s faster than pip with the
index (docs/perf.md).

Usage: python -I install_wheels.py LOCK   (exit 0: installed; 3: the lock has no wheels
for this interpreter and platform; 1: anything else). On 3 or 1 the set-up script starts
over with pip and the index (requirements/action.txt, the same hashes).

What pip does that this does not, and why it is not needed: console scripts (the action
runs entrypoint.py), ``.data`` directories (the lock generator refuses wheels that have
them, and so does this), bytecode (the login compiles what it imports: action-setup.sh).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import hmac
import io
import os
import platform
import sys
import sysconfig
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

NO_WHEELS_HERE = 3
FETCH_TIMEOUT_S = 60
# manylinux's legacy aliases, as glibc versions (PEP 600).
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


class InstallError(Exception):
    """Why the wheels could not be installed this way; pip takes over."""


@dataclass(frozen=True)
class Wheel:
    filename: str
    url: str
    sha256: str


def platform_key() -> str | None:
    """This interpreter's key in the lock (``cp312-linux-x86_64``), None when it has none:
    another implementation, a free-threaded build, an operating system without wheels."""
    if sys.implementation.name != "cpython" or sysconfig.get_config_var("Py_GIL_DISABLED"):
        return None
    system = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform)
    if system is None:
        return None
    return f"cp{sys.version_info[0]}{sys.version_info[1]}-{system}-{platform.machine().lower()}"


def wheels_for(lock: Path, key: str) -> list[Wheel]:
    """The lock's lines for ``key``: ``KEY SHA256 URL``, one wheel a line."""
    found = []
    for raw in lock.read_text(encoding="utf-8").splitlines():
        fields = raw.split()
        if not fields or fields[0].startswith("#") or fields[0] != key:
            continue
        _, sha256, url = fields
        if urllib.parse.urlsplit(url).scheme != "https":
            raise InstallError(f"not an https URL in {lock.name}: {url}")
        filename = urllib.parse.unquote(PurePosixPath(urllib.parse.urlsplit(url).path).name)
        found.append(Wheel(filename, url, sha256.lower()))
    return found


def runs_here(wheel: Wheel) -> bool:
    """Whether one of the wheel's platform tags fits this system. The lock's key already
    fixed the interpreter, the OS and the machine; what it cannot say is the C library
    (a musl or too old glibc in a container job) or the macOS release."""
    platform_tags = wheel.filename.removesuffix(".whl").split("-")[-1].split(".")
    return any(_fits(tag) for tag in platform_tags)


def _fits(tag: str) -> bool:
    if tag == "any" or tag.startswith("win"):
        return True
    if tag.startswith("manylinux"):
        legacy = _LEGACY_MANYLINUX.get(tag.split("_", 1)[0])
        needed = legacy or _version(tag.split("_")[1:3])
        return needed is not None and _glibc() >= needed
    if tag.startswith("macosx_"):
        needed = _version(tag.split("_")[1:3])
        running = _version(platform.mac_ver()[0].split(".")[:2])
        return needed is not None and running is not None and running >= needed
    return False


def _version(parts: list[str]) -> tuple[int, int] | None:
    try:
        major, minor = (int(part) for part in parts)
    except ValueError:
        return None
    return major, minor


def _glibc() -> tuple[int, int]:
    """glibc's version, (0, 0) on another C library (musl)."""
    try:
        found = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.39"
    except (AttributeError, OSError, ValueError):
        return (0, 0)
    name, _, version = found.partition(" ")
    parsed = _version(version.split(".")[:2]) if name == "glibc" else None
    return parsed or (0, 0)


def fetch(wheel: Wheel) -> bytes:
    """The wheel's bytes, refused unless their sha256 is the lock's."""
    try:
        with urllib.request.urlopen(wheel.url, timeout=FETCH_TIMEOUT_S) as response:  # noqa: S310 - https only, checked above
            data: bytes = response.read()
    except OSError as exc:  # URLError, timeouts, TLS errors
        raise InstallError(f"could not fetch {wheel.filename}: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(digest, wheel.sha256):
        raise InstallError(f"{wheel.filename}: sha256 {digest} is not the one in the lock")
    return data


def unpack(wheel: Wheel, data: bytes) -> None:
    """Unpack a verified wheel into this venv's site-packages (PEP 427, root only)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        for name in names:
            parts = PurePosixPath(name).parts
            if name.startswith(("/", "\\")) or ".." in parts or ":" in name or "\\" in name:
                raise InstallError(f"{wheel.filename}: refusing the member path {name!r}")
        tops = {PurePosixPath(name).parts[0] for name in names}
        if any(top.endswith(".data") for top in tops):
            raise InstallError(f"{wheel.filename} has a .data directory: pip installs it")
        info = [top for top in tops if top.endswith(".dist-info")]
        if len(info) != 1:
            raise InstallError(f"{wheel.filename}: expected one .dist-info directory")
        metadata = archive.read(f"{info[0]}/WHEEL").decode("utf-8")
        purelib = "root-is-purelib: true" in metadata.lower()
        target = Path(sysconfig.get_path("purelib" if purelib else "platlib"))
        archive.extractall(target)
    (target / info[0] / "INSTALLER").write_text("ci_shark\n", encoding="utf-8")


def install(lock: Path) -> int:
    key = platform_key()
    wheels = wheels_for(lock, key) if key else []
    if not wheels or not all(runs_here(wheel) for wheel in wheels):
        print(f"no direct wheels in {lock.name} for {key or 'this interpreter'}", file=sys.stderr)
        return NO_WHEELS_HERE
    # Fetch all at once; unpack each as it arrives, while the big ones still download.
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(wheels)) as pool:
        pending = {pool.submit(fetch, wheel): wheel for wheel in wheels}
        for done in concurrent.futures.as_completed(pending):
            unpack(pending[done], done.result())
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: install_wheels.py LOCK", file=sys.stderr)
        return 2
    if sys.prefix == sys.base_prefix:
        print("install_wheels.py: run it with the venv's python", file=sys.stderr)
        return 2
    try:
        return install(Path(argv[0]))
    except (InstallError, zipfile.BadZipFile, OSError) as failure:
        print(f"install_wheels.py: {failure}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
