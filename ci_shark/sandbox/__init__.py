"""A loopback OAuth 2.0 authorization server: device flow (RFC 8628) with DPoP (RFC 9449),
and a protected resource to use its tokens on.

It backs ``python -m ci_shark demo`` and is the fake server of the integration tests and
benchmarks, so it is deliberately strict: it judges poll spacing by arrival time with zero
tolerance (as SharkAuth does), demands and rotates DPoP nonces, refuses replayed proofs,
revokes everything on a second redemption of a device code, and can inject transport faults.

It is a test oracle, so it shares no code with the client it judges: DPoP proofs are
verified by its own JOSE code (``jose.py``, ``proofs.py``), never by ``ci_shark/oauth/``.
A misreading of RFC 9449 written once and used on both sides would pass every test.

Runtime needs only the standard library and ``cryptography``: the package ships it.

Workload identity: trusting a CI issuer (``--trust-ci-issuer``, or ``--fake-ci-issuer``),
it authenticates the clients its rules name by the CI's OIDC token (RFC 7523
``client_assertion``), and its approval page shows what it verified apart from what the
client merely sent, and asks.

The package, outside in: ``server.py`` (``SandboxServer``: lifecycle, test controls;
``background.py``, the lifecycle it shares with the fake CI issuer),
``httpd.py`` (HTTP on a socket), ``core.py`` (request in, reply out, no sockets: routes and
faults), the endpoint groups ``authorization.py``, ``resource.py`` and ``pages.py``
(``endpoints.py`` is what they share; ``consent.py`` the approval page's HTML),
``faults.py``, ``state.py`` (grants, tokens, the request log), ``proofs.py`` + ``jose.py``
(DPoP), ``ci_trust.py`` + ``assertions.py`` + ``jwks.py`` (CI tokens as client assertions),
``ci_issuer.py`` (``FakeCiIssuer``), ``wire.py`` (paths, request, reply, errors),
``records.py`` (what tests read), ``options.py`` (every option once: the server's keywords
and the standalone flags), ``standalone.py`` (``main``). The names exported below are the
public API; the modules are not.

Standalone::

    python -I -m ci_shark.sandbox --port 8787 --approve-after 3

prints ``ci_shark sandbox listening on http://127.0.0.1:8787`` and serves until SIGINT/SIGTERM.
"""

from ci_shark.sandbox.assertions import JWT_BEARER
from ci_shark.sandbox.ci_issuer import FakeCiIssuer, ServedToken
from ci_shark.sandbox.ci_trust import ClaimRule
from ci_shark.sandbox.faults import FAULT_NAMES
from ci_shark.sandbox.options import SandboxOptions
from ci_shark.sandbox.records import GrantInfo, RequestRecord, SandboxStats
from ci_shark.sandbox.server import SandboxServer
from ci_shark.sandbox.standalone import main
from ci_shark.sandbox.wire import (
    BYTES_PATH,
    DEVICE_CODE_GRANT_TYPE,
    DEVICE_PATH,
    ECHO_PATH,
    INTROSPECT_PATH,
    JWKS_PATH,
    METADATA_PATHS,
    REDIRECT_PATH,
    REVOKE_PATH,
    TOKEN_PATH,
    USERINFO_PATH,
    VERIFICATION_PATH,
)

__all__ = [
    "BYTES_PATH",
    "DEVICE_CODE_GRANT_TYPE",
    "DEVICE_PATH",
    "ECHO_PATH",
    "FAULT_NAMES",
    "INTROSPECT_PATH",
    "JWKS_PATH",
    "JWT_BEARER",
    "METADATA_PATHS",
    "REDIRECT_PATH",
    "REVOKE_PATH",
    "TOKEN_PATH",
    "USERINFO_PATH",
    "VERIFICATION_PATH",
    "ClaimRule",
    "FakeCiIssuer",
    "GrantInfo",
    "RequestRecord",
    "SandboxOptions",
    "SandboxServer",
    "SandboxStats",
    "ServedToken",
    "main",
]
