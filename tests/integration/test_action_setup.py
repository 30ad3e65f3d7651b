"""The action's set-up: scripts/install_wheels.py and scripts/action-setup.sh, for real.

Small wheels built here are served over TLS on loopback; the set-up runs with a fresh venv
as on a runner, and what it installed is imported by that venv's python. The pip fallback
reads a PEP 503 index on the same server, so nothing leaves the machine.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.cli import REPO
from support.loopback_http import LoopbackServer
from support.loopback_tls import LoopbackCertificate, loopback_certificate

SETUP = REPO / "scripts" / "action-setup.sh"
INSTALLER = REPO / "scripts" / "install_wheels.py"
NO_WHEELS_HERE = 3

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="bash and POSIX venv paths")


def _installer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("install_wheels", INSTALLER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


install_wheels = _installer()
HERE = install_wheels.platform_key()


def build_wheel(
    directory: Path,
    name: str,
    *,
    value: str = "installed",
    platform_tag: str = "any",
    extra: dict[str, bytes] | None = None,
) -> Path:
    """A minimal valid wheel: one module ``{name}`` with VALUE, its dist-info, its RECORD."""
    dist = f"{name}-1.0.dist-info"
    members = {
        f"{name}.py": f"VALUE = {value!r}\n".encode(),
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
        **(extra or {}),
    }
    record = []
    for member, data in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{member},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    path = directory / f"{name}-1.0-py3-none-{platform_tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, data in members.items():
            archive.writestr(member, data)
        archive.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_handler(root: Path) -> type[SimpleHTTPRequestHandler]:
    """Serves the files under ``root``, quietly."""

    class Files(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Files


@dataclass
class WheelServer:
    root: Path  # served as https://127.0.0.1:PORT/
    url: str
    certificate: LoopbackCertificate

    def publish(self, wheel: Path) -> str:
        """Put ``wheel`` under /files/ and into the /simple/ index; its URL."""
        shutil.copy(wheel, self.root / "files" / wheel.name)
        project = wheel.name.split("-", 1)[0].replace("_", "-")
        page = self.root / "simple" / project / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        link = f'<a href="../../files/{wheel.name}#sha256={sha256(wheel)}">{wheel.name}</a>'
        page.write_text(f"<!DOCTYPE html><html><body>{link}</body></html>\n")
        return f"{self.url}/files/{wheel.name}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[WheelServer]:
    root = tmp_path / "served"
    (root / "files").mkdir(parents=True)
    (root / "simple").mkdir()
    certificate = loopback_certificate(tmp_path)
    loopback = LoopbackServer(files_handler(root), tls=certificate.server_context())
    try:
        yield WheelServer(root, loopback.url, certificate)
    finally:
        loopback.stop()


def env_for(server: WheelServer, **extra: str) -> dict[str, str]:
    """A runner-like environment: the loopback CA trusted, no pip configuration."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PIP_", "PYTHON", "GITHUB_", "RUNNER_"))
        # requests (in pip) lets these override PIP_CERT
        and name not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
    }
    env.update(
        SSL_CERT_FILE=str(server.certificate.cert_file),
        PIP_CONFIG_FILE=os.devnull,
        PIP_CERT=str(server.certificate.cert_file),
        PIP_INDEX_URL=f"{server.url}/simple/",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        **extra,
    )
    return env


def new_venv(tmp_path: Path) -> Path:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv / "bin" / "python"


def install(python: Path, lock: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-I", str(INSTALLER), str(lock)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def imported(python: Path, module: str) -> str:
    done = subprocess.run(
        [str(python), "-I", "-c", f"import {module}; print({module}.VALUE)"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.strip()


def write_lock(path: Path, lines: list[tuple[str, str, str]]) -> Path:
    path.write_text("# test lock\n" + "".join(f"{k} {d} {u}\n" for k, d, u in lines))
    return path


# -- install_wheels.py ---------------------------------------------------------------------


def test_installs_this_platforms_wheels_and_only_those(tmp_path: Path, server: WheelServer) -> None:
    here_a = build_wheel(tmp_path, "probe_a")
    here_b = build_wheel(tmp_path, "probe_b", value="b")
    other = build_wheel(tmp_path, "probe_other")
    lock = write_lock(
        tmp_path / "wheels.txt",
        [
            (HERE, sha256(here_a), server.publish(here_a)),
            (HERE, sha256(here_b), server.publish(here_b)),
            ("cp39-plan9-mips", sha256(other), server.publish(other)),
        ],
    )
    python = new_venv(tmp_path)

    done = install(python, lock, env_for(server))

    assert done.returncode == 0, done.stderr
    assert imported(python, "probe_a") == "installed"
    assert imported(python, "probe_b") == "b"
    assert not list(tmp_path.glob("venv/lib/*/site-packages/probe_other.py"))
    installer = next(tmp_path.glob("venv/lib/*/site-packages/probe_a-1.0.dist-info/INSTALLER"))
    assert installer.read_text() == "ci_shark\n"


def test_a_wheel_whose_hash_differs_from_the_lock_is_refused(
    tmp_path: Path, server: WheelServer
) -> None:
    wheel = build_wheel(tmp_path, "probe_a")
    url = server.publish(wheel)
    (server.root / "files" / wheel.name).write_bytes(b"not the wheel that was locked")
    lock = write_lock(tmp_path / "wheels.txt", [(HERE, sha256(wheel), url)])
    python = new_venv(tmp_path)

    done = install(python, lock, env_for(server))

    assert done.returncode == 1
    assert "is not the one in the lock" in done.stderr
    assert not list(tmp_path.glob("venv/lib/*/site-packages/probe_a.py"))


@pytest.mark.parametrize(
    ("why", "platform_tag"),
    [
        ("no wheel of this platform in the lock", None),
        ("a C library this system lacks", "musllinux_1_2_x86_64"),
    ],
)
def test_no_wheels_for_this_platform_says_so_with_its_own_status(
    tmp_path: Path, server: WheelServer, why: str, platform_tag: str | None
) -> None:
    wheel = build_wheel(tmp_path, "probe_a", platform_tag=platform_tag or "any")
    key = HERE if platform_tag else "cp39-plan9-mips"
    lock = write_lock(tmp_path / "wheels.txt", [(key, sha256(wheel), server.publish(wheel))])
    python = new_venv(tmp_path)

    done = install(python, lock, env_for(server))

    assert done.returncode == NO_WHEELS_HERE, why
    assert "no direct wheels" in done.stderr


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"probe_a-1.0.data/scripts/tool": b"#!/bin/sh\n"}, "has a .data directory"),
        ({"../escaped.py": b"VALUE = 1\n"}, "refusing the member path"),
        ({"/abs/escaped.py": b"VALUE = 1\n"}, "refusing the member path"),
    ],
)
def test_wheels_this_installer_cannot_unpack_safely_are_refused(
    tmp_path: Path, server: WheelServer, members: dict[str, bytes], message: str
) -> None:
    wheel = build_wheel(tmp_path, "probe_a", extra=members)
    lock = write_lock(tmp_path / "wheels.txt", [(HERE, sha256(wheel), server.publish(wheel))])
    python = new_venv(tmp_path)

    done = install(python, lock, env_for(server))

    assert done.returncode == 1
    assert message in done.stderr
    assert not (tmp_path / "venv" / "lib" / "escaped.py").exists()
    assert not list(tmp_path.rglob("escaped.py"))


def test_only_https_urls_are_fetched(tmp_path: Path, server: WheelServer) -> None:
    wheel = build_wheel(tmp_path, "probe_a")
    url = server.publish(wheel).replace("https://", "http://")
    lock = write_lock(tmp_path / "wheels.txt", [(HERE, sha256(wheel), url)])

    done = install(new_venv(tmp_path), lock, env_for(server))

    assert done.returncode == 1
    assert "not an https URL" in done.stderr


def test_an_untrusted_server_is_a_failure_not_a_download(
    tmp_path: Path, server: WheelServer
) -> None:
    wheel = build_wheel(tmp_path, "probe_a")
    lock = write_lock(tmp_path / "wheels.txt", [(HERE, sha256(wheel), server.publish(wheel))])
    env = env_for(server)
    env.pop("SSL_CERT_FILE")  # the loopback certificate is trusted by nothing else

    done = install(new_venv(tmp_path), lock, env)

    assert done.returncode == 1
    assert "could not fetch probe_a-1.0-py3-none-any.whl" in done.stderr


@pytest.mark.parametrize(
    ("tag", "fits"),
    [("any", True), ("musllinux_1_2_x86_64", False), ("linux_x86_64", False)],
)
def test_platform_tags_that_fit_everywhere_or_nowhere(tag: str, fits: bool) -> None:
    assert install_wheels.runs_here(install_wheels.Wheel(f"p-1-py3-none-{tag}.whl", "", "")) is fits


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_manylinux_tags_follow_this_systems_glibc() -> None:
    glibc = install_wheels._glibc()
    if glibc == (0, 0):
        pytest.skip("not glibc")
    fits = install_wheels._fits
    assert fits("manylinux2014_x86_64")  # 2.17: older than any glibc a runner has
    assert fits(f"manylinux_{glibc[0]}_{glibc[1]}_x86_64")
    assert not fits(f"manylinux_{glibc[0]}_{glibc[1] + 1}_x86_64")


# -- action-setup.sh -------------------------------------------------------------------------


@dataclass
class Action:
    root: Path
    runner_temp: Path
    output: Path


@pytest.fixture
def action(tmp_path: Path) -> Action:
    """A copy of the action's set-up with its own (test) locks, and a runner's temp dir."""
    root = tmp_path / "action"
    (root / "scripts").mkdir(parents=True)
    (root / "requirements").mkdir()
    shutil.copy(SETUP, root / "scripts")
    shutil.copy(INSTALLER, root / "scripts")
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    return Action(root, runner_temp, tmp_path / "github-output")


def run_setup(action: Action, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    action.output.write_text("")
    env = {**env, "RUNNER_TEMP": str(action.runner_temp), "GITHUB_OUTPUT": str(action.output)}
    # python3 is the interpreter running the tests (3.10-3.14, with pip)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.run(
        ["bash", str(action.root / "scripts" / "action-setup.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def printed_python(action: Action) -> Path:
    lines = [line for line in action.output.read_text().splitlines() if line]
    assert len(lines) == 1, lines
    assert lines[0].startswith("python="), lines
    return Path(lines[0].removeprefix("python="))


def write_locks(action: Action, server: WheelServer, key: str, *wheels: Path) -> None:
    lines = [(key, sha256(wheel), server.publish(wheel)) for wheel in wheels]
    write_lock(action.root / "requirements" / "action-wheels.txt", lines)
    (action.root / "requirements" / "action.txt").write_text(
        "".join(
            f"{wheel.name.split('-')[0].replace('_', '-')}==1.0 --hash=sha256:{sha256(wheel)}\n"
            for wheel in wheels
        )
    )


def test_setup_installs_by_direct_url_and_a_second_step_reuses_the_venv(
    tmp_path: Path, server: WheelServer, action: Action
) -> None:
    write_locks(action, server, HERE, build_wheel(tmp_path, "probe_a"))

    first = run_setup(action, env_for(server))

    assert first.returncode == 0, first.stderr
    assert "package index" not in first.stdout
    python = printed_python(action)
    assert python.is_relative_to(action.runner_temp)
    assert imported(python, "probe_a") == "installed"
    assert (python.parent.parent / ".ci-shark-ready").exists()

    (server.root / "files").rename(server.root / "gone")  # a second set-up fetches nothing
    second = run_setup(action, env_for(server))

    assert second.returncode == 0, second.stderr
    assert printed_python(action) == python


def test_setup_falls_back_to_pip_and_the_index_without_wheels_for_this_platform(
    tmp_path: Path, server: WheelServer, action: Action
) -> None:
    write_locks(action, server, "cp39-plan9-mips", build_wheel(tmp_path, "probe_a"))

    done = run_setup(action, env_for(server))

    assert done.returncode == 0, done.stderr
    assert "installing the pinned wheels with pip from the package index instead" in done.stdout
    assert imported(printed_python(action), "probe_a") == "installed"


def test_setup_falls_back_to_pip_when_the_direct_download_fails(
    tmp_path: Path, server: WheelServer, action: Action
) -> None:
    wheel = build_wheel(tmp_path, "probe_a")
    write_locks(action, server, HERE, wheel)
    lock = action.root / "requirements" / "action-wheels.txt"
    lock.write_text(lock.read_text().replace("/files/", "/missing/"))

    done = run_setup(action, env_for(server))

    assert done.returncode == 0, done.stderr
    assert "could not fetch" in done.stderr
    assert imported(printed_python(action), "probe_a") == "installed"


def test_setup_without_a_supported_python_says_what_to_add(tmp_path: Path, action: Action) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dirname = shutil.which("dirname")
    assert dirname is not None
    (bin_dir / "dirname").symlink_to(dirname)
    old_python = bin_dir / "python3"
    old_python.write_text("#!/bin/sh\necho '3.9 0123456789abcdef'\nexit 1\n")
    old_python.chmod(0o755)
    env = {"PATH": str(bin_dir), "RUNNER_TEMP": str(action.runner_temp)}
    env["GITHUB_OUTPUT"] = str(action.output)
    bash = shutil.which("bash")
    assert bash is not None

    done = subprocess.run(
        [bash, str(action.root / "scripts" / "action-setup.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 2
    assert done.stdout.startswith(
        "::error title=ci_shark::ci_shark needs CPython 3.10 to 3.14 on the runner "
        "(found: python3 3.9). Add actions/setup-python"
    )


def test_setup_puts_a_ci_shark_launcher_on_the_jobs_path(
    tmp_path: Path, server: WheelServer, action: Action
) -> None:
    """Later `run:` steps call `ci-shark`: the venv's python, -I, on the action's entrypoint,
    with the step's arguments as given."""
    write_locks(action, server, HERE, build_wheel(tmp_path, "probe_a"))
    (action.root / "entrypoint.py").write_text(
        "import json, sys\nprint(json.dumps([sys.executable, sys.flags.isolated, sys.argv[1:]]))\n"
    )
    github_path = tmp_path / "github-path"
    github_path.write_text("")
    done = run_setup(action, {**env_for(server), "GITHUB_PATH": str(github_path)})
    assert done.returncode == 0, done.stderr

    (folder,) = github_path.read_text().splitlines()
    launcher = Path(folder) / "ci-shark"
    assert Path(folder).is_relative_to(action.runner_temp)
    ran = subprocess.run(
        [str(launcher), "request", "-H", "X-A: b c", "https://api.example/x?y=1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": "/nowhere"},
    )
    executable, isolated, argv = json.loads(ran.stdout)
    assert Path(executable) == printed_python(action)
    assert isolated == 1
    assert argv == ["request", "-H", "X-A: b c", "https://api.example/x?y=1"]


def test_pip_fallback_runs_no_sitecustomize_from_the_workflows_pythonpath(
    tmp_path: Path, server: WheelServer, action: Action
) -> None:
    # A workflow may set PYTHONPATH (to the checkout, say) for its own steps; pip --python
    # starts the venv's python again, and without -I that one would import the
    # sitecustomize.py found there before installing anything.
    planted = tmp_path / "checkout"
    planted.mkdir()
    ran = tmp_path / "sitecustomize-ran"
    (planted / "sitecustomize.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    write_locks(action, server, "cp39-plan9-mips", build_wheel(tmp_path, "probe_a"))

    done = run_setup(action, env_for(server, PYTHONPATH=str(planted)))

    assert done.returncode == 0, done.stderr
    assert "package index instead" in done.stdout  # the pip path did run
    assert imported(printed_python(action), "probe_a") == "installed"
    assert not ran.exists(), "the workflow's sitecustomize.py ran during the set-up"
