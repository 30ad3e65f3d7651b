"""``SandboxServer``: the sandbox on a loopback port, started and stopped by its user."""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Final

from ci_shark.sandbox.ci_issuer import FakeCiIssuer
from ci_shark.sandbox.ci_trust import trust_from_options
from ci_shark.sandbox.core import SandboxCore
from ci_shark.sandbox.httpd import LoopbackHTTPServer
from ci_shark.sandbox.options import SandboxOptions, option_keywords
from ci_shark.sandbox.records import GrantInfo, SandboxStats

STOP_JOIN_TIMEOUT_S: Final = 5.0


class SandboxServer:
    """The loopback authorization server. Use as a context manager, or start()/stop().

    Takes the keywords of ``SandboxOptions`` (``SandboxServer(interval_s=2)``). With
    ``fake_ci_issuer=True`` it starts and stops a ``FakeCiIssuer`` with itself
    (``fake_ci_issuer``), and trusts it. A JWKS that cannot be read is a ValueError here.
    """

    @option_keywords(SandboxOptions)
    def __init__(self, options: SandboxOptions) -> None:
        self.options = options
        self._stopping = threading.Event()
        self._fake_ci_issuer = (
            FakeCiIssuer(claims=dict(options.fake_ci_claims)) if options.fake_ci_issuer else None
        )
        self._core = SandboxCore(
            options,
            issuer=lambda: self.url,
            pause=self._stopping.wait,
            ci_trust=trust_from_options(options, self._fake_ci_issuer),
        )
        self._httpd: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """The issuer, e.g. ``http://127.0.0.1:8787`` (no trailing slash)."""
        if self._url is None:
            raise RuntimeError("the sandbox is not started")
        return self._url

    @property
    def fake_ci_issuer(self) -> FakeCiIssuer:
        """The fake CI issuer this sandbox started and trusts (``fake_ci_issuer=True``)."""
        if self._fake_ci_issuer is None:
            raise RuntimeError("this sandbox runs no fake CI issuer (fake_ci_issuer=True)")
        return self._fake_ci_issuer

    def start(self) -> SandboxServer:
        if self._httpd is not None:
            raise RuntimeError("the sandbox is already started")
        host = self.options.host
        httpd = LoopbackHTTPServer((host, self.options.port), self._core, self._stopping)
        if self._fake_ci_issuer is not None:
            try:
                self._fake_ci_issuer.start()
            except OSError:
                httpd.server_close()
                raise
        self._httpd = httpd
        port = httpd.server_address[1]
        self._url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"ci_shark-sandbox-{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every socket. Safe to call twice or before start()."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or self._stopping.is_set():
            return
        self._stopping.set()  # wakes "slow" faults
        httpd.shutdown()  # returns within one poll_interval once serve_forever runs
        httpd.shut_connections()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=STOP_JOIN_TIMEOUT_S)
        if self._fake_ci_issuer is not None:
            self._fake_ci_issuer.stop()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- controls for tests

    def approve(self, user_code: str | None = None) -> None:
        """Approve a code (None: the most recent pending one) as the approver would."""
        self._core.state.decide(user_code, "approved")

    def deny(self, user_code: str | None = None) -> None:
        self._core.state.decide(user_code, "denied")

    def rotate_nonce(self) -> str:
        """Force a new DPoP nonce now (it also rotates by itself every nonce_ttl_s)."""
        return self._core.proofs.rotate_nonce()

    @property
    def nonce(self) -> str:
        """The DPoP nonce the server currently demands."""
        return self._core.proofs.nonce

    @property
    def stats(self) -> SandboxStats:
        return self._core.state.stats()

    @property
    def grants(self) -> tuple[GrantInfo, ...]:
        """Every device authorization request so far, oldest first."""
        return self._core.state.grant_infos()
