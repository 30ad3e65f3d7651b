"""`ci-shark proxy` with real clients (curl, Node's fetch) against resources that check
every proof as RFC 9449 asks (support/dpop_resource.py, with joserfc; the sandbox's
``/api/*`` for refresh): the capability, never an open proxy, the client's credentials
dropped, one keep-alive connection to the upstream, redirects, bodies of 200 MB both ways
in bounded memory, refresh before expiry, SIGTERM and SIGINT (passed to a wrapped
command), and nothing secret in what it prints (issue 22)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest
from support.background import Background
from support.cli import CliJob, clean_env, login_env, run_bash, run_cli
from support.dpop_resource import DPoPResource
from support.job_outputs import secrets_of
from support.required import missing
from support.waits import until

from ci_shark.proxy.server import MAX_HEADER_BYTES, MAX_REQUEST_LINE_BYTES
from ci_shark.sandbox import SandboxServer

SandboxFactory = Callable[..., SandboxServer]
URL_LINE = re.compile(r"^SHARK_PROXY_URL=(http://127\.0\.0\.1:\d+/([A-Za-z0-9_-]{32}))$", re.M)
FETCH = Path(__file__).with_name("fetch_through_proxy.mjs")
MB = 1024 * 1024


@pytest.fixture(autouse=True)
def real_clients() -> None:
    """curl (Debian's, installed by .ci/run) is the client of every test here."""
    if shutil.which("curl") is None:
        missing("curl is not installed")


def logged_in(server: SandboxServer, tmp: Path) -> Path:
    done = run_cli([], login_env(server, tmp), cwd=tmp)
    assert done.returncode == 0, done.log
    return tmp / "out.json"


def values(credentials: Path) -> dict[str, str]:
    return dict(json.loads(credentials.read_text()))


@pytest.fixture
def credentials(sandbox_factory: SandboxFactory, tmp_path: Path) -> Path:
    return logged_in(sandbox_factory(approve_after_s=1), tmp_path)


@pytest.fixture
def api(credentials: Path) -> Iterator[DPoPResource]:
    resource = DPoPResource().start()
    login = values(credentials)
    resource.accept(login["SHARK_ACCESS_TOKEN"], login["SHARK_DPOP_JKT"])
    yield resource
    resource.stop()


class Proxy:
    def __init__(self, job: CliJob) -> None:
        self.job = job
        found = job.wait_for(URL_LINE)
        self.url, self.capability = found[1], found[2]
        self.origin = self.url.rsplit("/", 1)[0]

    def curl(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["curl", "-sS", "--max-time", "60", *args],
            input=stdin.decode() if stdin is not None else None,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    def rss_mib(self) -> float:
        """Its resident memory now (``ps``: Linux and macOS alike)."""
        done = subprocess.run(
            ["ps", "-o", "rss=", "-p", str(self.job.process.pid)],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(done.stdout.split()[0]) / 1024


class PeakRss:
    """The most memory the proxy held while the ``with`` block ran, sampled every 20 ms:
    a body held whole for the length of a 200 MB transfer cannot slip between two."""

    def __init__(self, running: Proxy) -> None:
        self._running = running
        self._stop = threading.Event()
        self.mib = 0.0
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.mib = max(self.mib, self._running.rss_mib())

    def __enter__(self) -> PeakRss:
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sampler.join(5)
        self.mib = max(self.mib, self._running.rss_mib())


def proxy_args(credentials: Path, *upstreams: str) -> list[str]:
    """`ci-shark proxy` with a login's credentials, forwarding to ``upstreams``."""
    flags = [flag for upstream in upstreams for flag in ("--upstream", upstream)]
    return ["proxy", "--credentials", str(credentials), *flags]


@contextmanager
def proxy(credentials: Path, *upstreams: str, env: dict[str, str] | None = None) -> Iterator[Proxy]:
    args = proxy_args(credentials, *upstreams)
    with CliJob(args, env or clean_env(), cwd=credentials.parent) as job:
        yield Proxy(job)


def secrets_in(credentials: Path) -> list[str]:
    return secrets_of(values(credentials))


# -- what a client gets, what the upstream sees ---------------------------------------------


def test_curl_through_the_proxy_sends_a_verified_dpop_request(
    credentials: Path, api: DPoPResource
) -> None:
    with proxy(credentials, api.url) as running:
        got = running.curl(f"{running.url}/echo?page=2")
        posted = running.curl("--data-binary", '{"ref": "v1"}', f"{running.url}/echo")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["target"] == "/echo?page=2"  # the query reaches the API
    assert json.loads(posted.stdout)["bytes"] == len('{"ref": "v1"}')
    # The first request met the nonce demand, answered once; then the nonce was known.
    assert api.outcomes() == ["use_dpop_nonce", "ok", "ok"]
    ok = [seen for seen in api.seen if seen.outcome == "ok"]
    assert [seen.claims["htm"] for seen in ok] == ["GET", "POST"]
    assert ok[0].claims["htu"] == f"{api.url}/echo"  # the upstream URL, no query
    assert ok[0].claims["nonce"] == api.nonce
    assert ok[0].claims["jkt"] == values(credentials)["SHARK_DPOP_JKT"]


def test_every_client_shares_one_keep_alive_connection_to_the_upstream(
    credentials: Path, api: DPoPResource
) -> None:
    with proxy(credentials, api.url) as running:
        for number in range(5):  # a curl process each: five client connections
            got = running.curl(f"{running.url}/echo?n={number}")
            assert got.returncode == 0, got.stderr
    assert api.outcomes() == ["use_dpop_nonce"] + ["ok"] * 5
    # The challenge closes its connection (its body is never read); every request after it
    # goes on one pooled connection, whichever client sent it.
    challenged, *served = [seen.connection for seen in api.seen]
    assert len(set(served)) == 1, served
    assert challenged not in served


def test_node_fetch_uses_the_token_without_knowing_dpop(
    credentials: Path, api: DPoPResource
) -> None:
    if shutil.which("node") is None:
        missing("node is not installed")
    with proxy(credentials, api.url) as running:
        done = subprocess.run(
            ["node", str(FETCH), running.url, "3"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["get"]["status"] == 200
    assert got["get"]["body"]["target"] == "/echo?from=node"
    assert got["get"]["setCookie"] is None  # no session for 127.0.0.1 from the upstream
    assert got["get"]["nonce"] is None  # the nonce is the proxy's business
    assert (got["post"]["status"], got["post"]["body"]["bytes"]) == (200, len('{"ref":"v1.2.3"}'))
    assert got["upload"]["status"] == 200
    assert got["upload"]["body"]["bytes"] == 3 * MB  # chunked, streamed, whole
    assert got["redirect"]["status"] == 302
    assert got["redirect"]["location"] == f"{running.url}/echo"
    assert all(seen.outcome in ("ok", "use_dpop_nonce") for seen in api.seen)
    assert "node-secret" not in repr([seen.headers for seen in api.seen])


def test_the_clients_own_credentials_never_reach_the_upstream(
    credentials: Path, api: DPoPResource
) -> None:
    with proxy(credentials, api.url) as running:
        got = running.curl(
            "-i",
            "-H",
            "Authorization: Bearer client-secret-xyz",
            "-H",
            "DPoP: forged.proof.value",
            "-H",
            "Cookie: session=client-cookie",
            "-H",
            "Proxy-Authorization: Basic Y2xpZW50OnB3",
            f"{running.url}/echo",
        )
    assert got.returncode == 0, got.stderr
    assert "HTTP/1.1 200" in got.stdout
    assert "set-cookie" not in got.stdout.lower()  # not passed back either
    seen = api.seen[-1]
    assert seen.outcome == "ok"
    names = [name.lower() for name, _ in seen.headers]
    assert names.count("authorization") == 1
    assert names.count("dpop") == 1
    assert "cookie" not in names
    assert "proxy-authorization" not in names
    authorization = next(value for name, value in seen.headers if name.lower() == "authorization")
    assert authorization == f"DPoP {values(credentials)['SHARK_ACCESS_TOKEN']}"
    for planted in ("client-secret-xyz", "forged.proof.value", "client-cookie", "Y2xpZW50OnB3"):
        assert planted not in repr(seen.headers)


def test_named_upstreams_each_under_their_prefix(credentials: Path, api: DPoPResource) -> None:
    other = DPoPResource().start()
    login = values(credentials)
    other.accept(login["SHARK_ACCESS_TOKEN"], login["SHARK_DPOP_JKT"])
    try:
        with proxy(credentials, f"one={api.url}", f"two={other.url}") as running:
            first = running.curl(f"{running.url}/one/echo?n=1")
            second = running.curl(f"{running.url}/two/echo?n=2")
            nowhere = running.curl(
                "-o", "/dev/null", "-w", "%{http_code}", f"{running.url}/three/x"
            )
        assert json.loads(first.stdout)["target"] == "/echo?n=1"
        assert json.loads(second.stdout)["target"] == "/echo?n=2"
        assert nowhere.stdout == "404"
        assert [seen.target for seen in other.seen if seen.outcome == "ok"] == ["/echo?n=2"]
    finally:
        other.stop()


# -- only the run may use it; never an open proxy -------------------------------------------


def test_without_the_capability_nothing_is_forwarded(credentials: Path, api: DPoPResource) -> None:
    with proxy(credentials, api.url) as running:
        near_miss = running.capability[:-1] + ("A" if running.capability[-1] != "A" else "B")
        for path in ("/echo", f"/{near_miss}/echo", f"/{running.capability[:16]}/echo", "/"):
            status = running.curl("-o", "/dev/null", "-w", "%{http_code}", running.origin + path)
            assert status.stdout == "404", path
        # each line is written once its answer is out: the last one may trail curl's exit
        running.job.wait_for(re.compile(r"(?:\(refused\) 404[^\n]*\n[\s\S]*){4}"))
        log = running.job.stderr
    assert api.seen == []
    assert near_miss not in log
    assert running.capability[:16] not in log
    assert log.count("(refused) 404") == 4


def test_it_is_never_an_open_proxy(credentials: Path, api: DPoPResource) -> None:
    with proxy(credentials, api.url) as running:
        # curl speaking to it as a forward proxy: absolute-form targets, CONNECT
        forward = running.curl(
            "-o", "/dev/null", "-w", "%{http_code}", "-x", running.origin, f"{api.url}/echo"
        )
        tunnel = running.curl("-p", "-x", running.origin, f"{api.url}/echo")
        # the capability does not make an absolute-form target acceptable
        raw = _raw(running.origin, f"GET {api.url}/echo HTTP/1.1\r\nHost: x\r\n\r\n")
        # a Host aimed elsewhere (a DNS-rebinding page), with the capability
        rebound = running.curl(
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: attacker.example:80",
            f"{running.url}/echo",
        )
        trace = running.curl(
            "-o", "/dev/null", "-w", "%{http_code}", "-X", "TRACE", f"{running.url}/echo"
        )
        star = _raw(running.origin, "OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        authority = running.origin.removeprefix("http://")
        two_hosts = _raw(
            running.origin,
            f"GET /{running.capability}/echo HTTP/1.1\r\nHost: {authority}\r\n"
            "Host: attacker.example\r\n\r\n",
        )
    assert forward.stdout == "400"
    assert tunnel.returncode != 0  # curl: the CONNECT was refused (405)
    assert raw.startswith("HTTP/1.1 400")
    assert rebound.stdout == "421"
    assert trace.stdout == "405"
    assert star.startswith("HTTP/1.1 400")
    assert two_hosts.startswith("HTTP/1.1 421")
    assert api.seen == []


def test_a_target_that_is_no_url_path_gets_an_answer(credentials: Path, api: DPoPResource) -> None:
    """A fragment, a control or a non-ASCII character cannot be in a request target (RFC
    9112 §3.2): each is a 400, not a dropped connection."""
    with proxy(credentials, api.url) as running:
        authority = running.origin.removeprefix("http://")
        answers = [
            _raw(
                running.origin,
                f"GET /{running.capability}{path} HTTP/1.1\r\nHost: {authority}\r\n\r\n",
            )
            for path in ("/echo#top", "/\u00e9cho", "/echo\x01")
        ]
    log = running.job.stderr  # all of it: a line written after the last answer included
    assert [answer.split("\r\n", 1)[0] for answer in answers] == ["HTTP/1.1 400 Bad Request"] * 3
    assert "unexpected failure" not in log
    assert api.seen == []


def test_heads_are_bounded_before_the_capability_is_checked(
    credentials: Path, api: DPoPResource
) -> None:
    """Anyone on the machine can send a head, capability or not. Python's own bounds (100
    lines of 64 KiB) let 32 of them hold over 500 MiB in the proxy; its own bound is 64 KiB."""
    filler = b"X-Filler: " + b"a" * 65000 + b"\r\n"
    head = b"GET /no-capability/echo HTTP/1.1\r\n" + filler * 99 + b"\r\n"
    with proxy(credentials, api.url) as running:
        port = int(running.origin.rsplit(":", 1)[1])
        assert running.curl(f"{running.url}/echo").returncode == 0
        before = running.rss_mib()
        with PeakRss(running) as peak:
            floods = [
                Background(lambda: _send_head(port, head), name=f"flood-{n}") for n in range(32)
            ]
            for flood in floods:
                flood.result(timeout_s=60)
        after = running.curl(f"{running.url}/echo")
        # Each bound is answered; every byte sent is read, so no reset hides the answer.
        header = "X-Filler: " + "a" * (MAX_HEADER_BYTES - 12) + "\r\n"
        too_many = _raw(running.origin, f"GET /x HTTP/1.1\r\n{header}X")
        too_long = _raw(running.origin, "GET /" + "a" * (MAX_REQUEST_LINE_BYTES + 1 - 5))
    assert too_many.startswith("HTTP/1.1 431")
    assert too_long.startswith("HTTP/1.1 414")
    assert peak.mib - before < 32, f"the proxy grew from {before:.0f} to {peak.mib:.0f} MiB"
    assert json.loads(after.stdout)["target"] == "/echo"  # still serving the run
    assert [seen.target for seen in api.seen if seen.outcome == "ok"] == ["/echo", "/echo"]


def _send_head(port: int, head: bytes) -> None:
    """``head`` to the proxy, its answer awaited; the proxy may hang up on it midway."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection, suppress(OSError):
        connection.sendall(head)
        connection.recv(1024)


def _raw(origin: str, request: str) -> str:
    host, port = origin.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request.encode())
        return connection.recv(65536).decode("latin-1")


# -- redirects -----------------------------------------------------------------------------


def test_a_redirect_comes_back_rewritten_or_unchanged_and_is_never_followed(
    credentials: Path, api: DPoPResource
) -> None:
    elsewhere = DPoPResource().start()  # another origin: it must see nothing
    try:
        with proxy(credentials, api.url) as running:
            same = running.curl("-i", f"{running.url}/redirect?to=/echo%3Fafter%3D1")
            followed = running.curl("-L", f"{running.url}/redirect?to=/echo")
            away = running.curl("-i", f"{running.url}/redirect?to={elsewhere.url}/echo")
        assert f"Location: {running.url}/echo?after=1" in same.stdout
        assert json.loads(followed.stdout)["target"] == "/echo"  # curl -L stayed on the proxy
        assert f"Location: {elsewhere.url}/echo" in away.stdout  # passed back as it came
        assert elsewhere.seen == []  # never followed, least of all with the token
    finally:
        elsewhere.stop()


# -- bodies --------------------------------------------------------------------------------


def test_200_mb_each_way_streams_through_in_bounded_memory(
    credentials: Path, api: DPoPResource
) -> None:
    size = 200 * MB
    with proxy(credentials, api.url) as running:
        assert running.curl(f"{running.url}/echo").returncode == 0
        before = running.rss_mib()
        api.rotate_nonce()  # a nonce the proxy has not seen yet: it must learn it first
        with PeakRss(running) as peak:
            chunked_up = subprocess.run(
                [
                    "bash",
                    "-c",
                    f'head -c {size} /dev/zero | curl -sS -T - "$0/upload"',
                    running.url,
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            api.rotate_nonce()
            with httpx.Client(timeout=120) as client:  # with a Content-Length, streamed
                sized_up = client.put(
                    f"{running.url}/upload",
                    content=iter([bytes(MB)] * 200),
                    headers={"Content-Length": str(size)},
                )
            downloads = [
                running.curl(
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{size_download}",
                    f"{running.url}/download?n={size}{chunked}",
                )
                for chunked in ("", "&chunked=1")
            ]
    assert chunked_up.returncode == 0, chunked_up.stderr
    assert json.loads(chunked_up.stdout)["bytes"] == size
    assert sized_up.status_code == 200
    assert sized_up.json()["bytes"] == size
    assert [done.stdout for done in downloads] == [f"200 {size}"] * 2
    # Each upload: a HEAD that meets the new nonce, its retry, then the body, sent once.
    uploads = [(seen.method, seen.outcome) for seen in api.seen if seen.target == "/upload"]
    assert uploads == [("HEAD", "use_dpop_nonce"), ("HEAD", "ok"), ("PUT", "ok")] * 2
    assert peak.mib - before < 64, f"the proxy grew from {before:.0f} to {peak.mib:.0f} MiB"


# -- the token kept fresh --------------------------------------------------------------------


def test_the_token_is_refreshed_before_it_expires(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1, access_token_ttl_s=12, require_nonce=True)
    credentials = logged_in(server, tmp_path)
    first = values(credentials)
    with proxy(credentials, server.url) as running:
        early = running.curl(f"{running.url}/api/echo")
        # Half the token's life (6 s of 12) before its expiry, it is due: refreshed first.
        time.sleep(max(0.0, 7.0 - (time.time() - credentials.stat().st_mtime)))
        late = running.curl(f"{running.url}/api/echo")
    log = running.job.stderr  # all of it: the job has ended and its pipes are read
    assert json.loads(early.stdout)["scheme"] == "DPoP"
    assert json.loads(late.stdout)["scheme"] == "DPoP"
    assert "expires soon; refreshing it" in log  # before it expired, not after
    assert "has expired" not in log
    refreshed = values(credentials)  # written back where the credentials came from
    assert refreshed["SHARK_ACCESS_TOKEN"] != first["SHARK_ACCESS_TOKEN"]
    assert refreshed["SHARK_DPOP_JKT"] == first["SHARK_DPOP_JKT"]
    outcomes = [record.outcome for record in server.stats.requests]
    assert "invalid_token" not in outcomes  # the API never saw an expired token


# -- stopping, and what it prints -------------------------------------------------------------


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_it_cleanly_even_with_a_client_connected(
    credentials: Path, api: DPoPResource, stop: signal.Signals
) -> None:
    with proxy(credentials, api.url) as running:
        assert running.curl(f"{running.url}/echo").returncode == 0
        idle = socket.create_connection(("127.0.0.1", int(running.origin.rsplit(":", 1)[1])))
        started = time.monotonic()
        running.job.process.send_signal(stop)
        code = running.job.wait(timeout_s=15)
        took = time.monotonic() - started
        idle.close()
    assert code == 0
    assert took < 6
    assert "ci_shark: proxy: stopped" in running.job.stderr


def test_a_signal_goes_to_the_wrapped_command_whose_exit_status_is_the_proxys(
    credentials: Path, api: DPoPResource
) -> None:
    script = 'trap "echo got-term; exit 9" TERM; echo ready; while :; do sleep 0.1; done'
    args = [*proxy_args(credentials, api.url), "--", "bash", "-c", script]
    with CliJob(args, clean_env(), cwd=credentials.parent) as job:
        job.wait_for(re.compile(r"^ready$", re.M))
        job.process.send_signal(signal.SIGTERM)
        code = job.wait(timeout_s=15)
    assert code == 9, job.transcript()
    assert "got-term" in job.stdout
    assert "ci_shark: proxy: stopped" in job.stderr


def test_a_wrapped_command_gets_the_url_and_its_exit_status_is_the_proxys(
    credentials: Path, api: DPoPResource
) -> None:
    script = 'curl -fsS "$SHARK_PROXY_URL/echo?from=command" && exit 7'
    done = run_cli([*proxy_args(credentials, api.url), "--", "bash", "-c", script], clean_env())
    assert done.returncode == 7, done.log
    assert json.loads(done.stdout)["target"] == "/echo?from=command"
    assert "SHARK_PROXY_URL=" not in done.stdout  # stdout is the command's
    assert "ci_shark: proxy: GET /echo 200" in done.stderr
    missing = run_cli([*proxy_args(credentials, api.url), "--", "no-such-tool"], clean_env())
    assert missing.returncode == 2
    assert "cannot run 'no-such-tool'" in missing.stderr


def test_nothing_secret_is_printed(credentials: Path, api: DPoPResource, tmp_path: Path) -> None:
    script = (
        'printf %s "$SHARK_PROXY_URL" > url.txt; '
        'curl -sS -o /dev/null "$SHARK_PROXY_URL/echo?token=query-secret" '
        '-H "Cookie: c=cookie-secret" -H "Authorization: Bearer header-secret"; '
        'curl -sS -o /dev/null "${SHARK_PROXY_URL%/*}/wrong-capability/echo"'
    )
    done = run_cli(
        [*proxy_args(credentials, api.url), "--", "bash", "-c", script], clean_env(), cwd=tmp_path
    )
    assert done.returncode == 0, done.log
    capability = URL_LINE.search("SHARK_PROXY_URL=" + (tmp_path / "url.txt").read_text())
    assert capability is not None
    printed = done.stdout + done.stderr
    proofs = [value for seen in api.seen for name, value in seen.headers if name.lower() == "dpop"]
    assert len(proofs) == 2  # the nonce challenge, then the request
    for secret in [*secrets_in(credentials), capability[2], *proofs]:
        assert secret not in printed
    for planted in ("query-secret", "cookie-secret", "header-secret", "wrong-capability"):
        assert planted not in printed
    assert "ci_shark: proxy: GET /echo 200" in done.stderr


# -- GitHub: the later steps of the job ------------------------------------------------------


def test_export_leaves_it_running_for_the_later_steps_of_a_github_job(
    credentials: Path, api: DPoPResource, tmp_path: Path
) -> None:
    github_env = tmp_path / "github-env"
    github_env.write_text("")
    step = clean_env(
        {"GITHUB_ACTIONS": "true", "GITHUB_ENV": str(github_env), "RUNNER_TEMP": str(tmp_path)}
    )
    started = time.monotonic()
    done = run_cli([*proxy_args(credentials, api.url), "--export"], step)
    assert done.returncode == 0, done.log
    assert time.monotonic() - started < 30  # the step ends: GitHub reads GITHUB_ENV after it
    written = github_env.read_text()
    found = URL_LINE.search(written)
    assert found is not None, written
    pid = int(_said(r"^SHARK_PROXY_PID=(\d+)$", written))
    assert written == f"{found[0]}\nSHARK_PROXY_PID={pid}\n"
    # It prints the lines it wrote, after masking the capability on the same stream (the
    # runner reads stdout and stderr apart, so only one stream keeps that order).
    assert done.stdout == ""
    assert done.stderr.index(f"::add-mask::{found[2]}") < done.stderr.index(written)
    assert f"in the background (pid {pid})" in done.stderr
    log = Path(_said(r"its log: (\S+)", done.stderr))
    try:
        later = run_bash(
            'curl -fsS "$SHARK_PROXY_URL/echo?step=later"', {**step, "SHARK_PROXY_URL": found[1]}
        )
        assert later.returncode == 0, later.log
        assert json.loads(later.stdout)["target"] == "/echo?step=later"
        # The proxy writes its line once the answer is sent: curl may end before it does.
        line = "ci_shark: proxy: GET /echo 200"
        until(lambda: line in log.read_text(), f"{line!r} in the proxy's log")
        assert log.stat().st_mode & 0o777 == 0o600
    finally:
        os.kill(pid, signal.SIGTERM)
        assert _gone(pid, within_s=10), f"the background proxy (pid {pid}) did not stop"
    assert log.read_text().rstrip().endswith("ci_shark: proxy: stopped")


def test_a_background_proxy_that_refreshes_writes_no_token_for_its_ended_step(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    """After `--export` its step is over: the runner has read (and deleted) the step's
    files and reads none of the proxy's commands. A refresh then must not write the new
    tokens to the step's GITHUB_OUTPUT (a file nobody reads, made anew) nor mask them in
    the proxy's own log (which holds them in clear then)."""
    server = sandbox_factory(approve_after_s=1, access_token_ttl_s=12, require_nonce=True)
    credentials = logged_in(server, tmp_path)
    github_env, github_output = tmp_path / "set_env_1", tmp_path / "set_output_1"
    github_env.write_text("")
    github_output.write_text("")
    step = clean_env(
        {
            "GITHUB_ACTIONS": "true",
            "GITHUB_ENV": str(github_env),
            "GITHUB_OUTPUT": str(github_output),
            "RUNNER_TEMP": str(tmp_path),
        }
    )
    done = run_cli([*proxy_args(credentials, server.url), "--export"], step)
    assert done.returncode == 0, done.log
    pid = int(_said(r"^SHARK_PROXY_PID=(\d+)$", done.stderr))
    url = _said(r"^SHARK_PROXY_URL=(\S+)$", done.stderr)
    log = Path(_said(r"its log: (\S+)", done.stderr))
    github_env.unlink()  # the runner, as the next step starts
    github_output.unlink()
    try:
        # Half the token's life (6 s of 12) before its expiry, it is due: refreshed first.
        time.sleep(max(0.0, 7.0 - (time.time() - credentials.stat().st_mtime)))
        later = run_bash('curl -fsS "$SHARK_PROXY_URL/api/echo"', {**step, "SHARK_PROXY_URL": url})
        assert later.returncode == 0, later.log
    finally:
        os.kill(pid, signal.SIGTERM)
        assert _gone(pid, within_s=10), f"the background proxy (pid {pid}) did not stop"
    refreshed = secrets_in(credentials)
    assert "refreshed the access token" in log.read_text()
    assert not github_output.exists()
    assert not github_env.exists()
    for secret in refreshed:
        assert secret not in log.read_text()


def test_export_is_for_github_only(credentials: Path, api: DPoPResource) -> None:
    done = run_cli([*proxy_args(credentials, api.url), "--export"], clean_env())
    assert done.returncode == 2
    assert "GITHUB_ENV" in done.stderr
    assert "-- COMMAND" in done.stderr


def _said(pattern: str, log: str) -> str:
    found = re.search(pattern, log, re.MULTILINE)
    assert found is not None, f"{pattern!r} not in:\n{log}"
    return found[1]


def _gone(pid: int, *, within_s: float) -> bool:
    """Whether the process has ended (a zombie nobody reaps counts as ended)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        ps = ["ps", "-o", "stat=", "-p", str(pid)]
        state = subprocess.run(ps, capture_output=True, text=True, check=False).stdout.strip()
        if not state or state.startswith("Z"):
            return True
        time.sleep(0.05)
    return False


def test_what_it_cannot_do_is_said_before_it_listens(credentials: Path, tmp_path: Path) -> None:
    def proxy_with(*flags: str, env: dict[str, str] | None = None) -> str:
        done = run_cli(["proxy", *flags], env or clean_env(), cwd=tmp_path)
        assert done.returncode == 2, done.log
        assert "SHARK_PROXY_URL=" not in done.stdout
        return done.stderr

    creds = ["--credentials", str(credentials)]
    assert "not a loopback address" in proxy_with(
        *creds, "--upstream", "https://api.example.com", "--listen", "0.0.0.0:0"
    )
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert f"cannot listen on 127.0.0.1:{port}" in proxy_with(
            *creds, "--upstream", "https://api.example.com", "--listen", f"127.0.0.1:{port}"
        )
    assert "plain http://" in proxy_with(*creds, "--upstream", "http://api.example.com")
    assert "needs an upstream" in proxy_with(*creds)
    no_token = tmp_path / "no-token.json"
    no_token.write_text(json.dumps({**values(credentials), "SHARK_ACCESS_TOKEN": ""}))
    assert "no access token" in proxy_with(
        "--credentials", str(no_token), "--upstream", "https://api.example.com"
    )
