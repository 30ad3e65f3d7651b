"""The small flows beside login: use what a login issued, in a later step of the same job.

- :func:`proof`: a DPoP proof for a request made with another client (curl).
- :func:`request`: call an API with the token, curl-like: the proof, the nonce, a refresh
  when the token has expired — the credential in one line.
- :func:`refresh`: the refresh-token grant with a proof from the same key, re-exported.
- :func:`revoke`: revoke both tokens (the grant first) and remove our key file.

They all read the credentials the same way (:func:`load_issued`): ``--credentials FILE``,
else the ``SHARK_*`` variables, else the file login left in the job's private folder (on
GitHub, ``$RUNNER_TEMP/ci-shark.json``). Every secret read is masked before it is used.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import BinaryIO

import httpx

from ci_shark.config import Settings
from ci_shark.errors import CiSharkError, ConfigError, ExitCode, ProtocolError
from ci_shark.oauth.discovery import Endpoints, server_endpoints
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import USER_AGENT, DPoPAuth, NonceMemory, OAuthHttp
from ci_shark.oauth.providers import lookup
from ci_shark.oauth.tls import context_for
from ci_shark.oauth.tokens import Client, refresh_grant, revoke_each
from ci_shark.outputs import Credentials, read_credentials
from ci_shark.platforms.base import Platform
from ci_shark.safe_text import untrusted
from ci_shark.secret import Secret
from ci_shark.urls import origin, url_problem

COMMAND_BUDGET_S = 60.0
EXPIRY_MARGIN_S = 30.0  # refresh a token this close to its expiry: it may die in flight
MAX_REDIRECTS = 5
# Without a token or a file, these in the environment still serve `proof` (a key is enough).
ENV_MARKERS = ("SHARK_REFRESH_TOKEN", "SHARK_DPOP_KEY_FILE", "SHARK_DPOP_JWK")


# -- what a login issued -------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """The credentials of an earlier login, and where they were read from."""

    values: Mapping[str, str]  # SHARK_* as exported
    file: Path | None  # None: the environment

    def text(self, name: str) -> str | None:
        value = self.values.get(name, "").strip()
        return value or None

    def secret(self, name: str) -> Secret | None:
        value = self.text(name)
        return Secret(value) if value else None

    @property
    def where(self) -> str:
        return str(self.file) if self.file else "the SHARK_* variables"

    def expires_at(self) -> datetime | None:
        text = self.text("SHARK_EXPIRES_AT") or ""
        try:
            return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            return None

    def has_expired(self, *, now: datetime | None = None) -> bool:
        expires = self.expires_at()
        now = now or datetime.now(timezone.utc)
        return expires is not None and now >= expires - timedelta(seconds=EXPIRY_MARGIN_S)

    def dpop_key(self) -> DPoPKey | None:
        """The login's key: its PEM file, else its JWK."""
        key_file = self.text("SHARK_DPOP_KEY_FILE")
        jwk = self.secret("SHARK_DPOP_JWK")
        if key_file and Path(key_file).is_file():
            return DPoPKey.load(read_key_file(Path(key_file)))
        if jwk is not None:
            return DPoPKey.from_jwk(jwk.reveal())
        if key_file:
            raise ConfigError(
                f"the DPoP key file {key_file} (SHARK_DPOP_KEY_FILE) is gone",
                hint="use the credentials in the job that ran the login; `revoke` removes the key",
            )
        return None


def credential_files(platform: Platform) -> list[Path]:
    """Where a login with default settings left its credentials, newest format first."""
    folder = platform.state_directory()
    return [folder / "ci-shark.json", folder / "ci-shark.env"]


def load_issued(credentials: Path | None, platform: Platform) -> Issued:
    """``--credentials FILE``, else ``SHARK_*`` variables, else the job's default file."""
    if credentials is not None:
        return Issued(read_credentials(credentials), credentials)
    env = platform.env
    in_env = Issued({k: v for k, v in env.items() if k.startswith("SHARK_")}, None)
    if in_env.text("SHARK_ACCESS_TOKEN"):
        return in_env
    for candidate in credential_files(platform):
        if candidate.is_file():
            return Issued(read_credentials(candidate), candidate)
    if any(in_env.text(name) for name in ENV_MARKERS):
        return in_env  # a key without its token (Azure maps secret variables by hand)
    template = env.get("CI_SHARK_TEMPLATE", "").strip()
    if template:  # set by the GitLab template/component, whose variables survive
        raise ConfigError(
            f"no credentials in this shell: the `{template}` template's login did not run",
            hint=f"a job that extends `{template}` and sets its own before_script replaces "
            f"the template's install and login: add `- !reference [{template}, "
            "before_script]` to it (docs/gitlab.md)",
        )
    raise ConfigError(
        "no credentials: SHARK_ACCESS_TOKEN is not set and no login left "
        f"{' or '.join(str(path) for path in credential_files(platform))}",
        hint="run this in the job that ran the login (after it), pass `--credentials FILE`, "
        "or eval the login's shell exports first; a GitLab job that sets its own "
        "before_script must include the template's (!reference [.ci-shark, before_script])",
    )


def read_key_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the DPoP key file {path}: {exc.strerror}",
            hint="pass the path of a readable PEM or JWK file",
        ) from None


def mask_issued(issued: Issued, platform: Platform) -> None:
    """Every secret read, masked before anything is sent (the runner may not know them:
    a later step that read a file, not an output)."""
    platform.mask(
        [
            secret
            for name in ("SHARK_ACCESS_TOKEN", "SHARK_REFRESH_TOKEN", "SHARK_ID_TOKEN")
            if (secret := issued.secret(name)) is not None
        ]
    )


# -- the server behind the credentials -----------------------------------------------------


@dataclass(frozen=True)
class Server:
    auth_url: str
    client_id: str
    endpoints: Endpoints

    def client(self, settings: Settings) -> Client:
        """Us, to this server: the login's client, with the secret from CI_SHARK_*."""
        return Client(self.client_id, settings.client_secret, self.endpoints.client_auth)


def find_server(issued: Issued, settings: Settings, http: OAuthHttp, deadline: float) -> Server:
    """`auth-url` and `client-id` as given (flags, CI_SHARK_*), else as the login wrote them."""
    auth_url = settings.auth_url or issued.text("SHARK_AUTH_URL")
    client_id = settings.client_id or issued.text("SHARK_CLIENT_ID")
    if not auth_url:
        settings.required("auth_url")  # raises, naming the input
    if not client_id:
        settings.required("client_id")
    assert auth_url is not None
    assert client_id is not None
    provider = lookup(settings.provider, auth_url)
    endpoints = server_endpoints(http, auth_url, deadline=deadline, provider=provider)
    return Server(auth_url, client_id, endpoints)


# -- proof --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProofFor:
    """The request a proof is for; ``access_token`` as given on argv (discouraged)."""

    method: str
    url: str
    nonce: str | None = None
    access_token: str | None = None


def proof(
    request: ProofFor,
    settings: Settings,
    platform: Platform,
    *,
    key_file: Path | None,
    credentials: Path | None,
    with_access_token: bool,
) -> str:
    """A DPoP proof for a request made with another client: the key from ``key_file``,
    else the login's, else ``dpop-private-key``; bound to the login's token on request."""
    problem = url_problem(request.url)
    if problem:
        raise ConfigError(f"--url {problem}", hint="pass the full https:// URL of the request")
    issued = None
    if key_file is None or with_access_token:
        try:
            issued = load_issued(credentials, platform)
        except ConfigError:
            if key_file is None and settings.dpop_private_key is None:
                raise  # it says where the login's credentials were looked for
    if key_file is not None:
        key = DPoPKey.load(read_key_file(key_file))
    elif issued is not None and (found := issued.dpop_key()) is not None:
        key = found
    elif settings.dpop_private_key is not None:
        key = DPoPKey.load(settings.dpop_private_key.reveal())
    else:
        raise ConfigError(
            f"no DPoP key in {issued.where if issued else 'the login'}: the token is not "
            "DPoP-bound, or its key is gone",
            hint="pass --key-file, or set CI_SHARK_DPOP_PRIVATE_KEY",
        )
    access_token: str | Secret | None = request.access_token
    if with_access_token:
        access_token = issued.secret("SHARK_ACCESS_TOKEN") if issued else None
        if access_token is None:
            raise ConfigError("--with-access-token: the login's access token is not there")
    return key.proof(request.method, request.url, nonce=request.nonce, access_token=access_token)


# -- revoke --------------------------------------------------------------------------------


def revoke(
    issued: Issued, settings: Settings, platform: Platform, *, credentials_flag: bool
) -> None:
    mask_issued(issued, platform)
    tokens = [
        (secret, hint)
        for name, hint in (
            ("SHARK_REFRESH_TOKEN", "refresh_token"),  # the grant first
            ("SHARK_ACCESS_TOKEN", "access_token"),
        )
        if (secret := issued.secret(name)) is not None
    ]
    if not tokens:
        platform.log("ci_shark: nothing to revoke (no access or refresh token)")
        return
    try:
        key = issued.dpop_key()
    except ConfigError as unreadable:
        # Revocation does not need a proof: a lost key must not leave the tokens alive.
        platform.warn(f"revoking without a DPoP proof: {unreadable.message}")
        key = None
    deadline = time.monotonic() + COMMAND_BUDGET_S
    with OAuthHttp(ca_bundle=settings.ca_bundle) as http:
        server = find_server(issued, settings, http, deadline)
        endpoint = server.endpoints.revocation
        if endpoint is None:
            raise ConfigError(
                "the authorization server names no revocation endpoint",
                hint="the server does not support RFC 7009 revocation; tokens expire on their own",
            )
        results = revoke_each(
            http, endpoint, tokens, server.client(settings), dpop=key, deadline=deadline
        )
    for hint, failure in results.items():
        if failure is None:
            platform.log(f"ci_shark: revoked the {hint.replace('_', ' ')}")
    failures = [failure for failure in results.values() if failure is not None]
    if failures:
        raise failures[0]
    _remove_own_files(issued, platform, credentials_flag=credentials_flag)


def _remove_own_files(issued: Issued, platform: Platform, *, credentials_flag: bool) -> None:
    """Once both tokens are dead, the key has no use: remove ci_shark's own key file, and
    the credentials file when it is the one login left by default."""
    own = [Path(key) for key in [issued.text("SHARK_DPOP_KEY_FILE") or ""] if key]
    own = [path for path in own if path.name.startswith("ci-shark-dpop-")]
    if issued.file is not None and not credentials_flag:
        own.append(issued.file)
    for path in own:
        with suppress(OSError):
            path.unlink()
            platform.log(f"ci_shark: removed {path}")


# -- refresh -------------------------------------------------------------------------------


def refresh(issued: Issued, settings: Settings, platform: Platform) -> Issued:
    """The refresh-token grant with a proof from the login's key (RFC 9449 §5), then the
    new tokens re-exported where the old ones were (masked first, all or none)."""
    mask_issued(issued, platform)
    refresh_token = issued.secret("SHARK_REFRESH_TOKEN")
    if refresh_token is None:
        raise ConfigError(
            f"no refresh token in {issued.where}: the server issued none",
            hint="ask for a refresh token (often the offline_access scope), or log in again",
        )
    key = issued.dpop_key()
    deadline = time.monotonic() + COMMAND_BUDGET_S
    with OAuthHttp(ca_bundle=settings.ca_bundle) as http:
        server = find_server(issued, settings, http, deadline)
        tokens = refresh_grant(
            http,
            server.endpoints.token,
            refresh_token,
            server.client(settings),
            dpop=key,
            deadline=deadline,
        )
    if tokens.refresh_token is None:  # not rotated: the old one stays valid
        tokens = replace(tokens, refresh_token=refresh_token)
    was_bound = (issued.text("SHARK_TOKEN_TYPE") or "").lower() == "dpop"
    if was_bound and not tokens.is_dpop_bound:
        platform.warn(f"the refreshed token is {tokens.token_type}, no longer DPoP-bound")
    credentials = Credentials(
        tokens=tokens,
        dpop_key=key,
        dpop_key_file=issued.text("SHARK_DPOP_KEY_FILE"),
        approver=issued.text("SHARK_APPROVER"),
        auth_url=server.auth_url,
        client_id=server.client_id,
    )
    platform.mask(credentials.secrets())
    platform.export_refreshed(credentials, issued.file)
    platform.log(
        f"ci_shark: refreshed the access token (expires {credentials.named()['SHARK_EXPIRES_AT']})"
    )
    return Issued({**issued.values, **_plain(credentials.named())}, issued.file)


def _plain(named: Mapping[str, str | Secret]) -> dict[str, str]:
    return {name: v.reveal() if isinstance(v, Secret) else v for name, v in named.items()}


# -- request -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One ``ci-shark request``."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    body: bytes | None
    output: BinaryIO
    max_time_s: float


class HttpFailed(CiSharkError):
    """The API answered an HTTP error (curl's ``--fail-with-body``: the body was written)."""

    exit_code = ExitCode.HTTP_ERROR

    def __init__(self, status: int, first_line: str) -> None:
        detail = f": {first_line}" if first_line else ""
        super().__init__(f"the server answered HTTP {status}{detail}")
        self.status_code = status


def request(
    call: Call,
    issued: Issued,
    settings: Settings,
    platform: Platform,
    *,
    transport: httpx.BaseTransport | None = None,
) -> None:
    """Send ``call`` with the login's token, refreshing it first when it has expired (and
    once more on a 401 ``invalid_token``), and stream the answer to ``call.output``."""
    problem = url_problem(call.url)
    if problem:
        raise ConfigError(f"the URL {problem}", hint="pass the full https:// URL of the API")
    mask_issued(issued, platform)
    can_refresh = issued.text("SHARK_REFRESH_TOKEN") is not None
    if issued.has_expired() and can_refresh:
        platform.log(f"ci_shark: the access token in {issued.where} has expired; refreshing it")
        issued = refresh(issued, settings, platform)
    deadline = time.monotonic() + call.max_time_s
    nonces = NonceMemory()
    with httpx.Client(
        transport=transport,
        verify=context_for(settings.ca_bundle) if transport is None else True,
        follow_redirects=False,  # followed by hand: never to another origin with the token
        trust_env=True,
        headers={"User-Agent": USER_AGENT},
        event_hooks={"response": [nonces.learn]},
    ) as client:
        response = _send(client, call, issued, nonces, deadline)
        if _invalid_token(response) and can_refresh:
            response.close()
            platform.log("ci_shark: the API says the token is no longer valid; refreshing it")
            issued = refresh(issued, settings, platform)
            response = _send(client, call, issued, nonces, deadline)
        try:
            first_line = _stream(response, call.output, deadline)
        finally:
            response.close()
        if response.status_code >= 400:
            raise HttpFailed(response.status_code, first_line)


def _send(
    client: httpx.Client, call: Call, issued: Issued, nonces: NonceMemory, deadline: float
) -> httpx.Response:
    token = issued.secret("SHARK_ACCESS_TOKEN")
    if token is None:
        raise ConfigError(
            f"no access token in {issued.where}",
            hint="map SHARK_ACCESS_TOKEN into this step, or pass `--credentials FILE`",
        )
    dpop = (issued.text("SHARK_TOKEN_TYPE") or "").lower() == "dpop"
    key = issued.dpop_key() if dpop else None
    if dpop and key is None:
        raise ConfigError(
            f"the token in {issued.where} is DPoP-bound but its key is not there",
            hint="keep SHARK_DPOP_KEY_FILE or SHARK_DPOP_JWK next to the token",
        )
    method, url, body = call.method, call.url, call.body
    start = origin(url)
    for _ in range(MAX_REDIRECTS + 1):
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            raise CiSharkError(f"no answer within {call.max_time_s:g}s (--max-time)")
        headers = httpx.Headers(call.headers)
        auth: httpx.Auth | None = None
        if key is not None:
            auth = DPoPAuth(key, nonces, token, read_error_bodies=False)
        else:
            headers["Authorization"] = f"Bearer {token.reveal()}"
        built = client.build_request(
            method, url, headers=headers, content=body, timeout=min(30.0, remaining_s)
        )
        try:
            response = client.send(built, auth=auth, stream=True)
        except httpx.HTTPError as exc:
            raise CiSharkError(
                f"could not reach {untrusted(url)}: {type(exc).__name__}",
                hint="check the URL and that the API is reachable from this job",
            ) from None
        location = response.headers.get("location")
        if response.status_code not in (301, 302, 303, 307, 308) or not location:
            return response
        response.close()
        target = str(response.url.join(location))
        if origin(target) != start:
            raise ProtocolError(
                f"the API redirected to another origin ({untrusted(origin(target))}); "
                "ci-shark does not send the token there",
                hint="call the final URL directly if you trust it",
            )
        if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
            method, body = "GET", None
        url = target
    raise ProtocolError(f"more than {MAX_REDIRECTS} redirects")


def _invalid_token(response: httpx.Response) -> bool:
    challenge = response.headers.get("www-authenticate", "")
    return response.status_code == 401 and 'error="invalid_token"' in challenge


def _stream(response: httpx.Response, output: BinaryIO, deadline: float) -> str:
    """The body to the output as it arrives; returns its first line, for the message of
    an error (sanitised: it is server text)."""
    head = b""
    for chunk in response.iter_bytes():
        if time.monotonic() > deadline:
            raise CiSharkError("the answer was still arriving at --max-time")
        if len(head) < 400:
            head += chunk[: 400 - len(head)]
        output.write(chunk)
    output.flush()
    return untrusted(head.decode("utf-8", "replace").strip().split("\n", 1)[0], 200)


def open_output(path: Path | None) -> BinaryIO:
    """stdout, or a new 0600 file (an API's answer may be as secret as the token)."""
    if path is None:
        return sys.stdout.buffer
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror}", hint="pass -o a file in a writable folder"
        ) from None
    return os.fdopen(descriptor, "wb")


def read_body(data: str | None, json_data: str | None, stdin: BinaryIO) -> bytes | None:
    """``-d DATA``, ``-d @FILE``, ``-d @-`` (stdin), or the same for ``--json``."""
    given = data if data is not None else json_data
    if given is None:
        return None
    if not given.startswith("@"):
        return given.encode("utf-8")
    if given == "@-":
        return stdin.read()
    try:
        return Path(given[1:]).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {given[1:]}: {exc.strerror}", hint="-d @FILE needs a readable file"
        ) from None


def parse_headers(given: Iterable[str]) -> list[tuple[str, str]]:
    headers = []
    for item in given:
        name, sep, value = item.partition(":")
        if not sep or not name.strip() or not name.strip().isascii():
            raise ConfigError(f"-H takes 'Name: value', not {item[:40]!r}")
        if name.strip().lower() in ("authorization", "dpop"):
            raise ConfigError(
                f"-H {name.strip()}: ci-shark sends this header itself",
                hint="leave it out; the token and the proof come from the login",
            )
        headers.append((name.strip(), value.strip()))
    return headers


__all__ = [
    "Call",
    "HttpFailed",
    "Issued",
    "ProofFor",
    "credential_files",
    "load_issued",
    "open_output",
    "parse_headers",
    "proof",
    "read_body",
    "refresh",
    "request",
    "revoke",
]
