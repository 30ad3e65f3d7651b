"""The later commands measured (issue 22): `ci-shark request` as one process per call,
against `ci-shark proxy` serving the same requests, side by side in one run.

A module of benchmarks/run.py (its rows are the table "Later commands"), runnable alone::

    .venv/bin/python benchmarks/later_commands.py --calls 100 --write-doc

The resource is the sandbox's DPoP-protected ``/api/echo``, in a process of its own on
loopback: it demands a nonce (every new `ci-shark request` process meets one challenge),
and it sets TCP_NODELAY (without it a keep-alive answer stalls ~40 ms and hides what the
proxy costs). Its nonce lives ten minutes, so that a direct request can be signed ahead.

Each round, in turn (so that a burst of load on the machine hits every contender alike):

1. ``ci-shark request URL``: a new process, start to exit;
2. ``curl URL`` through the proxy: a new process too (a shell loop);
3. one GET through the proxy on a keep-alive connection (Terraform, Node, a Python loop);
4. the same GET straight to the resource on a keep-alive connection, its proof signed
   before the clock starts: what the proxy adds is (3) minus (4).

The proxy is started once (its start-up is a row of its own), with the login's
credentials, like any later step.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ci_shark.oauth.dpop import DPoPKey  # noqa: E402

PERF_DOC = ROOT / "docs" / "perf.md"
DOC_BEGIN = "<!-- later-commands:begin -->"
DOC_END = "<!-- later-commands:end -->"
CLIENT_ID = "ci-shark-bench"
START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 30.0
TIMES = "\u00d7"  # as docs/perf.md writes it
_CLEARED = ("GITHUB_", "GITLAB_", "BUILDKITE", "TF_BUILD", "CI_", "SHARK_", "RUNNER_")
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@dataclass
class Figures:
    request_s: list[float] = field(default_factory=list)
    curl_proxy_s: list[float] = field(default_factory=list)
    keepalive_proxy_s: list[float] = field(default_factory=list)
    keepalive_direct_s: list[float] = field(default_factory=list)
    baseline_request_s: list[float] = field(default_factory=list)
    proxy_start_s: float = 0.0
    proxy_rss_mib: float = 0.0
    request_rss_mib: list[float] = field(default_factory=list)


def child_env(workdir: Path) -> dict[str, str]:
    """No CI platform, no proxy, no ci_shark variable: the same for every contender."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_CLEARED) and key not in (*_PROXIES, "CI", "PYTHONPATH")
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(TMPDIR=str(workdir), XDG_STATE_HOME=str(workdir / "state"))
    return env


def ci_shark_argv() -> list[str]:
    """`ci-shark` as a later step runs it: the console script beside this python."""
    script = Path(sys.executable).with_name("ci-shark")
    return [str(script)] if script.exists() else [sys.executable, "-I", "-m", "ci_shark"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def sandbox(workdir: Path) -> Iterator[str]:
    """The sandbox in its own process: nonces demanded (rotating every 10 minutes)."""
    port = free_port()
    argv = [sys.executable, "-I", "-m", "ci_shark.sandbox", "--port", str(port)]
    argv += ["--approve-after", "0.3", "--nonce-ttl", "600"]
    proc = subprocess.Popen(
        argv, env=child_env(workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the sandbox did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def log_in(url: str, workdir: Path) -> Path:
    credentials = workdir / "ci-shark.json"
    env = child_env(workdir)
    env.update(
        CI_SHARK_AUTH_URL=url,
        CI_SHARK_CLIENT_ID=CLIENT_ID,
        CI_SHARK_OUTPUT_FORMAT="json",
        CI_SHARK_OUTPUT_FILE=str(credentials),
        CI_SHARK_NOTIFY="log",
    )
    subprocess.run(
        ci_shark_argv(), env=env, cwd=workdir, capture_output=True, check=True, timeout=60
    )
    return credentials


@dataclass
class Proxy:
    proc: subprocess.Popen[str]
    url: str  # SHARK_PROXY_URL

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


@contextmanager
def proxy(credentials: Path, upstream: str, workdir: Path) -> Iterator[tuple[Proxy, float]]:
    argv = [*ci_shark_argv(), "proxy", "--credentials", str(credentials), "--upstream", upstream]
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        env=child_env(workdir),
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # one line per request: not what is measured
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        up_s = time.perf_counter() - started
        if not line.startswith("SHARK_PROXY_URL="):
            raise RuntimeError(f"the proxy did not start: {line!r}")
        yield Proxy(proc, line.split("=", 1)[1]), up_s
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def timed(argv: Sequence[str], env: dict[str, str], workdir: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one process that must succeed."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[0]} failed: {proc.stderr.read() if proc.stderr else ''}")
    if proc.stderr is not None:
        proc.stderr.close()
    proc.returncode = 0
    return wall, usage.ru_maxrss / 1024


class KeepAlive:
    """One keep-alive connection, as a long-lived client holds it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.base_path = parts.path.rstrip("/")  # the proxy's capability, or nothing
        self.connection = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=CALL_TIMEOUT_S
        )
        self.connection.connect()
        self.connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[float, int, str]:
        """(seconds, status, DPoP-Nonce) of one GET, its body read."""
        started = time.perf_counter()
        self.connection.request("GET", self.base_path + path, headers=headers or {})
        response = self.connection.getresponse()
        response.read()
        return (
            time.perf_counter() - started,
            response.status,
            response.getheader("DPoP-Nonce") or "",
        )

    def close(self) -> None:
        self.connection.close()


def tree_argv(tree: Path) -> list[str]:
    """`ci-shark` from another source tree (``git archive REV ci_shark | tar -x -C DIR``),
    as the action runs it: that tree first on the path, nothing else."""
    code = "import sys; sys.path.insert(0, sys.argv.pop(1)); from ci_shark.cli import main; "
    return [sys.executable, "-I", "-c", code + "sys.exit(main())", str(tree)]


def measure(calls: int, workdir: Path, baseline: Path | None = None) -> Figures:
    figures = Figures()
    env = child_env(workdir)
    curl = shutil.which("curl")
    with sandbox(workdir) as upstream:
        credentials = log_in(upstream, workdir)
        login = json.loads(credentials.read_text())
        key = DPoPKey.load(Path(login["SHARK_DPOP_KEY_FILE"]).read_text())
        token = login["SHARK_ACCESS_TOKEN"]
        api = f"{upstream}/api/echo"
        with proxy(credentials, upstream, workdir) as (running, up_s):
            figures.proxy_start_s = up_s
            through, direct = KeepAlive(running.url), KeepAlive(upstream)
            _, _, nonce = direct.get("/api/echo")  # a 401 that names the nonce
            through.get("/api/echo")  # the proxy meets its nonce challenge once
            request = ["request", "--credentials", str(credentials), api]
            for index in range(calls):
                wall, rss = timed([*ci_shark_argv(), *request], env, workdir)
                figures.request_s.append(wall)
                figures.request_rss_mib.append(rss)
                if baseline is not None:
                    wall, _ = timed([*tree_argv(baseline), *request], env, workdir)
                    figures.baseline_request_s.append(wall)
                if curl is not None:
                    figures.curl_proxy_s.append(
                        timed(
                            [curl, "-fsS", "-o", "/dev/null", f"{running.url}/api/echo"],
                            env,
                            workdir,
                        )[0]
                    )
                seconds, status, _ = through.get("/api/echo")
                assert status == 200, status
                figures.keepalive_proxy_s.append(seconds)
                proof = key.proof("GET", api, nonce=nonce, access_token=token)  # signed ahead
                seconds, status, nonce = direct.get(
                    "/api/echo", {"Authorization": f"DPoP {token}", "DPoP": proof}
                )
                assert status == 200, status
                figures.keepalive_direct_s.append(seconds)
                if (index + 1) % 20 == 0:
                    print(f"later commands: {index + 1}/{calls}", file=sys.stderr)
            figures.proxy_rss_mib = running.rss_mib()
            through.close()
            direct.close()
    return figures


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def table(figures: Figures, calls: int) -> str:
    requests = sum(figures.request_s)
    target = f"≥ 10{TIMES} less"

    def against_requests(total_s: float) -> str:
        return f"{total_s:.2f} s ({requests / total_s:.0f}{TIMES} less)"

    pairs = zip(figures.keepalive_proxy_s, figures.keepalive_direct_s, strict=True)
    added = [proxied - direct for proxied, direct in pairs]
    keepalive_total = sum(figures.keepalive_proxy_s) + figures.proxy_start_s
    rows = [
        "| metric | figure | target |",
        "| --- | ---: | ---: |",
        f"| {calls} {TIMES} `ci-shark request` (a process each), wall | {requests:.2f} s | — |",
        f"| {calls} GETs through `ci-shark proxy`, keep-alive client, its start-up included "
        f"| {against_requests(keepalive_total)} | {target} |",
    ]
    if figures.curl_proxy_s:
        curl_total = sum(figures.curl_proxy_s) + figures.proxy_start_s
        rows.append(
            f"| {calls} {TIMES} `curl` through `ci-shark proxy` (a process each), its "
            f"start-up included | {against_requests(curl_total)} | {target} |"
        )
    served = calls * (3 if figures.curl_proxy_s else 2)
    rows += [
        "| `ci-shark request`, one call (median; one nonce challenge each) "
        f"| {statistics.median(figures.request_s):.3f} s | ≤ 0.15 s |",
        *(
            [
                "| `ci-shark request`, the baseline tree, one call (median) "
                f"| {statistics.median(figures.baseline_request_s):.3f} s | — |"
            ]
            if figures.baseline_request_s
            else []
        ),
        "| a GET through the proxy, keep-alive (median) "
        f"| {ms(statistics.median(figures.keepalive_proxy_s))} | — |",
        "| the same GET direct, proof signed ahead (median) "
        f"| {ms(statistics.median(figures.keepalive_direct_s))} | — |",
        "| added by the proxy, per request (median of the paired differences) "
        f"| {ms(statistics.median(added))} | ≤ 5 ms |",
        "| the proxy's start-up (process start → its URL line) "
        f"| {figures.proxy_start_s:.3f} s | — |",
        f"| the proxy's peak RSS after {served} requests | {figures.proxy_rss_mib:.1f} MiB | — |",
        "| `ci-shark request`'s peak RSS (median) "
        f"| {statistics.median(figures.request_rss_mib):.1f} MiB | — |",
    ]
    return "\n".join(rows)


def report(figures: Figures, calls: int, command: str) -> str:
    one, five, fifteen = os.getloadavg()
    return "\n".join(
        [
            table(figures, calls),
            "",
            f"- {calls} rounds, the contenders in turn within each; `nproc` {os.cpu_count()}, "
            f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} at the end",
            "- resource: the sandbox's `/api/echo` in a process of its own (nonces on, "
            "TCP_NODELAY); clients: `http.client` keep-alive, curl, `ci-shark` console script",
            f"- command: `{command}`",
        ]
    )


def write_doc(text: str) -> None:
    block = f"{DOC_BEGIN}\n{text}\n{DOC_END}"
    doc = PERF_DOC.read_text(encoding="utf-8")
    if DOC_BEGIN in doc and DOC_END in doc:
        head, rest = doc.split(DOC_BEGIN, 1)
        doc = head + block + rest.split(DOC_END, 1)[1]
    else:
        doc += f"\n{block}\n"
    PERF_DOC.write_text(doc, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100, help="requests per contender")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another source tree whose `ci-shark request` is measured alongside "
        "(`git archive REV ci_shark | tar -x -C DIR`)",
    )
    parser.add_argument("--write-doc", action="store_true", help=f"update {PERF_DOC}")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="ci-shark-later-"))
    try:
        figures = measure(args.calls, workdir, args.baseline)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    command = "python benchmarks/later_commands.py " + " ".join(argv or sys.argv[1:])
    text = report(figures, args.calls, command.strip())
    print(text)
    if args.write_doc:
        write_doc(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
