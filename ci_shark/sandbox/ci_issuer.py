"""A fake CI OIDC issuer on loopback, shaped like GitHub Actions' token service.

It stands in for ``ACTIONS_ID_TOKEN_REQUEST_URL`` / ``ACTIONS_ID_TOKEN_REQUEST_TOKEN`` in
tests, under nektos act and in ``demo``. What it serves (GET only):

- the request URL, ``…/idtoken?api-version=2.0``: with ``Authorization: bearer <request
  token>`` it answers ``{"value": "<jwt>"}``, a fresh token (new ``jti``) for the
  ``&audience=AUD`` the client appends (GitHub's default when absent:
  ``https://github.com/<owner>``); a missing or wrong bearer is a 403, as on GitHub, and an
  ``api-version`` other than ``2.0`` (say, ``?audience=`` appended with a second ``?``) a 400;
- ``/.well-known/jwks``: its public key (RS256 by default, or ES256);
- ``/.well-known/openid-configuration``: ``issuer`` and ``jwks_uri``.

Tokens carry GitHub's claims (``repository``, ``ref``, ``sha``, ``workflow_ref``,
``run_id``, ``actor``, ``event_name``…) with ``sub`` built as GitHub's default template
does (``repo:OWNER/REPO:ref:REF``, ``…:environment:ENV``, ``…:pull_request``), ``iss`` its
own URL, five minutes of life. ``mint()`` signs one directly, any claim overridden or
removed, for tests of what a server must refuse.

For tests and demos only: it binds loopback, and anyone holding its request token gets
tokens that only a server told to trust this process accepts.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ci_shark.sandbox.background import ServedInBackground
from ci_shark.sandbox.jose import b64url_encode, es256_public_jwk, sign_jwt

TOKEN_LIFETIME_S: Final = 300
JWKS_PATH: Final = "/.well-known/jwks"
CONFIGURATION_PATH: Final = "/.well-known/openid-configuration"
API_VERSION: Final = "2.0"
_SHA: Final = "8f2d1c7e5b4a39608172635445362718a9b0c1d2"
DEFAULT_CLAIMS: Final[Mapping[str, str]] = {
    "repository": "octo/app",
    "repository_id": "123456789",
    "repository_owner_id": "4242",
    "repository_visibility": "private",
    "ref": "refs/heads/main",
    "ref_type": "branch",
    "ref_protected": "true",
    "sha": _SHA,
    "workflow": "Deploy",
    "workflow_sha": _SHA,
    "job_workflow_sha": _SHA,
    "run_id": "9876543210",
    "run_number": "17",
    "run_attempt": "1",
    "actor": "octocat",
    "actor_id": "583231",
    "event_name": "push",
    "runner_environment": "github-hosted",
}


def github_subject(claims: Mapping[str, Any]) -> str:
    """``sub`` as GitHub's default template builds it."""
    repository = claims.get("repository")
    if claims.get("environment"):
        return f"repo:{repository}:environment:{claims['environment']}"
    if claims.get("event_name") in ("pull_request", "pull_request_target"):
        return f"repo:{repository}:pull_request"
    return f"repo:{repository}:ref:{claims.get('ref')}"


def github_claims(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The run's claims: the defaults, ``overrides`` on top (None removes a claim), and what
    GitHub derives from the repository and ref filled in unless given."""
    claims: dict[str, Any] = dict(DEFAULT_CLAIMS)
    claims.update(overrides)
    repository = str(claims.get("repository", ""))
    workflow_ref = f"{repository}/.github/workflows/deploy.yml@{claims.get('ref')}"
    derived = {
        "repository_owner": repository.partition("/")[0],
        "workflow_ref": workflow_ref,
        "job_workflow_ref": workflow_ref,
        "sub": github_subject(claims),
    }
    for name, value in derived.items():
        claims.setdefault(name, value)
    return {name: value for name, value in claims.items() if value is not None}


@dataclass(frozen=True)
class ServedToken:
    """One token the request URL handed out (tests count them: one per client request)."""

    audience: Any
    jti: str


class FakeCiIssuer(ServedInBackground):
    """The fake issuer. Use as a context manager, or start()/stop().

    ``claims`` override the defaults for every token it serves (see ``github_claims``);
    ``clock`` gives epoch seconds for ``iat``/``nbf``/``exp``.
    """

    what = "the fake CI issuer"

    def __init__(
        self,
        *,
        claims: Mapping[str, Any] | None = None,
        alg: Literal["RS256", "ES256"] = "RS256",
        lifetime_s: int = TOKEN_LIFETIME_S,
        clock: Callable[[], float] = time.time,
        port: int = 0,
    ) -> None:
        super().__init__()
        self._overrides = dict(claims or {})
        self.claims = github_claims(self._overrides)
        self.request_token = secrets.token_urlsafe(32)
        self._key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            if alg == "RS256"
            else ec.generate_private_key(ec.SECP256R1())
        )
        self._public_jwk = _public_jwk(self._key)
        self.kid = str(self._public_jwk["kid"])
        self._lifetime_s = lifetime_s
        self._clock = clock
        self._port = port
        self._request_path = (
            f"/_apis/distributedtask/hubs/Actions/plans/{uuid.uuid4()}/jobs/{uuid.uuid4()}/idtoken"
        )
        self._lock = threading.Lock()
        self._served: list[ServedToken] = []
        self._canned: deque[tuple[int, str]] = deque()

    # ----------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """The issuer (``iss``), e.g. ``http://127.0.0.1:40123``."""
        if self._httpd is None:
            raise RuntimeError("the fake CI issuer is not started")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def jwks_url(self) -> str:
        return self.url + JWKS_PATH

    @property
    def request_url(self) -> str:
        """What GitHub puts in ACTIONS_ID_TOKEN_REQUEST_URL (append ``&audience=…``)."""
        return f"{self.url}{self._request_path}?api-version={API_VERSION}"

    def environment(self) -> dict[str, str]:
        """The two variables a GitHub job with ``id-token: write`` has."""
        return {
            "ACTIONS_ID_TOKEN_REQUEST_URL": self.request_url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": self.request_token,
        }

    def _bind(self) -> _IssuerHTTPServer:
        return _IssuerHTTPServer(("127.0.0.1", self._port), self)

    # ----------------------------------------------------------------- tokens

    def jwks_document(self) -> bytes:
        return json.dumps({"keys": [self._public_jwk]}).encode("utf-8")

    def mint(self, audience: str | list[str] | None = None, **claims: Any) -> str:
        """A signed token as the request URL would serve it for ``audience``; ``claims``
        override any claim (``exp=…``, ``iss=…``, ``repository=…``), None removes one."""
        now = int(self._clock())
        standard: dict[str, Any] = {
            "jti": str(uuid.uuid4()),
            "iss": self.url,
            "aud": audience or f"https://github.com/{self.claims.get('repository_owner')}",
            "iat": now,
            "nbf": now,
            "exp": now + self._lifetime_s,
        }
        # Re-derived with the overrides: repository="evil/app" changes sub and workflow_ref too.
        merged = {**standard, **github_claims({**self._overrides, **claims})}
        for name, value in claims.items():
            if value is None:
                merged.pop(name, None)
        return sign_jwt(self._key, self.kid, merged)

    @property
    def served(self) -> tuple[ServedToken, ...]:
        """Every token the request URL handed out, oldest first."""
        with self._lock:
            return tuple(self._served)

    def answer_next(self, status: int, body: str) -> None:
        """The next token request gets this answer instead (a CI token service's errors)."""
        with self._lock:
            self._canned.append((status, body))

    def _serve_token(self, audience: str | None) -> tuple[int, dict[str, Any] | str]:
        with self._lock:
            canned = self._canned.popleft() if self._canned else None
        if canned is not None:
            return canned
        jti = str(uuid.uuid4())
        token = self.mint(audience, jti=jti)
        with self._lock:
            self._served.append(ServedToken(audience, jti))
        return 200, {"value": token}

    def _answer(self, path: str, query: str, authorization: str | None) -> tuple[int, Any]:
        if path == JWKS_PATH:
            return 200, json.loads(self.jwks_document())
        if path == CONFIGURATION_PATH:
            return 200, {"issuer": self.url, "jwks_uri": self.jwks_url}
        if path != self._request_path:
            return 404, {"message": "Not Found"}
        scheme, _, credential = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
            credential.strip().encode(), self.request_token.encode()
        ):
            return 403, {"message": "The bearer token is missing or not valid for this job"}
        values = urllib.parse.parse_qs(query)
        if values.get("api-version") != [API_VERSION]:
            return 400, {"message": f"api-version must be {API_VERSION}"}
        audiences = values.get("audience", [])
        return self._serve_token(audiences[0] if audiences else None)


def _public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> dict[str, str]:
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
        e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
        jwk = {"kty": "RSA", "n": b64url_encode(n), "e": b64url_encode(e), "alg": "RS256"}
        return {**jwk, "kid": f"rsa-{secrets.token_hex(8)}", "use": "sig"}
    return es256_public_jwk(key)


class _IssuerHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], issuer: FakeCiIssuer) -> None:
        self.issuer = issuer
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server_version = "ci_shark-fake-ci-issuer"
    sys_version = ""
    timeout = 10.0
    server: _IssuerHTTPServer

    def do_GET(self) -> None:
        issuer = self.server.issuer
        split = urllib.parse.urlsplit(self.path)
        status, payload = issuer._answer(split.path, split.query, self.headers["Authorization"])
        body = payload if isinstance(payload, str) else json.dumps(payload)
        encoded = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(encoded)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(encoded)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a request line holds nothing secret, but tests read stderr."""
