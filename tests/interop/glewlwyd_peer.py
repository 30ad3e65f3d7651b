"""The second interop peer: Debian's glewlwyd (2.7.5 on bookworm), on loopback.

glewlwyd is a C OAuth 2 / OpenID Connect server with the device flow, DPoP, server DPoP
nonces and ``slow_down``. Nothing here touches the system service or /etc: each test
session gets

- a config file written into its own temp directory: ``bind_address`` 127.0.0.1, a free
  port, no TLS, no metrics listener, and ``external_url`` **ending in a slash**, as the
  Debian package's debconf default (``http://localhost:4593/``) does. glewlwyd builds every
  URL it advertises as ``external_url + "/" + api_prefix + "/" + plugin``, so the metadata
  names ``http://127.0.0.1:PORT//api/glwd/token``, and the DPoP ``htu`` it checks is that
  string exactly;
- a throwaway sqlite database built from the package's own schema and seed
  (``/usr/share/doc/glewlwyd/database/init.sqlite3.sql.gz``: the ``admin`` account, the
  database user and client backends, the ``openid`` scope), plus one seed change: the
  client backend may store the ``dpop_bound`` property (its shipped ``data-format`` would
  silently drop it);
- everything else through glewlwyd's admin REST API, signed in as the seeded ``admin``:
  the ``ci`` scope, the accounts, the public client, and three OpenID Connect plugin
  instances that differ only in their device-flow timing (see ``INSTANCES``).

Locally, a machine without the package skips these tests; under ``CI=true`` they fail.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from joserfc.jwk import ECKey
from peers import Peer, require_tool, stop
from support.loopback_http import free_port
from support.required import missing

SCHEMA = Path("/usr/share/doc/glewlwyd/database/init.sqlite3.sql.gz")
MODULE_ROOT = Path("/usr/lib/glewlwyd")
INSTALL_HINT = (
    'install Debian\'s package as .ci/run does: debconf glewlwyd/config_type "No configuration", '
    "then apt-get install glewlwyd dbconfig-no-thanks"
)
READY_TIMEOUT_S = 20
START_ATTEMPTS = 3
REQUEST_TIMEOUT_S = 10

# The seeded administrator of the package's schema (init.sqlite3.sql): a throwaway
# database on loopback, so its well-known password is no secret worth changing.
ADMIN = ("admin", "password")
API_PREFIX = "api"
CLIENT_ID = "ci-shark"
SCOPE = "openid ci"
# The client property that makes DPoP mandatory for a client (plugin parameter
# `oauth-dpop-dpop_bound_access_tokens-property`).
DPOP_BOUND_PROPERTY = "dpop_bound"
PASSWORDS = {
    "maintainer": "correct horse battery staple",
    "mallory": "mallory's own password",
}
SIGNING_KID = "interop-es256"
# How many successful proofs one server nonce serves before glewlwyd rotates it: small, so
# the suite sees rotations (a fresh `DPoP-Nonce` on a 200).
NONCE_USES = 3

# OpenID Connect plugin instances -> (device code lifetime s, polling interval s).
# `glwd`: the one a team would run. `glwd-strict`: a longer interval; glewlwyd's token
# endpoint accepts a device code from any instance and enforces its own interval, so a
# code from `glwd` polled here every second draws a real `slow_down`. `glwd-brief`: codes
# that expire in 3 s.
INSTANCES = {"glwd": (90, 1), "glwd-strict": (90, 3), "glwd-brief": (3, 1)}


@dataclasses.dataclass
class GlewlwydServer(Peer):
    """A running glewlwyd and what tests need to talk to it."""

    name: ClassVar[str] = "glewlwyd"
    base_url: str  # http://127.0.0.1:PORT, where it listens
    external_url: str  # what it was told it lives at (Debian style, with a slash)
    log_path: Path
    signing_key: ECKey  # the plugins' token signing key (public part checks tokens)
    metadata: dict[str, Any]  # glwd's OpenID configuration
    version: str

    @property
    def api_url(self) -> str:
        """Where the login, grant and admin APIs answer (the browser app's API base)."""
        return f"{self.base_url}/{API_PREFIX}"

    def issuer(self, instance: str = "glwd") -> str:
        """The `iss` each instance was given: a plain URL, as an admin would type it."""
        return f"{self.base_url}/{API_PREFIX}/{instance}"

    def advertised(self, instance: str = "glwd") -> str:
        """The base of every URL the instance advertises: note the `//`."""
        return f"{self.external_url}/{API_PREFIX}/{instance}"

    @contextlib.contextmanager
    def admin(self) -> Iterator[httpx.Client]:
        """A client signed in as glewlwyd's administrator (a session cookie)."""
        username, password = ADMIN
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as client:
            signed_in = client.post(
                f"{self.api_url}/auth/", json={"username": username, "password": password}
            )
            _expect(signed_in)
            yield client

    def add_user(self, username: str, password: str) -> None:
        with self.admin() as admin:
            _expect(
                admin.post(
                    f"{self.api_url}/user/",
                    json={
                        "username": username,
                        "password": password,
                        "name": username.title(),
                        "scope": ["openid", "ci"],
                        "enabled": True,
                    },
                )
            )

    def delete_user(self, username: str) -> None:
        """What an admin does to cut someone off: every grant of theirs goes with them."""
        with self.admin() as admin:
            _expect(admin.delete(f"{self.api_url}/user/{username}"))


def _expect(response: httpx.Response, status: int = 200) -> httpx.Response:
    if response.status_code != status:
        pytest.fail(
            f"glewlwyd {response.request.method} {response.request.url.path} answered "
            f"{response.status_code} (expected {status}): {response.text[:500]}",
            pytrace=False,
        )
    return response


def _config(port: int, external_url: str, database: Path) -> str:
    """A glewlwyd.conf (libconfig). Keys as in the package's glewlwyd.conf.sample."""
    return f"""\
port={port}
bind_address="127.0.0.1"
external_url="{external_url}"
login_url="login.html"
api_prefix="{API_PREFIX}"
log_mode="console"
log_level="INFO"
# plain http on loopback: a Secure cookie would never come back
cookie_secure=0
session_expiration=3600
session_key="GLEWLWYD2_SESSION_ID"
admin_session_authentication="cookie"
profile_session_authentication="cookie"
allow_multiple_user_per_session=true
login_api_enabled=true
admin_scope="g_admin"
profile_scope="g_profile"
user_module_path="{MODULE_ROOT}/user"
client_module_path="{MODULE_ROOT}/client"
user_auth_scheme_module_path="{MODULE_ROOT}/scheme"
plugin_module_path="{MODULE_ROOT}/plugin"
hash_algorithm="SHA512"
metrics_endpoint=false
database =
{{
  type = "sqlite3"
  path = "{database}"
}};
"""


def _create_database(path: Path) -> None:
    """The package's schema and seed, and the one seed change (see the module docstring)."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(gzip.decompress(SCHEMA.read_bytes()).decode("utf-8"))
        db.execute(
            "UPDATE g_client_module_instance SET gcmi_parameters = json_set(gcmi_parameters, "
            '?, json(\'{"multiple":false,"read":true,"write":true}\')) WHERE gcmi_name = ?',
            (f'$."data-format".{DPOP_BOUND_PROPERTY}', "database"),
        )
        db.commit()


def _plugin_parameters(
    issuer: str, jwks: dict[str, Any], *, expires_in_s: int, interval_s: int
) -> dict[str, Any]:
    return {
        "iss": issuer,
        "jwks-private": json.dumps(jwks),
        "default-kid": SIGNING_KID,
        "jwks-show": True,
        "access-token-duration": 300,
        "refresh-token-duration": 3600,
        "refresh-token-rolling": False,
        "code-duration": 600,
        "allow-non-oidc": False,
        "auth-type-code-enabled": False,
        "auth-type-token-enabled": False,
        "auth-type-id-token-enabled": True,
        "auth-type-password-enabled": False,
        "auth-type-client-enabled": False,
        "auth-type-device-enabled": True,
        "auth-type-refresh-enabled": True,
        "device-authorization-expiration": expires_in_s,
        "device-authorization-interval": interval_s,
        "oauth-dpop-allowed": True,
        "oauth-dpop-iat-duration": 60,
        "oauth-dpop-iat-gap-duration": 5,
        "oauth-dpop-dpop_bound_access_tokens-property": DPOP_BOUND_PROPERTY,
        "oauth-dpop-nonce-mandatory": True,
        "oauth-dpop-nonce-counter": NONCE_USES,
        "introspection-revocation-allowed": True,
        "introspection-revocation-allow-target-client": True,
        # Who approved, by name: glewlwyd's `sub` is a random per-user identifier.
        "claims": [
            {
                "name": "preferred_username",
                "user-property": "username",
                "type": "string",
                "mandatory": True,
                "on-demand": False,
            }
        ],
    }


def _provision(server: GlewlwydServer) -> None:
    private_jwk = server.signing_key.as_dict(private=True)
    jwks = {"keys": [{**private_jwk, "kid": SIGNING_KID, "alg": "ES256", "use": "sig"}]}
    with server.admin() as admin:
        api = server.api_url
        _expect(
            admin.post(
                f"{api}/scope/",
                json={
                    "name": "ci",
                    "display_name": "CI credentials",
                    "description": "A credential for one CI job",
                    "password_required": True,
                    "scheme": {},
                },
            )
        )
        for instance, (expires_in_s, interval_s) in INSTANCES.items():
            parameters = _plugin_parameters(
                server.issuer(instance), jwks, expires_in_s=expires_in_s, interval_s=interval_s
            )
            _expect(
                admin.post(
                    f"{api}/mod/plugin/",
                    json={
                        "module": "oidc",
                        "name": instance,
                        "display_name": f"OpenID Connect ({instance})",
                        "parameters": parameters,
                    },
                )
            )
        _expect(
            admin.post(
                f"{api}/client/",
                json={
                    "client_id": CLIENT_ID,
                    "name": "ci_shark interop",
                    "confidential": False,
                    "authorization_type": ["device_authorization", "refresh_token"],
                    "redirect_uri": [],
                    "scope": ["openid", "ci"],
                    DPOP_BOUND_PROPERTY: "1",
                    "enabled": True,
                },
            )
        )
        stored = _expect(admin.get(f"{api}/client/{CLIENT_ID}")).json()
        if stored.get(DPOP_BOUND_PROPERTY) != "1":
            pytest.fail(f"glewlwyd did not keep the client's {DPOP_BOUND_PROPERTY} property")
    for username, password in PASSWORDS.items():
        server.add_user(username, password)


def _installed_version(glewlwyd: str) -> str:
    done = subprocess.run(
        [glewlwyd, "--version"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return (done.stdout + done.stderr).strip().splitlines()[-1] if done.returncode == 0 else "?"


def _wait_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> bool:
    """True once /config answers; False when the process died (a port taken meanwhile)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{base_url}/config", timeout=1).status_code == 200:
                return True
        time.sleep(0.1)
    pytest.fail(
        f"glewlwyd not ready in {READY_TIMEOUT_S} s:\n"
        + log_path.read_text(errors="replace")[-3000:],
        pytrace=False,
    )


@contextlib.contextmanager
def run_glewlwyd(work_dir: Path) -> Iterator[GlewlwydServer]:
    """Start glewlwyd on a free loopback port, provision it; stop it on exit."""
    glewlwyd = require_tool("glewlwyd", INSTALL_HINT)
    if not SCHEMA.is_file():
        missing(f"{SCHEMA} not found; {INSTALL_HINT}")
    version = _installed_version(glewlwyd)
    log_path = work_dir / "glewlwyd.log"
    for attempt in range(START_ATTEMPTS):
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        database = work_dir / f"glewlwyd-{attempt}.db"
        _create_database(database)
        config = work_dir / f"glewlwyd-{attempt}.conf"
        config.write_text(_config(port, f"{base_url}/", database))
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [glewlwyd, f"--config-file={config}"],
                cwd=work_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            if not _wait_ready(process, base_url, log_path):
                continue  # it exited: most likely the port was taken between probe and bind
            server = GlewlwydServer(
                base_url=base_url,
                external_url=f"{base_url}/",
                log_path=log_path,
                signing_key=ECKey.generate_key("P-256"),
                metadata={},
                version=version,
            )
            _provision(server)
            discovery = f"{server.issuer()}/.well-known/openid-configuration"
            server.metadata = _expect(httpx.get(discovery, timeout=REQUEST_TIMEOUT_S)).json()
            yield server
            return
        finally:
            stop(process)
    pytest.fail(
        f"glewlwyd did not start in {START_ATTEMPTS} attempts:\n"
        + log_path.read_text(errors="replace")[-3000:],
        pytrace=False,
    )
