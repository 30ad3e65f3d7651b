"""ci_shark side by side with the SharkAuth SDK (PyPI ``shark-auth``), on one loopback server.

A script, not a test: it prints a markdown table of medians and, with ``--write-doc``,
puts that table into docs/perf.md.

Needs the SDK in a venv of its own, so it cannot pollute ci_shark's (this script installs
nothing itself)::

    python -m venv benchmarks/.venv-sdk
    benchmarks/.venv-sdk/bin/pip install shark-auth

Run from the repository root with ci_shark's venv::

    .venv/bin/python benchmarks/run.py --runs 5 --write-doc

What is measured, A/B alternating (ci_shark, SDK, ci_shark, ...) so that a burst of load
on the machine hits both sides alike:

- time-to-link: process start -> the line with the user code in the process's output;
- approval -> token: the server approves right after a poll was answered
  ``authorization_pending`` (the worst moment: a whole interval until the next poll), then the
  time until ci_shark's outputs file exists / the SDK's driver prints its token. Interval 2 s;
- requests per approval, TCP connections, ``slow_down`` answers, from the server's records;
  the server enforces the interval strictly (SharkAuth's rule: arrival to arrival, no tolerance);
- peak RSS of the waiting process (``ru_maxrss`` from ``wait4`` on that very child);
- import cost: ``python -X importtime`` of ``ci_shark --version``, of the login path
  (``import ci_shark.flow``) and of ``import shark_auth``;
- peak RSS broken down: ``VmRSS`` after each stage of the login's imports;
- step start -> link, as a hosted runner would run it (PyPI only, an empty pip cache):
  scripts/action-setup.sh into a fresh dir then the login to its link (ours), or a venv,
  ``pip install shark-auth`` and the SDK to its link (theirs); cold, then warm (the venv
  is there).

The server does not demand DPoP nonces (``require_nonce=False``): the SDK cannot answer a
``use_dpop_nonce`` challenge, so it would never get a token. One extra row measures
ci_shark against the same server with nonces on.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import platform
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import later_commands  # noqa: E402 (benchmarks/, beside this script)

from ci_shark.sandbox import TOKEN_PATH, SandboxServer  # noqa: E402

DEFAULT_SDK_PYTHON = ROOT / "benchmarks" / ".venv-sdk" / "bin" / "python"
PERF_DOC = ROOT / "docs" / "perf.md"
T = TypeVar("T")
DOC_BEGIN = "<!-- benchmark:begin -->"
DOC_END = "<!-- benchmark:end -->"
DEFAULT_INTERVAL_S = 5  # RFC 8628 §3.5, when the server names none
INTERVAL_S = 2
SCOPE = "openid deploy:write"
CLIENT_ID = "ci-shark-bench"
RUN_TIMEOUT_S = 60.0
CODE_LINE = re.compile(r"code:\s+([A-Z]{4}-[A-Z]{4})")

# The SDK as its users call it; it prints the code line, then "token" once it returns.
SDK_DRIVER = """\
import sys
from shark_auth import DeviceFlow, DPoPProver

flow = DeviceFlow(
    auth_url=sys.argv[1], client_id=sys.argv[2], scope=sys.argv[3],
    dpop_prover=DPoPProver.generate(),
)
init = flow.begin()
print("  open:     " + (init.verification_uri_complete or init.verification_uri), flush=True)
print("  code:     " + init.user_code, flush=True)
token = flow.wait_for_approval(timeout_s=120)
print("token " + token.token_type, flush=True)
"""
SDK_VERSION = "import importlib.metadata as m; print(m.version('shark-auth'))"
# Variables that would make ci_shark pick a CI platform other than the generic one, and
# proxies (both clients honour them): every request must go straight to the loopback server.
_CI_VARIABLES = ("GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "TF_BUILD", "CI")
_PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


@dataclass(frozen=True)
class Contender:
    name: str
    sdk_python: Path | None = None  # the SDK's driver with this python, else ci_shark
    tree: Path | None = None  # a ci_shark source tree put first on sys.path
    no_bytecode: bool = False  # compile from source on every run (a fresh action checkout)


@dataclass
class FlowRun:
    time_to_link_s: float
    approval_to_token_s: float
    requests: int
    polls: int
    connections: int
    slow_downs: int
    nonce_challenges: int
    peak_rss_mib: float


@dataclass
class Samples:
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, metric: str, value: float) -> None:
        self.values.setdefault(metric, []).append(value)

    def median(self, metric: str) -> float | None:
        found = self.values.get(metric)
        return statistics.median(found) if found else None


# --------------------------------------------------------------------------- the machine


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def uptime() -> str:
    """`uptime`'s line (load averages over 1, 5, 15 min), or the load alone without it."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        line = subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout
        return f"`{line.strip()}`"
    return f"load average {load_average()}"


# --------------------------------------------------------------------------- one flow


class OutputReader:
    """Timestamps every line a child prints, on both streams."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self.seen: list[str] = []
        for stream in (proc.stdout, proc.stderr):
            assert stream is not None
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put((time.perf_counter(), line))

    def wait_for(self, predicate: Callable[[str], bool], deadline: float) -> tuple[float, str]:
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError("no such line; output so far:\n" + "".join(self.seen))
            try:
                at, line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(line)
            if predicate(line):
                return at, line


def wait_for_pending_poll(server: SandboxServer, mark: int, deadline: float) -> None:
    """Until the server has answered this run's first poll with authorization_pending."""
    while time.perf_counter() < deadline:
        for record in server.stats.requests[mark:]:
            if record.path == TOKEN_PATH and record.outcome == "authorization_pending":
                return
        time.sleep(0.002)
    raise TimeoutError("the client never polled")


def wait_for_file(path: Path, deadline: float) -> float:
    while time.perf_counter() < deadline:
        if path.exists():
            return time.perf_counter()
        time.sleep(0.002)
    raise TimeoutError(f"{path} was never written")


def start_piped(
    command: Sequence[str], env: dict[str, str], workdir: Path
) -> subprocess.Popen[str]:
    """Start a contender as a CI step would: no stdin, its output read by us."""
    return subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def reap(proc: subprocess.Popen[str]) -> float:
    """Wait for the child; its own peak RSS in MiB (wait4 reports that child only)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024  # Linux: KiB


def child_env(workdir: Path) -> dict[str, str]:
    """The same environment for every contender: no CI platform, no proxy, bytecode may be
    written."""
    env = {k: v for k, v in os.environ.items() if k not in (*_CI_VARIABLES, *_PROXY_VARIABLES)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as on a runner; stale .pyc are rewritten once
    env.pop("PYTHONPATH", None)
    env["TMPDIR"] = str(workdir)
    return env


def run_flow(
    contender: Contender, server: SandboxServer, workdir: Path, *, approve: bool = True
) -> FlowRun:
    """One login from process start to exit; without ``approve``, stopped at the link."""
    output_file = workdir / "ci-shark.json"
    with contextlib.suppress(FileNotFoundError):
        output_file.unlink()
    ours = contender.sdk_python is None
    env = login_env(server, workdir) if ours else child_env(workdir)
    if contender.tree is not None:
        env["PYTHONPATH"] = str(contender.tree)
    if contender.no_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    if ours:
        command = [sys.executable, "-m", "ci_shark"]
    else:
        command = [str(contender.sdk_python), "-c", SDK_DRIVER, server.url, CLIENT_ID, SCOPE]
    mark = len(server.stats.requests)
    started = time.perf_counter()
    deadline = started + RUN_TIMEOUT_S
    proc = start_piped(command, env, workdir)
    reader = OutputReader(proc)
    approval_to_token_s = float("nan")
    try:
        linked_at, line = reader.wait_for(lambda text: CODE_LINE.search(text) is not None, deadline)
        match = CODE_LINE.search(line)
        assert match is not None
        if approve:
            wait_for_pending_poll(server, mark, deadline)
            server.approve(match.group(1))
            approved_at = time.perf_counter()
            if contender.sdk_python is None:
                token_at = wait_for_file(output_file, deadline)
            else:
                token_at, _ = reader.wait_for(lambda text: text.startswith("token "), deadline)
            approval_to_token_s = token_at - approved_at
        else:
            proc.terminate()
        peak_rss_mib = reap(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            reap(proc)
    if approve and proc.returncode != 0:
        raise RuntimeError(f"{contender.name} exited {proc.returncode}:\n" + "".join(reader.seen))
    records = list(server.stats.requests[mark:])
    return FlowRun(
        time_to_link_s=linked_at - started,
        approval_to_token_s=approval_to_token_s,
        requests=len(records),
        polls=sum(1 for r in records if r.path == TOKEN_PATH),
        connections=len({r.connection_id for r in records}),
        slow_downs=sum(1 for r in records if r.outcome == "slow_down"),
        nonce_challenges=sum(1 for r in records if r.outcome == "use_dpop_nonce"),
        peak_rss_mib=peak_rss_mib,
    )


def record_flow(samples: Samples, run: FlowRun, suffix: str = "") -> None:
    samples.add("time_to_link_s" + suffix, run.time_to_link_s)
    samples.add("approval_to_token_s" + suffix, run.approval_to_token_s)
    samples.add("requests" + suffix, run.requests)
    samples.add("polls" + suffix, run.polls)
    samples.add("connections" + suffix, run.connections)
    samples.add("slow_downs" + suffix, run.slow_downs)
    samples.add("nonce_challenges" + suffix, run.nonce_challenges)
    samples.add("peak_rss_mib" + suffix, run.peak_rss_mib)


# --------------------------------------------------------------------------- imports


def import_cost(python: str, args: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds of the process, seconds of top-level imports per -X importtime)."""
    started = time.perf_counter()
    done = subprocess.run(
        [python, "-X", "importtime", *args],
        cwd=env["TMPDIR"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall_s = time.perf_counter() - started
    total_us = 0
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|", 2)
        if not name.startswith("  "):  # one space after the bar: a top-level import
            total_us += int(cumulative)
    return wall_s, total_us / 1e6


# --------------------------------------------------------------------------- step start -> link

# What an action checkout holds that the set-up and the login use.
ACTION_FILES = ("entrypoint.py", "ci_shark", "scripts", "requirements")
SETUP_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class StepRun:
    setup_s: float  # step start -> set-up done
    link_s: float  # step start -> the code line


def fresh_dir(scratch: Path, prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=scratch))


@functools.cache
def runner_python() -> str:
    """The interpreter that `python3` runs here, by its path: a runner has no shims, and
    pyenv's add ~0.1 s to each of the set-up's python calls."""
    found = shutil.which("python3") or "python3"
    return run_quietly([found, "-c", "import sys; print(sys.executable)"], {**os.environ}).strip()


def runner_env(scratch: Path) -> dict[str, str]:
    """The environment a hosted runner's step installs with: PyPI only (none of this
    machine's pip configuration or local wheel mirrors), an empty pip cache, no
    PYTHONDONTWRITEBYTECODE, `python3` first on PATH without shims; proxies, if any, as
    they are. RUNNER_PYTHON names that python."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PIP_", "UV_"))
        and key not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", *_CI_VARIABLES)
    }
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_CACHE_DIR=str(fresh_dir(scratch, "pip-cache-")),
        RUNNER_TEMP=str(fresh_dir(scratch, "runner-temp-")),
        PATH=os.pathsep.join([str(Path(runner_python()).parent), env.get("PATH", "")]),
        RUNNER_PYTHON=runner_python(),
    )
    return env


def login_env(server: SandboxServer, workdir: Path) -> dict[str, str]:
    """ci_shark's login as run_flow starts it: generic CI, log only, json outputs."""
    env = child_env(workdir)
    env.update(
        CI_SHARK_AUTH_URL=server.url,
        CI_SHARK_CLIENT_ID=CLIENT_ID,
        CI_SHARK_SCOPE=SCOPE,
        CI_SHARK_OUTPUT_FORMAT="json",
        CI_SHARK_OUTPUT_FILE=str(workdir / "ci-shark.json"),
        CI_SHARK_NOTIFY="log",
        CI_SHARK_TIMEOUT="120",
    )
    return env


def linked_at(command: Sequence[str], env: dict[str, str], workdir: Path) -> float:
    """Start ``command``, return when its code line shows (perf_counter), stop it."""
    proc = start_piped(command, env, workdir)
    try:
        reader = OutputReader(proc)
        at, _ = reader.wait_for(
            lambda text: CODE_LINE.search(text) is not None, time.perf_counter() + RUN_TIMEOUT_S
        )
    finally:
        proc.terminate()
        reap(proc)
    return at


def run_quietly(command: Sequence[str], env: dict[str, str]) -> str:
    """Its stdout; its whole output in the error when it fails."""
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=SETUP_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{command[0]} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def group_alive(pgid: int) -> bool:
    """Whether a process of that group still runs (zombies do not count). Linux /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == pgid:
                return True
    return False


def wait_for_group(pgid: int) -> None:
    """What a set-up left running in the background (bytecode) ends before the next run,
    so that it does not load the other contender's measurement."""
    deadline = time.perf_counter() + SETUP_TIMEOUT_S
    while group_alive(pgid):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"process group {pgid} still runs")
        time.sleep(0.02)


def copy_action(scratch: Path, tree: Path = ROOT) -> Path:
    """A fresh checkout of the action in ``tree``: no bytecode, nothing installed."""
    root = fresh_dir(scratch, "action-")
    for name in ACTION_FILES:
        source = tree / name
        if source.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "node_modules", ".venv*")
            shutil.copytree(source, root / name, ignore=ignore)
        else:
            shutil.copy2(source, root / name)
    return root


def action_step(action: Path, env: dict[str, str], server: SandboxServer, workdir: Path) -> StepRun:
    """The action's two steps as the runner runs them: scripts/action-setup.sh, then the
    login with the python it printed, to the link."""
    output = Path(env["RUNNER_TEMP"]) / "github-output"
    output.write_text("")
    started = time.perf_counter()
    setup = subprocess.Popen(
        ["bash", str(action / "scripts" / "action-setup.sh")],
        env={**env, "GITHUB_OUTPUT": str(output)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: what it leaves running is findable
    )
    out, err = setup.communicate(timeout=SETUP_TIMEOUT_S)
    set_up = time.perf_counter()
    if setup.returncode != 0:
        raise RuntimeError(f"action-setup.sh exited {setup.returncode}:\n{out}{err}")
    python = re.findall(r"^python=(.+)$", output.read_text(), re.MULTILINE)[-1]
    command = [python, "-I", str(action / "entrypoint.py")]
    link = linked_at(command, login_env(server, workdir), workdir)
    wait_for_group(setup.pid)
    return StepRun(set_up - started, link - started)


def sdk_step(
    python: str, venv: Path, env: dict[str, str], server: SandboxServer, workdir: Path
) -> StepRun:
    """What an SDK user's step does: a venv and ``pip install shark-auth`` unless the venv
    is there, then the SDK to its link."""
    venv_python = venv / "bin" / "python"
    started = set_up = time.perf_counter()
    if not venv_python.exists():
        run_quietly([python, "-m", "venv", str(venv)], env)
        run_quietly([str(venv_python), "-m", "pip", "install", "--quiet", "shark-auth"], env)
        set_up = time.perf_counter()
    command = [str(venv_python), "-c", SDK_DRIVER, server.url, CLIENT_ID, SCOPE]
    link = linked_at(command, child_env(workdir), workdir)
    return StepRun(set_up - started, link - started)


def record_step(found: Samples, temperature: str, run: StepRun) -> None:
    found.add(f"step_{temperature}_link_s", run.link_s)
    found.add(f"step_{temperature}_setup_s", run.setup_s)
    found.add(f"step_{temperature}_login_s", run.link_s - run.setup_s)


def measure_step_start(
    samples: dict[str, Samples],
    runs: int,
    scratch: Path,
    notes: list[str],
    baseline: Path | None = None,
) -> None:
    """Step start -> link, cold (fresh set-up from PyPI, empty cache) then warm (the venv
    is there: a second login in the job), the contenders alternating. A baseline tree
    with its own scripts/action-setup.sh is a third contender."""
    if not runs:
        return
    python = runner_python()  # what action-setup.sh picks first: python3
    version = run_quietly([python, "-c", "import sys; print(sys.version.split()[0])"], {})
    notes.append(f"step start → link: the runner's python is `{python}` ({version.strip()})")
    trees = {"ci_shark": ROOT}
    if baseline is not None and (baseline / "scripts" / "action-setup.sh").exists():
        trees["baseline"] = baseline
    names = [*trees, "sdk"]
    with benchmark_server() as server:
        for index, name in rotations(names, runs):
            env = runner_env(scratch)
            workdir = fresh_dir(scratch, "work-")
            if name in trees:
                action = copy_action(scratch, trees[name])
                pair = [action_step(action, env, server, workdir) for _ in range(2)]
            else:
                venv = fresh_dir(scratch, "sdk-venv-") / "venv"
                pair = [sdk_step(python, venv, env, server, workdir) for _ in range(2)]
            for temperature, run in zip(("cold", "warm"), pair, strict=True):
                record_step(samples[name], temperature, run)
                print(f"step {index + 1} {name} {temperature}: {run}", file=sys.stderr)


# --------------------------------------------------------------------------- the table


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "ms":
        return f"{value * 1000:.0f} ms"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:g}"


def ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None:
        return "n/a"
    if theirs == 0:
        return "=" if ours == 0 else "n/a"
    return f"{ours / theirs:.2f}"


RSS_STAGES: tuple[tuple[str, str], ...] = (
    # (label, what the stage imports or does), in the login's order of weight
    ("interpreter", "pass"),
    ("ssl + the system's CA store", "import ssl; ssl.create_default_context()"),
    ("cryptography (EC keys)", "from cryptography.hazmat.primitives.asymmetric import ec"),
    ("httpx + httpcore", "import httpx, httpcore._sync.connection_pool"),
    # pydantic loads its models' machinery on first use: ask for it, or the next stage gets it
    ("pydantic + pydantic-core", "from pydantic import BaseModel, ValidationError"),
    ("pydantic-settings", "import ci_shark._settings_import"),
    ("ci_shark's login modules (Settings built)", "import ci_shark.config, ci_shark.flow"),
)
ROWS: tuple[tuple[str, str, str, str], ...] = (
    # (label, our metric, their metric, unit)
    ("time-to-link (start → code line)", "time_to_link_s", "time_to_link_s", "s"),
    ("time-to-link, fresh checkout (no .pyc)", "fresh_time_to_link_s", "-", "s"),
    ("approval → token (interval 2 s)", "approval_to_token_s", "approval_to_token_s", "s"),
    ("requests per approval (all)", "requests", "requests", ""),
    ("  of which token polls", "polls", "polls", ""),
    ("TCP connections per run", "connections", "connections", ""),
    (
        "TCP connections per run, RFC 8628's default 5 s interval",
        "connections_default_interval",
        "connections_default_interval",
        "",
    ),
    ("`slow_down` received (strict server)", "slow_downs", "slow_downs", ""),
    ("peak RSS of the waiting process", "peak_rss_mib", "peak_rss_mib", "MiB"),
    ("  RSS after the login's imports, of which:", "rss_imports_total", "-", "MiB"),
    *((f"    {label}", f"rss_{label}", "-", "MiB") for label, _ in RSS_STAGES),
    ("approval → token, server demands DPoP nonces", "approval_to_token_s_nonce", "-", "s"),
    ("  requests there", "requests_nonce", "-", ""),
    ("  `use_dpop_nonce` challenges there", "nonce_challenges_nonce", "-", ""),
    ("import: `--version` process, wall", "version_wall_s", "-", "ms"),
    ("import: `--version`, -X importtime", "version_import_s", "-", "ms"),
    ("import: login path / `import shark_auth`, wall", "login_wall_s", "sdk_wall_s", "ms"),
    (
        "import: login path / `import shark_auth`, -X importtime",
        "login_import_s",
        "sdk_import_s",
        "ms",
    ),
    (
        "step start → link, cold: set-up from PyPI + login",
        "step_cold_link_s",
        "step_cold_link_s",
        "s",
    ),
    (
        "  of which set-up (SDK: venv + `pip install shark-auth`)",
        "step_cold_setup_s",
        "step_cold_setup_s",
        "s",
    ),
    ("  of which the login to its link", "step_cold_login_s", "step_cold_login_s", "s"),
    ("step start → link, warm: the venv is there", "step_warm_link_s", "step_warm_link_s", "s"),
    ("  of which set-up (SDK: none)", "step_warm_setup_s", "step_warm_setup_s", "s"),
)


def before_after(before: Samples, after: Samples) -> str:
    lines = [
        "| metric | before (median) | after (median) | after/before |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, metric, _, unit in ROWS:
        old, new = before.median(metric), after.median(metric)
        if old is not None and new is not None:
            lines.append(f"| {label} | {fmt(old, unit)} | {fmt(new, unit)} | {ratio(new, old)} |")
    return "\n".join(lines)


def table(ours: Samples, theirs: Samples) -> str:
    lines = [
        "| metric | ci_shark (median) | SDK (median) | ours/theirs |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, our_metric, their_metric, unit in ROWS:
        mine = ours.median(our_metric)
        other = theirs.median(their_metric) if their_metric != "-" else None
        if mine is None and other is None:
            continue
        other_text = fmt(other, unit) if their_metric != "-" else "—"
        lines.append(f"| {label} | {fmt(mine, unit)} | {other_text} | {ratio(mine, other)} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def rotations(items: Sequence[T], runs: int) -> Iterator[tuple[int, T]]:
    """A/B(/C) alternating: each round starts with the next contender."""
    for index in range(runs):
        shift = index % len(items)
        for contender in [*items[shift:], *items[:shift]]:
            yield index, contender


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="A/B rounds per measurement")
    parser.add_argument("--sdk-python", type=Path, default=DEFAULT_SDK_PYTHON)
    parser.add_argument(
        "--step-runs",
        type=int,
        default=3,
        help="cold+warm step start -> link rounds, set-up from PyPI (0: skip)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another source tree (`git archive REV ci_shark entrypoint.py scripts "
        "requirements | tar -x -C DIR`), measured alongside for before/after figures",
    )
    parser.add_argument(
        "--later-calls",
        type=int,
        default=100,
        help="requests per contender in the later commands' table (0: skip)",
    )
    parser.add_argument("--write-doc", action="store_true", help=f"update {PERF_DOC}")
    return parser.parse_args(argv)


def compile_tree(tree: Path) -> None:
    """Bytecode up to date, as pip leaves the SDK's: compiling is measured on its own row."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree)], check=True)


def benchmark_server(*, interval_s: int = INTERVAL_S, require_nonce: bool = False) -> SandboxServer:
    """The sandbox every flow is measured against: strict about the interval, DPoP
    required, approving only when told (right after a pending poll)."""
    return SandboxServer(
        interval_s=interval_s,
        approve_after_s=None,
        approve_on_open=False,
        strict_interval=True,
        require_dpop=True,
        require_nonce=require_nonce,
    )


def measure_flows(
    contenders: Sequence[Contender], samples: dict[str, Samples], runs: int, scratch: Path
) -> None:
    fresh_tree = scratch / "fresh-checkout"
    shutil.copytree(
        ROOT / "ci_shark", fresh_tree / "ci_shark", ignore=shutil.ignore_patterns("__pycache__")
    )
    fresh = Contender("ci_shark", tree=fresh_tree, no_bytecode=True)
    with benchmark_server() as server:
        for index, contender in rotations([*contenders, fresh], runs):
            if contender is fresh:
                run = run_flow(contender, server, scratch, approve=False)
                samples["ci_shark"].add("fresh_time_to_link_s", run.time_to_link_s)
                print(f"run {index + 1} fresh checkout: {run.time_to_link_s:.3f}s", file=sys.stderr)
                continue
            run = run_flow(contender, server, scratch)
            record_flow(samples[contender.name], run)
            print(f"run {index + 1} {contender.name}: {run}", file=sys.stderr)
    ci_sharks = [c for c in contenders if c.sdk_python is None]
    with benchmark_server(require_nonce=True) as server:
        for index, contender in rotations(ci_sharks, runs):
            run = run_flow(contender, server, scratch)
            record_flow(samples[contender.name], run, "_nonce")
            print(f"run {index + 1} {contender.name} (nonces): {run}", file=sys.stderr)
    # At the default interval a poll waits 5 s, as long as httpx keeps an idle connection
    # by default: whether each poll reconnects shows only here. Two rounds: it is slow.
    with benchmark_server(interval_s=DEFAULT_INTERVAL_S) as server:
        for index, contender in rotations(contenders, min(runs, 2)):
            run = run_flow(contender, server, scratch)
            samples[contender.name].add("connections_default_interval", run.connections)
            print(f"run {index + 1} {contender.name} (5 s interval): {run}", file=sys.stderr)


def measure_imports(
    contenders: Sequence[Contender], samples: dict[str, Samples], runs: int, scratch: Path
) -> None:
    for _, contender in rotations(contenders, runs):
        env = child_env(scratch)
        if contender.tree is not None:
            env["PYTHONPATH"] = str(contender.tree)
        found = samples[contender.name]
        if contender.sdk_python is not None:
            wall, imports = import_cost(str(contender.sdk_python), ["-c", "import shark_auth"], env)
            found.add("sdk_wall_s", wall)
            found.add("sdk_import_s", imports)
            continue
        wall, imports = import_cost(sys.executable, ["-m", "ci_shark", "--version"], env)
        found.add("version_wall_s", wall)
        found.add("version_import_s", imports)
        wall, imports = import_cost(sys.executable, ["-c", "import ci_shark.flow"], env)
        found.add("login_wall_s", wall)
        found.add("login_import_s", imports)


RSS_PROBE = """\
import sys
def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
for code in sys.argv[1:]:
    exec(code)
    print(rss_kib(), flush=True)
"""


def measure_rss(samples: Samples, runs: int, scratch: Path) -> None:
    """What each part of the login adds to its resident memory (VmRSS after each stage)."""
    for _ in range(runs):
        stages = [code for _, code in RSS_STAGES]
        out = run_quietly([sys.executable, "-c", RSS_PROBE, *stages], child_env(scratch))
        previous = 0
        for (label, _), kib in zip(RSS_STAGES, map(int, out.split()), strict=True):
            samples.add(f"rss_{label}", (kib - previous) / 1024)
            previous = kib
        samples.add("rss_imports_total", previous / 1024)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.sdk_python.exists():
        print(
            f"the SDK's python is missing: {args.sdk_python}\n"
            "install it apart from ci_shark's venv:\n"
            "  python -m venv benchmarks/.venv-sdk && "
            "benchmarks/.venv-sdk/bin/pip install shark-auth",
            file=sys.stderr,
        )
        return 2
    load_before = uptime()
    contenders = [Contender("ci_shark"), Contender("sdk", sdk_python=args.sdk_python)]
    if args.baseline is not None:
        contenders.append(Contender("baseline", tree=args.baseline.resolve()))
        compile_tree(args.baseline)
    compile_tree(ROOT / "ci_shark")
    samples = {contender.name: Samples() for contender in contenders}
    notes: list[str] = []
    scratch = Path(tempfile.mkdtemp(prefix="ci-shark-bench-"))
    try:
        measure_flows(contenders, samples, args.runs, scratch)
        measure_imports(contenders, samples, args.runs, scratch)
        measure_rss(samples["ci_shark"], args.runs, scratch)
        baseline_action = args.baseline if args.baseline is not None else None
        measure_step_start(samples, args.step_runs, scratch, notes, baseline_action)
        later = later_commands.measure(args.later_calls, scratch) if args.later_calls else None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    sdk_version = subprocess.run(
        [str(args.sdk_python), "-c", SDK_VERSION], capture_output=True, text=True, check=False
    ).stdout.strip()
    command = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = "\n".join(
        [
            table(samples["ci_shark"], samples["sdk"]),
            "",
            f"- runs: {args.runs} rounds, contenders alternating (medians); "
            f"step start → link: {args.step_runs} rounds, each a cold then a warm run",
            f"- machine: {cpu_model()}, `nproc` {os.cpu_count()}, Python "
            f"{platform.python_version()}, {platform.system()} {platform.release()}",
            f"- load (`uptime`): {load_before} before, {uptime()} after "
            "(other engineers' test suites share the machine)",
            f"- SDK: shark-auth {sdk_version or '?'}; server: ci_shark.sandbox on loopback "
            f"(plain HTTP), interval {INTERVAL_S} s, strict interval, DPoP required, "
            "nonces off unless said",
            *[f"- note: {note}" for note in notes],
            f"- command: `{command.strip()}`",
        ]
    )
    print(report)
    later_report = ""
    if later is not None:
        later_report = later_commands.report(later, args.later_calls, command.strip())
        print(f"\nLater commands:\n\n{later_report}")
    if args.baseline is not None:
        print("\nBefore/after (baseline tree vs this tree):\n")
        print(before_after(samples["baseline"], samples["ci_shark"]))
    if args.write_doc:
        write_doc(report)
        if later_report:
            later_commands.write_doc(later_report)
    return 0


def write_doc(report: str) -> None:
    block = f"{DOC_BEGIN}\n{report}\n{DOC_END}"
    text = PERF_DOC.read_text(encoding="utf-8") if PERF_DOC.exists() else ""
    if DOC_BEGIN in text and DOC_END in text:
        head, rest = text.split(DOC_BEGIN, 1)
        tail = rest.split(DOC_END, 1)[1]
        text = head + block + tail
    else:
        text = (text or "# Performance\n\n") + block + "\n"
    PERF_DOC.parent.mkdir(parents=True, exist_ok=True)
    PERF_DOC.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
