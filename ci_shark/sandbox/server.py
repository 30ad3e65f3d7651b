"""``SandboxServer``: the sandbox on a loopback port, started and stopped by its user."""

from __future__ import annotations

from ci_shark.sandbox.background import ServedInBackground
from ci_shark.sandbox.ci_issuer import FakeCiIssuer
from ci_shark.sandbox.ci_trust import trust_from_options
from ci_shark.sandbox.core import SandboxCore
from ci_shark.sandbox.httpd import LoopbackHTTPServer
from ci_shark.sandbox.options import SandboxOptions, option_keywords
from ci_shark.sandbox.records import GrantInfo, SandboxStats


class SandboxServer(ServedInBackground):
    """The loopback authorization server. Use as a context manager, or start()/stop().

    Takes the keywords of ``SandboxOptions`` (``SandboxServer(interval_s=2)``). With
    ``fake_ci_issuer=True`` it starts and stops a ``FakeCiIssuer`` with itself
    (``fake_ci_issuer``), and trusts it. A JWKS that cannot be read is a ValueError here.
    """

    what = "the sandbox"

    @option_keywords(SandboxOptions)
    def __init__(self, options: SandboxOptions) -> None:
        super().__init__()
        self.options = options
        self._fake_ci_issuer = (
            FakeCiIssuer(claims=dict(options.fake_ci_claims)) if options.fake_ci_issuer else None
        )
        self._core = SandboxCore(
            options,
            issuer=lambda: self.url,
            pause=self.stopping.wait,  # a stop wakes "slow" faults
            ci_trust=trust_from_options(options, self._fake_ci_issuer),
        )
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

    def _bind(self) -> LoopbackHTTPServer:
        host = self.options.host
        httpd = LoopbackHTTPServer((host, self.options.port), self._core, self.stopping)
        if self._fake_ci_issuer is not None:
            try:
                self._fake_ci_issuer.start()
            except OSError:
                httpd.server_close()
                raise
        self._url = f"http://{host}:{httpd.server_address[1]}"
        return httpd

    def stop(self) -> None:
        """Stop serving and close every socket, the fake CI issuer's too. Safe to call twice
        or before start()."""
        super().stop()
        if self._fake_ci_issuer is not None:
            self._fake_ci_issuer.stop()

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
