"""How `ci-shark proxy` runs, and how it stops.

Its rules:

- It listens on a loopback address only (``--listen``, default ``127.0.0.1:0``: a free
  port); its URL, ``SHARK_PROXY_URL``, is the base URL without the trailing slash, so
  ``"$SHARK_PROXY_URL/path"`` works. The capability in it is masked as a secret first.
- Three forms:
  - in the foreground (for ``&``, or a process manager): one line on stdout,
    ``SHARK_PROXY_URL=...``, then it serves until SIGTERM or SIGINT, and exits 0;
  - ``-- COMMAND ARGS...``: the command runs with ``SHARK_PROXY_URL`` in its environment
    and the proxy up; when it ends the proxy stops, and the command's exit status is the
    proxy's. SIGTERM/SIGINT go on to the command (SIGINT not when a terminal already sent
    it to the whole process group), which gets ``CHILD_GRACE_S`` before it is killed;
  - ``--export`` (GitHub): ``SHARK_PROXY_URL`` and ``SHARK_PROXY_PID`` are written to
    ``GITHUB_ENV`` and printed (on stderr, the stream of the capability's mask), and the
    proxy goes on in the background (a new session, its log in a 0600 file of the job's
    folder) until the job ends and the runner stops it, or until SIGTERM
    (``kill "$SHARK_PROXY_PID"``). The step ends at once: GitHub reads ``GITHUB_ENV``
    only after it. The background proxy writes nothing for that step any more
    (:meth:`Platform.leave_the_step`): a refresh masks nothing (the mask would show the
    tokens in its log) and writes no step output.
- Stopping is bounded (``server.py``): no new connection, the busy ones a few seconds to
  finish, then the connection pool to the upstream is closed.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from ci_shark import cancel
from ci_shark.errors import Cancelled, ConfigError, ExitCode
from ci_shark.issued import Issued
from ci_shark.later_settings import ServerSettings
from ci_shark.oauth.http import HttpClient
from ci_shark.platforms.base import Platform
from ci_shark.proxy.forward import Forwarder
from ci_shark.proxy.server import ProxyServer
from ci_shark.proxy.upstreams import Routes, Upstream
from ci_shark.secret import Secret
from ci_shark.token_auth import LiveCredentials

CAPABILITY_BYTES = 24  # 32 url-safe characters
READ_TIMEOUT_S = 60.0  # between two reads from the upstream; max_time bounds the exchange
CHILD_GRACE_S = 10.0
URL_VARIABLE = "SHARK_PROXY_URL"
PID_VARIABLE = "SHARK_PROXY_PID"  # for a step that stops it before the job ends


@dataclass(frozen=True)
class ProxyOptions:
    upstreams: tuple[Upstream, ...]
    listen: str = "127.0.0.1:0"
    export: bool = False
    command: tuple[str, ...] = ()
    max_time_s: float = 3600.0


def run(options: ProxyOptions, issued: Issued, settings: ServerSettings, platform: Platform) -> int:
    """Serve ``options`` with ``issued``'s token in the form they ask for; the exit code."""
    host, port, family = parse_listen(options.listen)
    if options.export:
        _check_export(options, platform)
    live = LiveCredentials.of_command(issued, settings, platform)
    live.check()  # no token or no key: said now, not to every client
    capability = Secret(secrets.token_urlsafe(CAPABILITY_BYTES))
    platform.mask([capability])  # before anything can print it
    log = _LineLog(platform)
    try:
        server = ProxyServer(host, port, capability.reveal(), log=log.line, family=family)
    except OSError as failure:
        raise ConfigError(
            f"cannot listen on {options.listen}: {failure.strerror or failure}",
            hint="choose another port, or 0 for a free one (`--listen 127.0.0.1:0`)",
        ) from None
    url = server.base_url.rstrip("/")
    try:
        with HttpClient(
            ca_bundle=settings.ca_bundle,
            timeout=httpx.Timeout(READ_TIMEOUT_S),
            max_body_bytes=None,  # bodies stream through, raw
            keep_cookies=False,  # one pool for every client: no session between them
        ) as http:
            routes = Routes(options.upstreams, server.base_url)
            forwarder = Forwarder(http, live, routes, max_time_s=options.max_time_s, log=log.line)
            _say_where(platform, server, options.upstreams)
            if options.export:
                return _in_the_background(server, forwarder, url, platform)
            with _serving(server, forwarder, platform):
                if options.command:
                    return _around(options.command, url)
                print(f"{URL_VARIABLE}={url}", flush=True)
                _until_stopped()
                return ExitCode.OK
    finally:
        server.server_close()


def parse_listen(text: str) -> tuple[str, int, socket.AddressFamily]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) on a loopback address; ``localhost`` is 127.0.0.1
    (a name is not looked up: it could resolve elsewhere)."""
    host, sep, port = text.strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ipaddress.ip_address("127.0.0.1" if host == "localhost" else host)
        number = int(port)
    except ValueError:
        address, number = None, -1
    if not sep or address is None or not 0 <= number <= 65535:
        raise ConfigError(
            f"`--listen` {text!r} is not HOST:PORT with an IP address or localhost",
            hint="e.g. `--listen 127.0.0.1:0` (0: a free port)",
        )
    if not address.is_loopback:
        raise ConfigError(
            f"`--listen` {text!r} is not a loopback address: the proxy hands out the login's "
            "token to whoever reaches it",
            hint="listen on 127.0.0.1 (or ::1); clients on other machines must not use it",
        )
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return str(address), number, family


def _check_export(options: ProxyOptions, platform: Platform) -> None:
    if options.command:
        raise ConfigError(
            "`--export` and a command are two ways to run the proxy: choose one",
            hint="`--export` for the later steps of a GitHub job, `-- COMMAND` for one command",
        )
    if platform.name != "github" or not platform.env.get("GITHUB_ENV"):
        raise ConfigError(
            "`--export` writes GITHUB_ENV, which only a GitHub Actions step has",
            hint="run a command with it (`ci-shark proxy --upstream URL -- COMMAND`), or "
            "start it in the background and read SHARK_PROXY_URL from its first line",
        )
    if not hasattr(os, "fork"):
        raise ConfigError(
            "`--export` starts the proxy in the background, which needs fork (Linux, macOS)",
            hint="on Windows run the command with it: `ci-shark proxy --upstream URL -- COMMAND`",
        )


def _say_where(platform: Platform, server: ProxyServer, upstreams: Sequence[Upstream]) -> None:
    routes = ", ".join(f"${URL_VARIABLE}{up.prefix}/ to {up.origin}" for up in upstreams)
    platform.log(
        f"ci_shark: proxy: listening on {server.authority}:{server.port} (its URL, with a "
        f"capability, is ${URL_VARIABLE}); forwarding {routes}"
    )


@contextmanager
def _serving(server: ProxyServer, forwarder: Forwarder, platform: Platform) -> Iterator[None]:
    """The proxy serves for the block; then it stops (bounded: ``server.py``) and says so."""
    server.serve(forwarder)
    try:
        yield
    finally:
        server.stop()
        platform.log("ci_shark: proxy: stopped")


def _until_stopped() -> None:
    """Until SIGTERM or SIGINT (one that arrived while a refresh wrote the credentials, in
    a shielded block, is found here too)."""
    idle = threading.Event()
    try:
        while not idle.wait(0.5):
            if cancel.deferred() is not None:
                return
    except Cancelled:
        return


def _around(command: Sequence[str], url: str) -> int:
    """Run ``command`` with the proxy up; its exit status."""
    try:
        child = subprocess.Popen(list(command), env={**os.environ, URL_VARIABLE: url})  # noqa: S603 (the command the user asked for)
    except OSError as failure:
        raise ConfigError(
            f"cannot run {command[0]!r}: {failure.strerror}",
            hint="give the command after `--`, as you would type it",
        ) from None
    try:
        return _status(child.wait())
    except Cancelled as cancelled:
        signum = signal.SIGINT if cancelled.exit_code == ExitCode.SIGINT else signal.SIGTERM
        if signum != signal.SIGINT or not sys.stdin.isatty():  # a terminal sent it to both
            child.send_signal(signum)
        try:
            return _status(child.wait(CHILD_GRACE_S))
        except subprocess.TimeoutExpired:
            child.kill()
            return _status(child.wait())


def _status(returncode: int) -> int:
    """A shell's exit status: a command killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _in_the_background(
    server: ProxyServer, forwarder: Forwarder, url: str, platform: Platform
) -> int:
    """Fork: the child serves in a session of its own, the parent writes GITHUB_ENV and
    returns. No thread runs yet (the child would inherit a lock held by none)."""
    descriptor, log_path = tempfile.mkstemp(
        prefix="ci-shark-proxy-", suffix=".log", dir=platform.state_directory()
    )
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the proxy, for the rest of the job
        os.setsid()
        platform.leave_the_step()  # no mask or step file that a refresh would write
        with open(os.devnull, "rb") as nothing:
            os.dup2(nothing.fileno(), 0)
        os.dup2(descriptor, 1)
        os.dup2(descriptor, 2)
        os.close(descriptor)
        with _serving(server, forwarder, platform):
            _until_stopped()
        return ExitCode.OK
    os.close(descriptor)
    lines = f"{URL_VARIABLE}={url}\n{PID_VARIABLE}={pid}\n"  # ours, one line each
    with open(platform.env["GITHUB_ENV"], "a", encoding="utf-8", newline="\n") as github_env:
        github_env.write(lines)
    # On stderr, after the mask on that same stream: the runner reads stdout and stderr on
    # readers of their own, so a capability on stdout could be shown before it is masked.
    print(lines, end="", file=sys.stderr, flush=True)
    platform.log(
        f"ci_shark: proxy: runs in the background (pid {pid}) until the job ends; "
        f"later steps have {URL_VARIABLE}; its log: {Path(log_path)}"
    )
    return ExitCode.OK


class _LineLog:
    """Whole lines from every connection's thread, one at a time."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            self._platform.log(text)
