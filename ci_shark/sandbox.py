"""A loopback OAuth 2.0 authorization server: device flow (RFC 8628) with DPoP (RFC 9449).

It backs ``python -m ci_shark demo`` and is the fake server of the integration tests and
benchmarks, so it is deliberately strict: it judges poll spacing by arrival time with zero
tolerance (as SharkAuth does), demands and rotates DPoP nonces, refuses replayed proofs,
revokes everything on a second redemption of a device code, and can inject transport faults.

Runtime needs only the standard library and ``cryptography``: the package ships it.

Standalone::

    python -m ci_shark.sandbox --port 8787 --approve-after 3

prints ``ci_shark sandbox listening on http://127.0.0.1:8787`` and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import hashlib
import html
import ipaddress
import itertools
import json
import re
import secrets
import signal
import socket
import struct
import sys
import threading
import time
import traceback
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

__all__ = [
    "DEVICE_CODE_GRANT_TYPE",
    "FAULT_NAMES",
    "GrantInfo",
    "RequestRecord",
    "SandboxServer",
    "SandboxStats",
    "main",
]

DEVICE_CODE_GRANT_TYPE: Final = "urn:ietf:params:oauth:grant-type:device_code"

METADATA_PATHS: Final = (
    "/.well-known/oauth-authorization-server",
    "/.well-known/openid-configuration",
)
DEVICE_PATH: Final = "/oauth/device"
VERIFICATION_PATH: Final = "/device"
TOKEN_PATH: Final = "/oauth/token"  # noqa: S105 (a path, not a secret)
REVOKE_PATH: Final = "/oauth/revoke"
INTROSPECT_PATH: Final = "/oauth/introspect"
USERINFO_PATH: Final = "/userinfo"
JWKS_PATH: Final = "/oauth/jwks"

#: Fault entries accepted in ``token_faults`` / ``device_faults`` (plus ``slow:<seconds>``).
FAULT_NAMES: Final = frozenset(
    {"500", "503", "oversized", "html", "429", "reset", "truncated", "ok"}
)

MAX_BODY_BYTES: Final = 64 * 1024
MAX_HEADER_BYTES: Final = 16 * 1024
MAX_PROOF_CHARS: Final = 8 * 1024
MAX_SLOW_FAULT_S: Final = 60.0
# Idle keep-alive connections and stalled senders give up after this long.
SOCKET_TIMEOUT_S: Final = 15.0
STOP_JOIN_TIMEOUT_S: Final = 5.0
DPOP_IAT_LEEWAY_S: Final = 60
# A replay must reuse the proof's iat, which we accept for at most 2 * leeway after first sight.
JTI_MEMORY_S: Final = 2 * DPOP_IAT_LEEWAY_S + 10
ACCESS_TOKEN_TTL_S: Final = 3600
ID_TOKEN_TTL_S: Final = 600
SLOW_DOWN_STEP_S: Final = 5
OVERSIZED_FAULT_BYTES: Final = 2 * 1024 * 1024
# RFC 8628 §6.1: consonants only, no vowels (no words), no easily confused letters.
USER_CODE_ALPHABET: Final = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH: Final = 8

_POLL_OUTCOMES: Final = frozenset(
    {"authorization_pending", "slow_down", "access_denied", "expired_token", "granted"}
)
_PRIVATE_JWK_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_B64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]*")
_NO_STORE: Final = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))

_Status = Literal["pending", "approved", "denied"]


# --------------------------------------------------------------------------- public records


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request as the server saw it."""

    method: str
    path: str  # without the query string
    arrived_at: float  # the server's clock when the request line was read
    connection_id: int  # same number = same TCP connection (keep-alive reuse)
    outcome: str  # e.g. "authorization_pending", "use_dpop_nonce", "granted", "fault:500"
    detail: str = (
        ""  # extra context: the reason of an error, the real outcome behind "fault:slow:…"
    )


@dataclass(frozen=True)
class SandboxStats:
    """A consistent snapshot of everything the server has answered so far."""

    requests: tuple[RequestRecord, ...] = ()

    @property
    def polls(self) -> int:
        """Token requests judged as device-code polls (faults and DPoP rejections excluded)."""
        return sum(1 for r in self.requests if r.path == TOKEN_PATH and r.outcome in _POLL_OUTCOMES)

    @property
    def slow_downs(self) -> int:
        return sum(1 for r in self.requests if r.outcome == "slow_down")

    @property
    def connections(self) -> int:
        return len({r.connection_id for r in self.requests})

    @property
    def nonce_challenges(self) -> int:
        return sum(1 for r in self.requests if r.outcome == "use_dpop_nonce")

    def outcomes(self, path: str | None = None) -> list[str]:
        """Outcomes in arrival order, optionally only for one path."""
        return [r.outcome for r in self.requests if path is None or r.path == path]


@dataclass(frozen=True)
class GrantInfo:
    """A snapshot of one device authorization request, as the client sent it."""

    user_code: str
    client_id: str
    scope: str
    resources: tuple[str, ...]
    extra_params: Mapping[str, str]
    status: str  # "pending" | "approved" | "denied" | "expired" | "redeemed"
    interval_s: int  # the current interval: grows by 5 with every slow_down
    jkt: str | None  # the DPoP key thumbprint the polls are bound to


# --------------------------------------------------------------------------- JOSE helpers


class _ProofError(ValueError):
    """A DPoP proof that is malformed or does not verify."""


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    # JOSE uses unpadded base64url; anything else (padding, '+', '/') is not a valid JWS.
    if not _B64URL_RE.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json_object(data: bytes) -> dict[str, Any]:
    """Parse a JSON object, refusing duplicate members (a classic JOSE ambiguity)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ValueError(f"duplicate member {key!r}")
            result[key] = value
        return result

    value = json.loads(data, object_pairs_hook=no_duplicates)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _jwk_thumbprint(x: bytes, y: bytes) -> str:
    """RFC 7638 thumbprint of an EC P-256 key: required members, sorted, no whitespace."""
    canonical = json.dumps(
        {"crv": "P-256", "kty": "EC", "x": _b64url_encode(x), "y": _b64url_encode(y)},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64url_encode(hashlib.sha256(canonical.encode("ascii")).digest())


def _public_key_from_jwk(jwk: object) -> tuple[ec.EllipticCurvePublicKey, str]:
    if not isinstance(jwk, dict):
        raise _ProofError("the jwk header must be a JSON object")
    if _PRIVATE_JWK_MEMBERS & jwk.keys():
        raise _ProofError("the jwk header must not contain private key members")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise _ProofError("the jwk header must be an EC P-256 key")
    coordinates: list[bytes] = []
    for name in ("x", "y"):
        member = jwk.get(name)
        if not isinstance(member, str):
            raise _ProofError(f"the jwk header lacks {name}")
        try:
            decoded = _b64url_decode(member)
        except ValueError as exc:
            raise _ProofError(f"the jwk {name} is not base64url") from exc
        if len(decoded) != 32:
            raise _ProofError(f"the jwk {name} must be 32 bytes")
        coordinates.append(decoded)
    x, y = coordinates
    numbers = ec.EllipticCurvePublicNumbers(
        int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
    )
    try:
        key = numbers.public_key()
    except ValueError as exc:  # the point is not on the curve
        raise _ProofError("the jwk is not a valid P-256 point") from exc
    return key, _jwk_thumbprint(x, y)


def _es256_verify(key: ec.EllipticCurvePublicKey, signing_input: bytes, signature: bytes) -> bool:
    # JWS carries ES256 signatures as raw r || s (RFC 7518 §3.4); cryptography wants DER.
    if len(signature) != 64:
        return False
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _es256_sign(key: ec.EllipticCurvePrivateKey, signing_input: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _sign_jwt(key: ec.EllipticCurvePrivateKey, kid: str, claims: Mapping[str, Any]) -> str:
    header = {"alg": "ES256", "typ": "JWT", "kid": kid}
    segments = [
        _b64url_encode(json.dumps(part, separators=(",", ":")).encode("utf-8"))
        for part in (header, claims)
    ]
    signing_input = ".".join(segments).encode("ascii")
    return f"{segments[0]}.{segments[1]}.{_b64url_encode(_es256_sign(key, signing_input))}"


def _normalise_htu(value: str) -> str | None:
    """Syntax-based normalisation (RFC 3986 §6.2.2): case of scheme/host, default port.

    Returns None for anything with a query, fragment or user info: htu must carry none.
    """
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    if "?" in value or "#" in value or parts.username is not None or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    default_port = {"http": 80, "https": 443}.get(scheme)
    host = parts.hostname
    netloc = host if port in (None, default_port) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"


@dataclass(frozen=True)
class _Proof:
    jkt: str
    jti: str
    nonce: str | None
    ath: str | None


def _parse_dpop_proof(proof: str, *, method: str, url: str, now: float) -> _Proof:
    """Check everything about a proof that needs no server state; raise _ProofError."""
    if len(proof) > MAX_PROOF_CHARS:
        raise _ProofError("the DPoP proof is too large")
    segments = proof.split(".")
    if len(segments) != 3:
        raise _ProofError("the DPoP proof is not a compact JWS")
    try:
        header = _json_object(_b64url_decode(segments[0]))
        claims = _json_object(_b64url_decode(segments[1]))
        signature = _b64url_decode(segments[2])
    except ValueError as exc:
        raise _ProofError(f"the DPoP proof is malformed: {exc}") from exc
    if header.get("typ") != "dpop+jwt":
        raise _ProofError("the DPoP proof typ must be dpop+jwt")
    if header.get("alg") != "ES256":
        raise _ProofError("the DPoP proof alg must be ES256")
    if "crit" in header:
        raise _ProofError("the DPoP proof has critical headers this server does not understand")
    key, jkt = _public_key_from_jwk(header.get("jwk"))
    if not _es256_verify(key, f"{segments[0]}.{segments[1]}".encode("ascii"), signature):
        raise _ProofError("the DPoP proof signature does not verify")
    if claims.get("htm") != method:
        raise _ProofError("the DPoP proof htm does not match the request method")
    htu = claims.get("htu")
    if not isinstance(htu, str) or _normalise_htu(htu) != _normalise_htu(url):
        raise _ProofError("the DPoP proof htu does not match the request URL")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, (int, float)):
        raise _ProofError("the DPoP proof lacks a numeric iat")
    if abs(iat - now) > DPOP_IAT_LEEWAY_S:
        raise _ProofError("the DPoP proof iat is too far from the server time")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 256:
        raise _ProofError("the DPoP proof lacks a jti")
    nonce = claims.get("nonce")
    ath = claims.get("ath")
    if nonce is not None and not isinstance(nonce, str):
        raise _ProofError("the DPoP proof nonce must be a string")
    if ath is not None and not isinstance(ath, str):
        raise _ProofError("the DPoP proof ath must be a string")
    return _Proof(jkt=jkt, jti=jti, nonce=nonce, ath=ath)


def _access_token_hash(token: str) -> str:
    return _b64url_encode(hashlib.sha256(token.encode("ascii", "replace")).digest())


# --------------------------------------------------------------------------- requests, replies


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: tuple[tuple[str, str], ...]
    body: bytes
    arrived_at: float
    connection_id: int
    # A request answered after a "slow" fault is processed but not judged as a poll.
    counts_as_poll: bool = True

    def header_values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    outcome: str = ""
    detail: str = ""
    # "reset": abort the TCP connection; "truncate": promise more body than sent, then close.
    action: Literal["send", "reset", "truncate"] = "send"
    declared_length: int | None = None
    close: bool = False


def _json_reply(
    status: int, payload: Mapping[str, Any], outcome: str, headers: Iterable[tuple[str, str]] = ()
) -> _Reply:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return _Reply(status, body, "application/json", [*_NO_STORE, *headers], outcome)


def _text_reply(status: int, text: str, outcome: str) -> _Reply:
    return _Reply(status, text.encode("utf-8"), "text/plain; charset=utf-8", outcome=outcome)


def _not_found() -> _Reply:
    # What Go's net/http (SharkAuth) answers for an unknown route: plain text, not JSON.
    return _text_reply(404, "404 page not found\n", "not_found")


class _OAuthError(Exception):
    """An RFC 6749 §5.2 style error; the dispatcher turns it into a JSON reply."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status
        self.headers = tuple(headers)

    def reply(self) -> _Reply:
        payload = {"error": self.error, "error_description": self.description}
        reply = _json_reply(self.status, payload, self.error, self.headers)
        reply.detail = self.description
        return reply


def _resource_error(error: str, description: str, *, scheme: str = "DPoP") -> _OAuthError:
    """A resource-server error: 401 with the error in WWW-Authenticate (RFC 6750, RFC 9449)."""
    challenge = f'{scheme} error="{error}", error_description="{description}"'
    if scheme == "DPoP":
        challenge += ', algs="ES256"'
    return _OAuthError(error, description, status=401, headers=[("WWW-Authenticate", challenge)])


@dataclass(frozen=True)
class _Form:
    pairs: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        for key, value in self.pairs:
            if key == name:
                return value
        return None

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]


def _parse_form(req: _Request) -> _Form:
    content_type = (req.header("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise _OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    try:
        # Blank values count as omitted (RFC 6749 §3.1), so keep_blank_values stays False.
        pairs = urllib.parse.parse_qsl(req.body.decode("utf-8"), max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _OAuthError("invalid_request", "the form body is malformed") from exc
    seen: set[str] = set()
    for name, _ in pairs:
        # RFC 6749 §3.1: parameters must not repeat; RFC 8707 makes resource the exception.
        if name in seen and name != "resource":
            raise _OAuthError("invalid_request", f"parameter {name} is repeated")
        seen.add(name)
    return _Form(tuple(pairs))


def _client_id(req: _Request, form: _Form) -> str:
    """client_id from the form or HTTP Basic (client_secret_basic); secrets are not checked."""
    basic_id: str | None = None
    authorization = req.header("Authorization") or ""
    if authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            raise _OAuthError(
                "invalid_client", "malformed HTTP Basic credentials", status=401
            ) from exc
        user, separator, _ = decoded.partition(":")
        if not separator:
            raise _OAuthError("invalid_client", "malformed HTTP Basic credentials", status=401)
        basic_id = urllib.parse.unquote_plus(user)
    form_id = form.get("client_id")
    if basic_id and form_id and basic_id != form_id:
        raise _OAuthError("invalid_request", "client_id differs between Basic auth and the body")
    client_id = basic_id or form_id
    if not client_id:
        raise _OAuthError("invalid_client", "client_id is required", status=401)
    return client_id


def _parse_fault(entry: str) -> str:
    if entry in FAULT_NAMES:
        return entry
    if entry.startswith("slow:"):
        try:
            seconds = float(entry.removeprefix("slow:"))
        except ValueError:
            seconds = -1.0
        if 0 <= seconds <= MAX_SLOW_FAULT_S:
            return entry
    allowed = ", ".join(sorted(FAULT_NAMES))
    raise ValueError(f"unknown fault {entry!r}: use one of {allowed} or slow:<0-60 seconds>")


def _fault_reply(fault: str) -> _Reply:
    """The reply of every fault except "slow" (which answers normally, late)."""
    if fault == "500":
        payload = {"error": "server_error", "error_description": "sandbox fault: internal error"}
        return _json_reply(500, payload, "")
    if fault == "503":
        return _text_reply(503, "Service Unavailable\n", "")
    if fault == "oversized":
        # JSON-looking, so a client without a size cap would happily parse all of it.
        prefix = b'{"error":"server_error","padding":"'
        suffix = b'"}'
        filler = b"x" * (OVERSIZED_FAULT_BYTES - len(prefix) - len(suffix))
        return _Reply(502, prefix + filler + suffix, "application/json")
    if fault == "html":
        page = (
            "<html><head><title>502 Bad Gateway</title></head><body>"
            "<center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>"
            "</body></html>\n"
        )
        return _Reply(502, page.encode("utf-8"), "text/html")
    if fault == "429":
        reply = _text_reply(429, "Too Many Requests: slow down\n", "")
        reply.headers.append(("Retry-After", "1"))
        return reply
    if fault == "reset":
        return _Reply(0, action="reset")
    if fault == "truncated":
        body = b'{"access_token":"'
        return _Reply(200, body, "application/json", action="truncate", declared_length=512)
    raise AssertionError(f"unhandled fault {fault}")  # _parse_fault admits nothing else


# --------------------------------------------------------------------------- server state


@dataclass
class _Grant:
    device_code: str
    user_code: str
    client_id: str
    scope: str
    resources: tuple[str, ...]
    extra_params: dict[str, str]
    issued_at: float
    expires_at: float
    interval_s: int
    status: _Status = "pending"
    redeemed: bool = False
    last_poll_at: float | None = None
    jkt: str | None = None


@dataclass
class _Token:
    kind: Literal["access", "refresh"]
    client_id: str
    scope: str
    issued_at: int  # wall clock (epoch seconds): these appear in introspection
    expires_at: int | None
    jkt: str | None
    family: str  # the device code it descends from: revoking a family kills all of it
    active: bool = True


def _normalise_user_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def _display_user_code(code: str) -> str:
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 4 and address.is_loopback


class SandboxServer:
    """The loopback authorization server. Use as a context manager, or start()/stop()."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        interval_s: int = 1,
        expires_in_s: int = 600,
        approve_after_s: float | None = None,
        approve_on_open: bool = True,
        decision: str = "approve",
        require_dpop: bool = True,
        require_nonce: bool = True,
        strict_interval: bool = True,
        send_interval: bool = True,
        metadata: bool = True,
        device_flow: str = "enabled",
        token_faults: Sequence[str] = (),
        device_faults: Sequence[str] = (),
        issue_refresh_token: bool = True,
        subject: str = "octocat",
        clock: Callable[[], float] = time.monotonic,
        nonce_ttl_s: float = 30.0,
    ) -> None:
        # No authentication protects approval: never listen beyond loopback.
        if not _is_loopback(host):
            raise ValueError(f"the sandbox binds loopback only, not {host!r}")
        if decision not in ("approve", "deny"):
            raise ValueError(f"decision must be 'approve' or 'deny', not {decision!r}")
        if device_flow not in ("enabled", "missing", "disabled"):
            raise ValueError(f"device_flow must be enabled, missing or disabled: {device_flow!r}")
        if interval_s < 0 or expires_in_s <= 0 or nonce_ttl_s <= 0:
            raise ValueError("interval_s must be >= 0, expires_in_s and nonce_ttl_s > 0")
        self._host = host
        self._port = port
        self._interval_s = interval_s
        self._expires_in_s = expires_in_s
        self._approve_after_s = approve_after_s
        self._approve_on_open = approve_on_open
        self._decision: _Status = "approved" if decision == "approve" else "denied"
        self._require_dpop = require_dpop
        self._require_nonce = require_nonce
        self._strict_interval = strict_interval
        self._send_interval = send_interval
        self._metadata = metadata
        self._device_flow = device_flow
        self._issue_refresh_token = issue_refresh_token
        self._subject = subject
        self._clock = clock
        self._nonce_ttl_s = nonce_ttl_s

        self._lock = threading.Lock()
        self._token_faults = deque(_parse_fault(f) for f in token_faults)
        self._device_faults = deque(_parse_fault(f) for f in device_faults)
        self._grants: dict[str, _Grant] = {}  # by device code
        self._grants_by_user_code: dict[str, _Grant] = {}  # by normalised user code
        self._tokens: dict[str, _Token] = {}
        self._seen_jtis: dict[str, float] = {}  # jti -> wall time first seen, insertion-ordered
        self._records: list[RequestRecord] = []
        self._nonce = secrets.token_urlsafe(16)
        self._nonce_issued_at = clock()
        self._signing_key = ec.generate_private_key(ec.SECP256R1())
        public = self._signing_key.public_key().public_numbers()
        self._signing_kid = _jwk_thumbprint(
            public.x.to_bytes(32, "big"), public.y.to_bytes(32, "big")
        )

        self._connection_ids = itertools.count(1)
        self._open_connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._url: str | None = None
        self._routes: dict[str, dict[str, Callable[[_Request], _Reply]]] = {
            **{path: {"GET": self._metadata_document} for path in METADATA_PATHS},
            DEVICE_PATH: {"POST": self._device_authorization},
            VERIFICATION_PATH: {"GET": self._verification_page, "POST": self._verification_action},
            TOKEN_PATH: {"POST": self._token},
            REVOKE_PATH: {"POST": self._revoke},
            INTROSPECT_PATH: {"POST": self._introspect},
            USERINFO_PATH: {"GET": self._userinfo, "POST": self._userinfo},
            JWKS_PATH: {"GET": self._jwks},
        }

    # ----------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """The issuer, e.g. ``http://127.0.0.1:8787`` (no trailing slash)."""
        if self._url is None:
            raise RuntimeError("the sandbox is not started")
        return self._url

    def start(self) -> SandboxServer:
        if self._httpd is not None:
            raise RuntimeError("the sandbox is already started")
        httpd = _HTTPServer((self._host, self._port), self)
        self._httpd = httpd
        self._url = f"http://{self._host}:{httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"ci_shark-sandbox-{httpd.server_address[1]}",
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
        with self._lock:
            connections = list(self._open_connections)
        for connection in connections:
            # Unblocks handler threads waiting on idle keep-alive connections.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=STOP_JOIN_TIMEOUT_S)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ----------------------------------------------------------------- public controls

    def approve(self, user_code: str | None = None) -> None:
        """Approve a code (None: the most recent pending one) as the approver would."""
        self._decide(user_code, "approved")

    def deny(self, user_code: str | None = None) -> None:
        self._decide(user_code, "denied")

    def rotate_nonce(self) -> str:
        """Force a new DPoP nonce now (it also rotates by itself every nonce_ttl_s)."""
        with self._lock:
            self._nonce = secrets.token_urlsafe(16)
            self._nonce_issued_at = self._clock()
            return self._nonce

    @property
    def nonce(self) -> str:
        """The DPoP nonce the server currently demands."""
        with self._lock:
            return self._current_nonce_locked()

    @property
    def stats(self) -> SandboxStats:
        with self._lock:
            return SandboxStats(tuple(self._records))

    @property
    def grants(self) -> tuple[GrantInfo, ...]:
        """Every device authorization request so far, oldest first."""
        now = self._clock()
        with self._lock:
            return tuple(
                GrantInfo(
                    user_code=_display_user_code(grant.user_code),
                    client_id=grant.client_id,
                    scope=grant.scope,
                    resources=grant.resources,
                    extra_params=dict(grant.extra_params),
                    status=self._status_locked(grant, now),
                    interval_s=grant.interval_s,
                    jkt=grant.jkt,
                )
                for grant in self._grants.values()
            )

    def _decide(self, user_code: str | None, decision: _Status) -> None:
        now = self._clock()
        with self._lock:
            if user_code is None:
                pending = [
                    g for g in self._grants.values() if self._status_locked(g, now) == "pending"
                ]
                if not pending:
                    raise LookupError("no pending device code to decide")
                grant = pending[-1]
            else:
                found = self._grants_by_user_code.get(_normalise_user_code(user_code))
                if found is None:
                    raise LookupError(f"unknown user code {user_code!r}")
                grant = found
            status = self._status_locked(grant, now)
            if status == decision:
                return
            if status != "pending":
                raise ValueError(f"code {_display_user_code(grant.user_code)} is already {status}")
            grant.status = decision

    # ----------------------------------------------------------------- state helpers

    def _current_nonce_locked(self) -> str:
        if self._clock() - self._nonce_issued_at >= self._nonce_ttl_s:
            self._nonce = secrets.token_urlsafe(16)
            self._nonce_issued_at = self._clock()
        return self._nonce

    def _response_nonce(self) -> str | None:
        """The DPoP-Nonce header value for every response, when nonces are in force."""
        if not self._require_nonce:
            return None
        with self._lock:
            return self._current_nonce_locked()

    def _status_locked(self, grant: _Grant, now: float) -> str:
        self._settle_locked(grant, now)
        if grant.redeemed:
            return "redeemed"
        if now >= grant.expires_at:
            return "expired"
        return grant.status

    def _settle_locked(self, grant: _Grant, now: float) -> None:
        """Apply the automatic decision once approve_after_s has passed (lazily, on access)."""
        after = self._approve_after_s
        if (
            grant.status == "pending"
            and after is not None
            and grant.issued_at + after <= now < grant.expires_at
        ):
            grant.status = self._decision

    def _take_fault(self, path: str) -> str | None:
        queue = {TOKEN_PATH: self._token_faults, DEVICE_PATH: self._device_faults}.get(path)
        with self._lock:
            return queue.popleft() if queue else None

    def _register_connection(self, connection: socket.socket) -> int:
        with self._lock:
            self._open_connections.add(connection)
            return next(self._connection_ids)

    def _unregister_connection(self, connection: socket.socket) -> None:
        with self._lock:
            self._open_connections.discard(connection)

    def _record(self, req: _Request, reply: _Reply) -> None:
        record = RequestRecord(
            req.method, req.path, req.arrived_at, req.connection_id, reply.outcome, reply.detail
        )
        with self._lock:
            self._records.append(record)

    # ----------------------------------------------------------------- dispatch

    def _handle(self, req: _Request) -> _Reply:
        route = self._route(req.path)
        if route is None:
            return _not_found()
        endpoint = route.get(req.method)
        if endpoint is None:
            reply = _text_reply(405, "405 method not allowed\n", "method_not_allowed")
            reply.headers.append(("Allow", ", ".join(sorted(route))))
            return reply
        fault = self._take_fault(req.path) if req.method == "POST" else None
        if fault is None or fault == "ok":
            return self._call(endpoint, req)
        if fault.startswith("slow:"):
            self._stopping.wait(float(fault.removeprefix("slow:")))
            reply = self._call(endpoint, dataclasses.replace(req, counts_as_poll=False))
            reply.detail = reply.outcome
        else:
            reply = _fault_reply(fault)
        reply.outcome = f"fault:{fault}"
        return reply

    def _route(self, path: str) -> dict[str, Callable[[_Request], _Reply]] | None:
        if path in METADATA_PATHS and not self._metadata:
            return None
        if path == DEVICE_PATH and self._device_flow == "missing":
            return None
        return self._routes.get(path)

    @staticmethod
    def _call(endpoint: Callable[[_Request], _Reply], req: _Request) -> _Reply:
        try:
            return endpoint(req)
        except _OAuthError as error:
            return error.reply()

    # ----------------------------------------------------------------- DPoP

    def _verify_proof(self, req: _Request, *, required: bool, resource: bool) -> _Proof | None:
        """Validate the request's DPoP proof; None when absent and not required.

        At the token endpoint failures are 400 JSON errors; at a resource they are 401 with
        WWW-Authenticate (RFC 9449 §7.1, §9).
        """

        def fail(error: str, description: str) -> _OAuthError:
            if resource:
                return _resource_error(error, description)
            return _OAuthError(error, description)

        values = req.header_values("DPoP")
        if not values:
            if required:
                raise fail("invalid_dpop_proof", "a DPoP proof is required")
            return None
        if len(values) > 1:
            raise fail("invalid_dpop_proof", "exactly one DPoP header is allowed")
        try:
            proof = _parse_dpop_proof(
                values[0], method=req.method, url=self.url + req.path, now=time.time()
            )
        except _ProofError as exc:
            raise fail("invalid_dpop_proof", str(exc)) from exc
        with self._lock:
            self._forget_old_jtis_locked()
            # Every signed proof burns its jti, even one refused for its nonce: the retry
            # after use_dpop_nonce must be a fresh proof.
            if proof.jti in self._seen_jtis:
                raise fail("invalid_dpop_proof", "the DPoP proof jti was already used")
            self._seen_jtis[proof.jti] = time.time()
            if self._require_nonce and proof.nonce != self._current_nonce_locked():
                description = (
                    "the DPoP proof must carry the nonce from the DPoP-Nonce header"
                    if proof.nonce is None
                    else "the DPoP proof nonce is stale: use the newest DPoP-Nonce"
                )
                raise fail("use_dpop_nonce", description)
        return proof

    def _forget_old_jtis_locked(self) -> None:
        horizon = time.time() - JTI_MEMORY_S
        while self._seen_jtis:
            oldest = next(iter(self._seen_jtis))
            if self._seen_jtis[oldest] >= horizon:
                break
            del self._seen_jtis[oldest]

    # ----------------------------------------------------------------- endpoints

    def _metadata_document(self, req: _Request) -> _Reply:
        url = self.url
        document: dict[str, Any] = {"issuer": url}
        if self._device_flow != "missing":
            document["device_authorization_endpoint"] = url + DEVICE_PATH
        document |= {
            "token_endpoint": url + TOKEN_PATH,
            "revocation_endpoint": url + REVOKE_PATH,
            "introspection_endpoint": url + INTROSPECT_PATH,
            "userinfo_endpoint": url + USERINFO_PATH,
            "jwks_uri": url + JWKS_PATH,
            "grant_types_supported": (
                [DEVICE_CODE_GRANT_TYPE, "refresh_token"]
                if self._device_flow != "missing"
                else ["refresh_token"]
            ),
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": [
                "none",
                "client_secret_basic",
                "client_secret_post",
            ],
            "dpop_signing_alg_values_supported": ["ES256"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "subject_types_supported": ["public"],
        }
        return _json_reply(200, document, "metadata")

    def _jwks(self, req: _Request) -> _Reply:
        public = self._signing_key.public_key().public_numbers()
        jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": _b64url_encode(public.x.to_bytes(32, "big")),
            "y": _b64url_encode(public.y.to_bytes(32, "big")),
            "kid": self._signing_kid,
            "alg": "ES256",
            "use": "sig",
        }
        return _json_reply(200, {"keys": [jwk]}, "jwks")

    def _device_authorization(self, req: _Request) -> _Reply:
        if self._device_flow == "disabled":
            # SharkAuth at its current release: the route exists, the grant is switched off.
            raise _OAuthError(
                "unsupported_grant_type",
                "the device authorization grant is disabled on this server",
                status=501,
            )
        form = _parse_form(req)
        client_id = _client_id(req, form)
        resources = tuple(form.all("resource"))
        for resource in resources:
            # RFC 8707 §2: an absolute URI without a fragment.
            split = urllib.parse.urlsplit(resource)
            if not split.scheme or not split.netloc or "#" in resource:
                raise _OAuthError("invalid_target", "resource must be an absolute URI")
        known = {"client_id", "client_secret", "scope", "resource"}
        extra = {name: value for name, value in form.pairs if name not in known}
        now = req.arrived_at
        with self._lock:
            device_code = secrets.token_urlsafe(32)
            user_code = self._new_user_code_locked()
            grant = _Grant(
                device_code=device_code,
                user_code=user_code,
                client_id=client_id,
                scope=form.get("scope") or "",
                resources=resources,
                extra_params=extra,
                issued_at=now,
                expires_at=now + self._expires_in_s,
                interval_s=self._interval_s,
            )
            self._grants[device_code] = grant
            self._grants_by_user_code[user_code] = grant
        display = _display_user_code(user_code)
        verification_uri = self.url + VERIFICATION_PATH
        payload: dict[str, Any] = {
            "device_code": device_code,
            "user_code": display,
            "verification_uri": verification_uri,
            "verification_uri_complete": f"{verification_uri}?user_code={display}",
            "expires_in": self._expires_in_s,
        }
        if self._send_interval:
            payload["interval"] = self._interval_s
        return _json_reply(200, payload, "issued")

    def _new_user_code_locked(self) -> str:
        while True:
            code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
            if code not in self._grants_by_user_code:
                return code

    def _token(self, req: _Request) -> _Reply:
        form = _parse_form(req)
        client_id = _client_id(req, form)
        grant_type = form.get("grant_type")
        if grant_type is None:
            raise _OAuthError("invalid_request", "grant_type is required")
        if grant_type == DEVICE_CODE_GRANT_TYPE:
            if self._device_flow != "enabled":
                raise _OAuthError("unsupported_grant_type", "the device code grant is not enabled")
            return self._redeem_device_code(req, form, client_id)
        if grant_type == "refresh_token":
            return self._refresh(req, form, client_id)
        raise _OAuthError("unsupported_grant_type", "this grant_type is not supported")

    def _redeem_device_code(self, req: _Request, form: _Form, client_id: str) -> _Reply:
        proof = self._verify_proof(req, required=self._require_dpop, resource=False)
        jkt = proof.jkt if proof else None
        device_code = form.get("device_code")
        if device_code is None:
            raise _OAuthError("invalid_request", "device_code is required")
        now = req.arrived_at
        with self._lock:
            grant = self._grants.get(device_code)
            if grant is None or grant.client_id != client_id:
                raise _OAuthError("invalid_grant", "unknown device_code for this client")
            if grant.redeemed:
                # As for a replayed authorization code (RFC 6749 §4.1.2): revoke what it gave.
                self._revoke_family_locked(grant.device_code)
                raise _OAuthError(
                    "invalid_grant",
                    "the device_code was already redeemed; its tokens are now revoked",
                )
            if grant.jkt is not None and jkt != grant.jkt:
                raise _OAuthError(
                    "invalid_dpop_proof", "every poll of a device_code must use the same DPoP key"
                )
            grant.jkt = grant.jkt or jkt
            if now >= grant.expires_at:
                raise _OAuthError("expired_token", "the device_code has expired")
            if req.counts_as_poll:
                self._judge_interval_locked(grant, now)
            self._settle_locked(grant, now)
            if grant.status == "pending":
                raise _OAuthError("authorization_pending", "the user has not yet decided")
            if grant.status == "denied":
                raise _OAuthError("access_denied", "the user denied the request")
            grant.redeemed = True
            payload = self._issue_tokens_locked(client_id, grant.scope, jkt, grant.device_code)
        return _json_reply(200, payload, "granted")

    def _judge_interval_locked(self, grant: _Grant, arrived_at: float) -> None:
        """SharkAuth's LastPolledAt rule: arrival minus previous arrival, zero tolerance."""
        previous = grant.last_poll_at
        grant.last_poll_at = arrived_at
        if (
            self._strict_interval
            and previous is not None
            and arrived_at - previous < grant.interval_s
        ):
            grant.interval_s += SLOW_DOWN_STEP_S  # RFC 8628 §3.5: and it stays added
            raise _OAuthError(
                "slow_down", f"polling too fast: wait {grant.interval_s} s between polls"
            )

    def _refresh(self, req: _Request, form: _Form, client_id: str) -> _Reply:
        proof = self._verify_proof(req, required=self._require_dpop, resource=False)
        jkt = proof.jkt if proof else None
        value = form.get("refresh_token")
        if value is None:
            raise _OAuthError("invalid_request", "refresh_token is required")
        with self._lock:
            token = self._tokens.get(value)
            if (
                token is None
                or token.kind != "refresh"
                or not token.active
                or token.client_id != client_id
            ):
                raise _OAuthError("invalid_grant", "the refresh token is invalid")
            if token.jkt is not None and jkt != token.jkt:
                # RFC 9449 §5: a public client's refresh token is bound to its DPoP key.
                raise _OAuthError(
                    "invalid_dpop_proof", "the refresh token is bound to another DPoP key"
                )
            scope = form.get("scope") or token.scope
            if not set(scope.split()) <= set(token.scope.split()):
                raise _OAuthError("invalid_scope", "the scope exceeds the original grant")
            token.active = False  # rotation: each refresh token works once
            payload = self._issue_tokens_locked(client_id, scope, jkt, token.family)
        return _json_reply(200, payload, "refreshed")

    def _issue_tokens_locked(
        self, client_id: str, scope: str, jkt: str | None, family: str
    ) -> dict[str, Any]:
        now = int(time.time())
        access = secrets.token_urlsafe(32)
        self._tokens[access] = _Token(
            "access", client_id, scope, now, now + ACCESS_TOKEN_TTL_S, jkt, family
        )
        payload: dict[str, Any] = {
            "access_token": access,
            "token_type": "DPoP" if jkt else "Bearer",
            "expires_in": ACCESS_TOKEN_TTL_S,
        }
        if scope:
            payload["scope"] = scope
        if self._issue_refresh_token:
            refresh = secrets.token_urlsafe(32)
            self._tokens[refresh] = _Token("refresh", client_id, scope, now, None, jkt, family)
            payload["refresh_token"] = refresh
        if "openid" in scope.split():
            claims = {
                "iss": self.url,
                "sub": self._subject,
                "aud": client_id,
                "iat": now,
                "exp": now + ID_TOKEN_TTL_S,
                "preferred_username": self._subject,
            }
            payload["id_token"] = _sign_jwt(self._signing_key, self._signing_kid, claims)
        return payload

    def _revoke_family_locked(self, family: str) -> None:
        for token in self._tokens.values():
            if token.family == family:
                token.active = False

    def _active_token_locked(self, value: str) -> _Token | None:
        token = self._tokens.get(value)
        if token is None or not token.active:
            return None
        if token.expires_at is not None and time.time() >= token.expires_at:
            return None
        return token

    def _revoke(self, req: _Request) -> _Reply:
        form = _parse_form(req)
        value = form.get("token")
        if value is None:
            raise _OAuthError("invalid_request", "token is required")
        with self._lock:
            token = self._tokens.get(value)
            if token is not None:
                token.active = False
                if token.kind == "refresh":
                    # RFC 7009 §2.1: revoking a refresh token ends the grant's access tokens.
                    self._revoke_family_locked(token.family)
        # RFC 7009 §2.2: 200 whether or not the token was known.
        return _Reply(200, b"", None, list(_NO_STORE), "revoked")

    def _introspect(self, req: _Request) -> _Reply:
        form = _parse_form(req)
        value = form.get("token")
        if value is None:
            raise _OAuthError("invalid_request", "token is required")
        with self._lock:
            token = self._active_token_locked(value)
        if token is None:
            return _json_reply(200, {"active": False}, "inactive")
        payload: dict[str, Any] = {
            "active": True,
            "sub": self._subject,
            "scope": token.scope,
            "client_id": token.client_id,
            "iat": token.issued_at,
            "iss": self.url,
        }
        if token.expires_at is not None:
            payload["exp"] = token.expires_at
        if token.kind == "access":
            payload["token_type"] = "DPoP" if token.jkt else "Bearer"
        if token.jkt:
            payload["cnf"] = {"jkt": token.jkt}
        return _json_reply(200, payload, "active")

    def _userinfo(self, req: _Request) -> _Reply:
        authorizations = req.header_values("Authorization")
        if len(authorizations) != 1:
            # RFC 6750 §3.1: no error code in the challenge when credentials are simply absent.
            raise _OAuthError(
                "invalid_request",
                "exactly one Authorization header (DPoP or Bearer) is required",
                status=401,
                headers=[("WWW-Authenticate", 'DPoP algs="ES256", Bearer')],
            )
        scheme, _, value = authorizations[0].partition(" ")
        value = value.strip()
        if scheme.lower() == "dpop":
            proof = self._verify_proof(req, required=True, resource=True)
            assert proof is not None  # required=True never yields None
            if proof.ath != _access_token_hash(value):
                raise _resource_error("invalid_dpop_proof", "the DPoP proof ath does not match")
            with self._lock:
                token = self._active_token_locked(value)
            if token is None or token.kind != "access":
                raise _resource_error("invalid_token", "the access token is not active")
            if token.jkt is None:
                raise _resource_error("invalid_token", "the access token is not DPoP-bound")
            if token.jkt != proof.jkt:
                raise _resource_error(
                    "invalid_dpop_proof", "the DPoP key is not the one the token is bound to"
                )
        elif scheme.lower() == "bearer":
            with self._lock:
                token = self._active_token_locked(value)
            if token is None or token.kind != "access":
                raise _resource_error(
                    "invalid_token", "the access token is not active", scheme="Bearer"
                )
            if token.jkt is not None:
                # RFC 9449 §7.2: a bound token used as a bearer token is refused.
                raise _resource_error("invalid_token", "a DPoP-bound token needs the DPoP scheme")
        else:
            raise _resource_error("invalid_request", "use the DPoP or Bearer scheme")
        payload = {"sub": self._subject, "preferred_username": self._subject}
        return _json_reply(200, payload, "userinfo")

    # ----------------------------------------------------------------- verification page

    def _verification_page(self, req: _Request) -> _Reply:
        codes = req.query.get("user_code", [])
        if not codes or not codes[0].strip():
            return _html_reply(200, _ENTRY_FORM, "page")
        now = self._clock()
        with self._lock:
            grant = self._grants_by_user_code.get(_normalise_user_code(codes[0]))
            if grant is None:
                return _html_reply(
                    404, _message_page("Unknown code", "No such code."), "unknown_code"
                )
            outcome = "page"
            if self._approve_on_open and self._status_locked(grant, now) == "pending":
                grant.status = self._decision
                outcome = grant.status
            page = self._grant_page_locked(grant, now)
        return _html_reply(200, page, outcome)

    def _verification_action(self, req: _Request) -> _Reply:
        try:
            form = _parse_form(req)
        except _OAuthError:
            return _html_reply(400, _message_page("Bad request", "Malformed form."), "bad_request")
        action = form.get("action")
        decisions: dict[str | None, _Status] = {"approve": "approved", "deny": "denied"}
        if action not in decisions:
            body = _message_page("Bad request", "action must be approve or deny.")
            return _html_reply(400, body, "bad_request")
        now = self._clock()
        with self._lock:
            grant = self._grants_by_user_code.get(_normalise_user_code(form.get("user_code") or ""))
            if grant is None:
                return _html_reply(
                    404, _message_page("Unknown code", "No such code."), "unknown_code"
                )
            outcome = "page"
            if self._status_locked(grant, now) == "pending":
                grant.status = decisions[action]
                outcome = grant.status
            page = self._grant_page_locked(grant, now)
        return _html_reply(200, page, outcome)

    def _grant_page_locked(self, grant: _Grant, now: float) -> str:
        status = self._status_locked(grant, now)
        rows = [
            ("Code", _display_user_code(grant.user_code)),
            ("Client", grant.client_id),
            ("Scope", grant.scope or "(none)"),
            ("Resources", " ".join(grant.resources) or "(none)"),
            *sorted(grant.extra_params.items()),
            ("Status", status),
        ]
        table = "".join(
            f"<tr><th>{html.escape(name)}</th><td>{html.escape(value)}</td></tr>"
            for name, value in rows
        )
        buttons = ""
        if status == "pending":
            code = html.escape(_display_user_code(grant.user_code))
            buttons = (
                f'<form method="post" action="{VERIFICATION_PATH}">'
                f'<input type="hidden" name="user_code" value="{code}">'
                '<button name="action" value="approve">Approve</button> '
                '<button name="action" value="deny">Deny</button></form>'
            )
        return _page("Device authorization", f"<table>{table}</table>{buttons}")


def _page(title: str, body_html: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body_html}</body></html>\n"
    )


def _message_page(title: str, message: str) -> str:
    return _page(title, f"<p>{html.escape(message)}</p>")


_ENTRY_FORM: Final = _page(
    "Device authorization",
    f'<form method="get" action="{VERIFICATION_PATH}"><label>Code '
    '<input name="user_code" autocomplete="off" autofocus></label> '
    "<button>Continue</button></form>",
)


def _html_reply(status: int, page: str, outcome: str) -> _Reply:
    headers = [
        *_NO_STORE,
        # The page shows untrusted request data: no scripts, no framing, forms only to us.
        (
            "Content-Security-Policy",
            "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        ("X-Frame-Options", "DENY"),
    ]
    return _Reply(status, page.encode("utf-8"), "text/html; charset=utf-8", headers, outcome)


# --------------------------------------------------------------------------- HTTP adapter


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], sandbox: SandboxServer) -> None:
        self.sandbox = sandbox
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (timeouts, resets, our own stop()) are normal here, not bugs.
        error = sys.exc_info()[1]
        if isinstance(error, OSError) or self.sandbox._stopping.is_set():
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients can reuse one connection
    server_version = "ci_shark-sandbox"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_S
    # Headers and body go out in two writes; with Nagle on, the body would wait ~40 ms for
    # the client's delayed ACK, skewing every timing a benchmark or interval test sees.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.connection_id = self.server.sandbox._register_connection(self.connection)
        self.arrived_at = 0.0

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sandbox._unregister_connection(self.connection)

    def parse_request(self) -> bool:
        self.arrived_at = self.server.sandbox._clock()
        if not super().parse_request():
            return False
        header_bytes = sum(len(name) + len(value) for name, value in self.headers.items())
        if header_bytes > MAX_HEADER_BYTES:
            self.send_error(431, "Request Header Fields Too Large")
            return False
        return True

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request stderr line."""

    def end_headers(self) -> None:
        # Every answer, errors included, tells the client the newest nonce.
        nonce = self.server.sandbox._response_nonce()
        if nonce is not None:
            self.send_header("DPoP-Nonce", nonce)
        super().end_headers()

    def _serve(self) -> None:
        sandbox = self.server.sandbox
        split = urllib.parse.urlsplit(self.path)
        body, problem = self._read_body()
        try:
            query = urllib.parse.parse_qs(split.query, max_num_fields=20)
        except ValueError:
            query = {}
            problem = problem or _text_reply(400, "400 too many query parameters\n", "bad_request")
        req = _Request(
            method=self.command,
            path=split.path,
            query=query,
            headers=tuple(self.headers.items()),
            body=body,
            arrived_at=self.arrived_at,
            connection_id=self.connection_id,
        )
        if problem is not None:
            reply = problem
        else:
            try:
                reply = sandbox._handle(req)
            except Exception:  # a sandbox bug: answer like a real server, keep a trace
                traceback.print_exc()
                payload = {"error": "server_error", "error_description": "sandbox bug"}
                reply = _json_reply(500, payload, "server_error")
        # Record before answering, so a client that sees the answer also sees it in stats.
        sandbox._record(req, reply)
        self._write(reply)

    def _read_body(self) -> tuple[bytes, _Reply | None]:
        if self.headers.get("Transfer-Encoding"):
            reply = _text_reply(411, "411 a Content-Length is required\n", "length_required")
            reply.close = True
            return b"", reply
        raw_length = self.headers.get("Content-Length")
        if raw_length is None:
            return b"", None
        try:
            length = int(raw_length)
            if length < 0:
                raise ValueError(raw_length)
        except ValueError:
            reply = _text_reply(400, "400 bad Content-Length\n", "bad_request")
            reply.close = True
            return b"", reply
        if length > MAX_BODY_BYTES:
            # Not reading it: the connection is unusable afterwards, so close it.
            reply = _text_reply(413, "413 request body too large\n", "payload_too_large")
            reply.close = True
            return b"", reply
        body = self.rfile.read(length)
        if len(body) != length:
            reply = _text_reply(400, "400 incomplete body\n", "bad_request")
            reply.close = True
            return body, reply
        return body, None

    def _write(self, reply: _Reply) -> None:
        if reply.action == "reset":
            self._reset_connection()
            return
        try:
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            if reply.content_type is not None:
                self.send_header("Content-Type", reply.content_type)
            declared = (
                reply.declared_length if reply.declared_length is not None else len(reply.body)
            )
            self.send_header("Content-Length", str(declared))
            if reply.close or reply.action == "truncate":
                self.send_header("Connection", "close")  # also sets close_connection
            self.end_headers()
            self.wfile.write(reply.body)
        except OSError:
            self.close_connection = True

    def _reset_connection(self) -> None:
        # SO_LINGER {on, 0}: close() then sends RST instead of FIN. The socket must be closed
        # here (not via shutdown(), which would send a FIN first), and rfile holds a reference.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.connection.close()


# --------------------------------------------------------------------------- standalone


def _argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ci_shark.sandbox",
        description="Run the ci_shark loopback authorization server (RFC 8628 + DPoP).",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free)")
    parser.add_argument("--interval", type=int, default=1, help="poll interval in seconds")
    parser.add_argument("--expires-in", type=int, default=600, help="device code lifetime (s)")
    parser.add_argument(
        "--approve-after", type=float, default=None, help="decide automatically after N seconds"
    )
    parser.add_argument(
        "--no-approve-on-open",
        action="store_true",
        help="opening the verification link only shows approve/deny buttons",
    )
    parser.add_argument("--deny", action="store_true", help="automatic decisions deny")
    parser.add_argument("--no-dpop", action="store_true", help="DPoP optional (Bearer allowed)")
    parser.add_argument("--no-dpop-nonce", action="store_true", help="do not demand DPoP nonces")
    parser.add_argument("--no-strict-interval", action="store_true", help="never answer slow_down")
    parser.add_argument(
        "--no-send-interval", action="store_true", help="omit interval (like oidc-provider)"
    )
    parser.add_argument("--no-metadata", action="store_true", help="/.well-known/* answer 404")
    parser.add_argument(
        "--device-flow", choices=("enabled", "missing", "disabled"), default="enabled"
    )
    parser.add_argument(
        "--token-fault",
        action="append",
        default=[],
        metavar="FAULT[,FAULT]",
        help="fault(s) for successive token requests: "
        + ", ".join(sorted(FAULT_NAMES))
        + ", slow:<s>",
    )
    parser.add_argument("--device-fault", action="append", default=[], metavar="FAULT[,FAULT]")
    parser.add_argument("--no-refresh-token", action="store_true")
    parser.add_argument("--subject", default="octocat", help="the approving user")
    return parser


def _split_faults(values: Sequence[str]) -> list[str]:
    return [fault.strip() for value in values for fault in value.split(",") if fault.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    args = _argument_parser().parse_args(argv)
    try:
        server = SandboxServer(
            port=args.port,
            interval_s=args.interval,
            expires_in_s=args.expires_in,
            approve_after_s=args.approve_after,
            approve_on_open=not args.no_approve_on_open,
            decision="deny" if args.deny else "approve",
            require_dpop=not args.no_dpop,
            require_nonce=not args.no_dpop_nonce,
            strict_interval=not args.no_strict_interval,
            send_interval=not args.no_send_interval,
            metadata=not args.no_metadata,
            device_flow=args.device_flow,
            token_faults=_split_faults(args.token_fault),
            device_faults=_split_faults(args.device_fault),
            issue_refresh_token=not args.no_refresh_token,
            subject=args.subject,
        )
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
        print(f"ci_shark sandbox: cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        print(f"ci_shark sandbox listening on {server.url}", flush=True)
        # A bounded wait in a loop keeps the main thread responsive to signals.
        while not stop_requested.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
