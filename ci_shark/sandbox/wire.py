"""What the sandbox speaks, without sockets: its paths, a request, a reply, OAuth errors, forms."""

from __future__ import annotations

import base64
import ipaddress
import json
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

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
# The protected-resource side, for clients that use the token (`ci-shark request`).
ECHO_PATH: Final = "/api/echo"
REDIRECT_PATH: Final = "/api/redirect"
BYTES_PATH: Final = "/api/bytes"

#: A route entry that accepts every method.
ANY_METHOD: Final = "*"

NO_STORE: Final = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query string
    query: Mapping[str, list[str]]
    headers: tuple[tuple[str, str], ...]
    body: bytes
    arrived_at: float  # the server's clock when the request line was read
    connection_id: int
    raw_query: str = ""
    # A request answered after a "slow" fault is processed but not judged as a poll.
    counts_as_poll: bool = True

    @property
    def target(self) -> str:
        """The path and the query, as the client sent them."""
        return f"{self.path}?{self.raw_query}" if self.raw_query else self.path

    def header_values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name, [])
        return values[0] if values else None


@dataclass
class Reply:
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
    # Sent after body, chunk by chunk, for bodies too large to build in memory first.
    stream: Iterator[bytes] | None = None


Endpoint = Callable[[Request], Reply]
Routes = dict[str, dict[str, Endpoint]]


def json_reply(
    status: int, payload: Mapping[str, Any], outcome: str, headers: Iterable[tuple[str, str]] = ()
) -> Reply:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return Reply(status, body, "application/json", [*NO_STORE, *headers], outcome)


def text_reply(status: int, text: str, outcome: str) -> Reply:
    return Reply(status, text.encode("utf-8"), "text/plain; charset=utf-8", outcome=outcome)


def not_found() -> Reply:
    # What Go's net/http (SharkAuth) answers for an unknown route: plain text, not JSON.
    return text_reply(404, "404 page not found\n", "not_found")


class OAuthError(Exception):
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

    def reply(self) -> Reply:
        payload = {"error": self.error, "error_description": self.description}
        reply = json_reply(self.status, payload, self.error, self.headers)
        reply.detail = self.description
        return reply


def resource_error(error: str, description: str, *, scheme: str = "DPoP") -> OAuthError:
    """A resource-server error: 401 with the error in WWW-Authenticate (RFC 6750, RFC 9449)."""
    challenge = f'{scheme} error="{error}", error_description="{description}"'
    if scheme == "DPoP":
        challenge += ', algs="ES256"'
    return OAuthError(error, description, status=401, headers=[("WWW-Authenticate", challenge)])


@dataclass(frozen=True)
class Form:
    pairs: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        for key, value in self.pairs:
            if key == name:
                return value
        return None

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise OAuthError("invalid_request", f"{name} is required")
        return value

    def all(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]


def parse_form(req: Request) -> Form:
    content_type = (req.header("Content-Type") or "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    try:
        # Blank values count as omitted (RFC 6749 §3.1), so keep_blank_values stays False.
        pairs = urllib.parse.parse_qsl(req.body.decode("utf-8"), max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OAuthError("invalid_request", "the form body is malformed") from exc
    seen: set[str] = set()
    for name, _ in pairs:
        # RFC 6749 §3.1: parameters must not repeat; RFC 8707 makes resource the exception.
        if name in seen and name != "resource":
            raise OAuthError("invalid_request", f"parameter {name} is repeated")
        seen.add(name)
    return Form(tuple(pairs))


def client_credentials_of(req: Request, form: Form) -> tuple[str, str | None]:
    """client_id and client secret from HTTP Basic or the form (RFC 6749 §2.3.1)."""
    basic: tuple[str, str] | None = None
    authorization = req.header("Authorization") or ""
    if authorization[:6].lower() == "basic ":
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            raise OAuthError(
                "invalid_client", "malformed HTTP Basic credentials", status=401
            ) from exc
        user, separator, password = decoded.partition(":")
        if not separator:
            raise OAuthError("invalid_client", "malformed HTTP Basic credentials", status=401)
        basic = urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)
    form_id = form.get("client_id")
    if basic and form_id and basic[0] != form_id:
        raise OAuthError("invalid_request", "client_id differs between Basic auth and the body")
    if basic and form.get("client_secret") is not None:
        raise OAuthError("invalid_request", "use one client authentication method, not two")
    client_id = basic[0] if basic else form_id
    if not client_id:
        raise OAuthError("invalid_client", "client_id is required", status=401)
    return client_id, basic[1] if basic else form.get("client_secret")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 4 and address.is_loopback
