"""``python -I -m ci_shark.sandbox``: serve on a loopback port until SIGINT/SIGTERM.

Its URL goes to stdout (one line, for scripts to read); one line per request to stderr.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from ci_shark.sandbox.options import keywords_from_argv
from ci_shark.sandbox.server import SandboxServer


def _log(line: str) -> None:
    print(f"ci_shark sandbox: {line}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    keywords = keywords_from_argv(argv)
    try:
        server = SandboxServer(**keywords, request_log=_log)
    except ValueError as exc:
        print(f"ci_shark sandbox: {exc}", file=sys.stderr)
        return 2
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        server.start()
    except OSError as exc:  # typically: the port is taken
        where = f"{server.options.host}:{server.options.port}"
        print(f"ci_shark sandbox: cannot listen on {where}: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"ci_shark sandbox listening on {server.url}", flush=True)
        if server.options.fake_ci_issuer:
            # KEY=VALUE lines, ready for a job's environment (a fake's credential: it only
            # mints tokens that this sandbox, and nothing else, trusts).
            issuer = server.fake_ci_issuer
            print(f"ci_shark fake CI issuer at {issuer.url}, trusted by this sandbox", flush=True)
            for name, value in issuer.environment().items():
                print(f"{name}={value}", flush=True)
        # A bounded wait in a loop keeps the main thread responsive to signals.
        while not stop_requested.wait(0.5):
            pass
    finally:
        server.stop()
    return 0
