"""Ways to set up the action's venv, measured as a runner would run them: step start -> link.

A script, not a test. Each candidate fills a fresh venv with the same hash-pinned wheels
(PyPI only, empty cache, none of this machine's pip configuration: see run.py's
``runner_env``), then the login runs from a fresh copy of the action to its link on the
loopback sandbox. Candidates alternate, each round starting with the next; medians.
What scripts/action-setup.sh does is the candidate ``shipped``; docs/perf.md says why.

    .venv/bin/python benchmarks/setup_candidates.py --runs 5
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import run

from ci_shark.sandbox import SandboxServer

UV_VERSION = "0.9.9"
CREATE = '"$PY" -m venv --without-pip "$VENV"'
PIP = '"$PY" -m pip --python "$VENV/bin/python" install --disable-pip-version-check -q'
COMPILE_CI_SHARK = '"$VENV/bin/python" -I -m compileall -q "$ROOT/ci_shark" >/dev/null'
INSTALL_WHEELS = '"$VENV/bin/python" -I "$ROOT/scripts/install_wheels.py" "$WHEELS"'
# uv's wheel by its URL, checked against its sha256, its binary unpacked: as a lock would
# pin it (one python call, like the set-up's other steps).
FETCH_UV_PY = (
    "import hashlib, io, os, sys, urllib.request, zipfile; "
    "data = urllib.request.urlopen(sys.argv[1]).read(); "
    "assert hashlib.sha256(data).hexdigest() == sys.argv[2]; "
    "wheel = zipfile.ZipFile(io.BytesIO(data)); "
    "name = next(n for n in wheel.namelist() if n.endswith('.data/scripts/uv')); "
    "open(sys.argv[3], 'wb').write(wheel.read(name)); os.chmod(sys.argv[3], 0o755)"
)
FETCH_UV = f'"$PY" -c "{FETCH_UV_PY}" "$UV_URL" "$UV_SHA256" "$RUNNER_TEMP/uv"'
UV = (
    '"$RUNNER_TEMP/uv" pip install -q --python "$VENV/bin/python"'
    " --no-index --require-hashes --no-deps"
)

# (name, what it does in bash). $PY is the runner's python, $VENV the venv, $ROOT the
# action checkout, $LOCK requirements/action.txt, $DIRECT the same wheels as direct URLs
# (`name @ URL --hash=...`), $WHEELS requirements/action-wheels.txt.
CANDIDATES: tuple[tuple[str, str], ...] = (
    (
        "pip, index (before this change)",
        f"{CREATE} && {PIP} --require-hashes --only-binary :all: --no-deps -r $LOCK"
        f" && {COMPILE_CI_SHARK}",
    ),
    (
        "pip, direct URLs, --no-index",
        f"{CREATE} && {PIP} --no-index --require-hashes --no-deps -r $DIRECT && {COMPILE_CI_SHARK}",
    ),
    (
        "pip, direct URLs, --no-index --no-compile",
        f"{CREATE} && {PIP} --no-index --require-hashes --no-deps --no-compile -r $DIRECT",
    ),
    (
        "uv from PyPI (hash-pinned), direct URLs, --compile-bytecode",
        f"{CREATE} && {FETCH_UV} && {UV} --compile-bytecode -r $DIRECT && {COMPILE_CI_SHARK}",
    ),
    (
        "uv from PyPI (hash-pinned), direct URLs, no bytecode",
        f"{CREATE} && {FETCH_UV} && {UV} -r $DIRECT",
    ),
    (
        "install_wheels.py + compileall before the login",
        f'{CREATE} && {INSTALL_WHEELS} && "$VENV/bin/python" -I -m compileall -q "$VENV"'
        ' "$ROOT/ci_shark" >/dev/null',
    ),
    (
        "install_wheels.py + compileall -j 0 before the login",
        f'{CREATE} && {INSTALL_WHEELS} && "$VENV/bin/python" -I -m compileall -q -j 0 "$VENV"'
        ' "$ROOT/ci_shark" >/dev/null',
    ),
    (
        "install_wheels.py, no bytecode (the login compiles its imports)",
        f"{CREATE} && {INSTALL_WHEELS}",
    ),
    (
        "install_wheels.py + compileall in the background, beside the login",
        f'{CREATE} && {INSTALL_WHEELS} && {{ nice -n 10 "$VENV/bin/python" -I -m compileall -q'
        ' "$VENV" "$ROOT/ci_shark" </dev/null >/dev/null 2>&1 & }',
    ),
    (
        "shipped: scripts/action-setup.sh (install_wheels.py, no bytecode before the login)",
        'bash "$ROOT/scripts/action-setup.sh" >/dev/null',
    ),
)


def platform_key() -> str:
    return f"cp{sys.version_info[0]}{sys.version_info[1]}-linux-{platform.machine().lower()}"


def direct_requirements(wheels: Path, into: Path) -> Path:
    """This platform's lines of action-wheels.txt as a pip requirements file."""
    lines = []
    for raw in wheels.read_text(encoding="utf-8").splitlines():
        fields = raw.split()
        if fields and fields[0] == platform_key():
            name = fields[2].rsplit("/", 1)[1].split("-", 1)[0].replace("_", "-").lower()
            lines.append(f"{name} @ {fields[2]} --hash=sha256:{fields[1]}")
    if not lines:
        raise SystemExit(f"no wheels for {platform_key()} in {wheels}")
    target = into / "direct.txt"
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def uv_wheel() -> tuple[str, str]:
    """(URL, sha256) of uv's manylinux wheel for this machine, from PyPI's JSON index: what
    a lock would pin. Looked up before any timing starts."""
    request = urllib.request.Request(
        "https://pypi.org/simple/uv/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        files = json.load(response)["files"]
    machine = platform.machine().lower()
    for entry in files:
        name = entry["filename"]
        if name.startswith(f"uv-{UV_VERSION}-") and "manylinux" in name and machine in name:
            return entry["url"], entry["hashes"]["sha256"]
    raise SystemExit(f"no uv {UV_VERSION} wheel for {machine}")


def measure(script: str, env: dict[str, str], server: SandboxServer, scratch: Path) -> run.StepRun:
    action = run.copy_action(scratch)
    venv = Path(env["RUNNER_TEMP"]) / "venv"
    output = Path(env["RUNNER_TEMP"]) / "github-output"
    output.write_text("")
    step_env = {**env, "ROOT": str(action), "VENV": str(venv), "GITHUB_OUTPUT": str(output)}
    started = time.perf_counter()
    setup = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        env=step_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    out, err = setup.communicate(timeout=run.SETUP_TIMEOUT_S)
    set_up = time.perf_counter()
    if setup.returncode != 0:
        raise RuntimeError(f"{script}\nexited {setup.returncode}:\n{out}{err}")
    printed = [line for line in output.read_text().splitlines() if line.startswith("python=")]
    python = printed[-1].split("=", 1)[1] if printed else str(venv / "bin" / "python")
    workdir = run.fresh_dir(scratch, "work-")
    command = [python, "-I", str(action / "entrypoint.py")]
    link = run.linked_at(command, run.login_env(server, workdir), workdir)
    run.wait_for_group(setup.pid)
    return run.StepRun(set_up - started, link - started)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="rounds (each runs every candidate)")
    parser.add_argument(
        "--only", action="append", default=[], help="candidates whose name contains this"
    )
    args = parser.parse_args(argv)
    candidates = [
        (name, script)
        for name, script in CANDIDATES
        if not args.only or any(part in name for part in args.only)
    ]
    load_before = run.uptime()
    uv_url, uv_sha256 = uv_wheel()
    found: dict[str, list[run.StepRun]] = {name: [] for name, _ in candidates}
    scratch = Path(tempfile.mkdtemp(prefix="ci-shark-setup-"))
    try:
        direct = direct_requirements(run.ROOT / "requirements" / "action-wheels.txt", scratch)
        with run.benchmark_server() as server:
            for index, (name, script) in run.rotations(candidates, args.runs):
                env = run.runner_env(scratch)
                env.update(
                    PY=env["RUNNER_PYTHON"],
                    LOCK=str(run.ROOT / "requirements" / "action.txt"),
                    WHEELS=str(run.ROOT / "requirements" / "action-wheels.txt"),
                    DIRECT=str(direct),
                    UV_URL=uv_url,
                    UV_SHA256=uv_sha256,
                    UV_CACHE_DIR=str(Path(env["PIP_CACHE_DIR"]) / "uv"),
                    UV_NO_CONFIG="1",
                )
                result = measure(script, env, server, scratch)
                found[name].append(result)
                print(f"round {index + 1} {name}: {result}", file=sys.stderr)
    finally:
        subprocess.run(["rm", "-rf", str(scratch)], check=False)
    print("| candidate | set-up | step start → link | of which the login |")
    print("| --- | ---: | ---: | ---: |")
    for name, results in found.items():
        setup_s = statistics.median(r.setup_s for r in results)
        link_s = statistics.median(r.link_s for r in results)
        login_s = statistics.median(r.link_s - r.setup_s for r in results)
        print(f"| {name} | {setup_s:.2f} s | {link_s:.2f} s | {login_s:.2f} s |")
    print()
    print(f"- {args.runs} rounds, candidates alternating, medians; uv {UV_VERSION}")
    python = platform.python_version()
    print(f"- machine: {run.cpu_model()}, `nproc` {os.cpu_count()}, Python {python}")
    print(f"- load: {load_before} before, {run.uptime()} after")
    digest = hashlib.sha256((run.ROOT / "requirements" / "action-wheels.txt").read_bytes())
    print(f"- lock: requirements/action-wheels.txt sha256 {digest.hexdigest()[:16]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
