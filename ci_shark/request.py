"""`ci-shark request`: curl for the login's token.

Its rules:

- A fresh DPoP proof per request (``htm``, ``htu`` without query, ``ath``, the server's
  newest nonce), or ``Bearer`` for a Bearer token; one retry when the API demands a newer
  nonce (RFC 9449 §9: a 401 with ``use_dpop_nonce``, or glewlwyd's bare 401).
- The token is about to expire: refreshed first, written back where the credentials came
  from; the API says ``invalid_token``: one refresh, then the request again, once
  (:mod:`ci_shark.token_auth`, as `proxy` and :func:`ci_shark.session` do).
- Redirects are followed by hand, within the same origin only: the token and a proof
  never go to another one.
- The body goes to stdout or ``-o`` (0600) as it arrives, exactly as sent: identity is
  asked for and nothing is decompressed (as curl without ``--compressed``), so a
  compression bomb costs nothing. An HTTP error exits 22 with the status and the body's
  first line on stderr (curl's ``--fail-with-body``).
- ``--max-time`` is a deadline for the whole request, dripping headers included.
- Nothing it prints holds the token or the proof; a server echoing the token gets ``***``.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import httpx

from ci_shark.errors import CiSharkError, ConfigError, ExitCode, ProtocolError
from ci_shark.issued import Issued, mask_issued
from ci_shark.oauth.http import FIRST_LINE_BYTES, Exchange, HttpClient, SendFailed, first_line
from ci_shark.platforms.base import Platform
from ci_shark.safe_text import untrusted
from ci_shark.token_auth import LiveCredentials, LoginTokenAuth
from ci_shark.urls import origin, url_problem

if TYPE_CHECKING:
    from ci_shark.later_settings import ServerSettings

MAX_REDIRECTS = 5
READ_TIMEOUT_S = 30.0  # between two reads; --max-time bounds the whole request
REDIRECTS = frozenset({301, 302, 303, 307, 308})


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
    settings: ServerSettings,
    platform: Platform,
    *,
    transport: httpx.BaseTransport | None = None,
) -> None:
    """Send ``call`` with the login's token and stream the answer to ``call.output``."""
    problem = url_problem(call.url)
    if problem:
        raise ConfigError(f"the URL {problem}", hint="pass the full https:// URL of the API")
    mask_issued(issued, platform)
    live = LiveCredentials.of_command(issued, settings, platform)
    deadline = time.monotonic() + call.max_time_s
    try:
        with (
            HttpClient(
                ca_bundle=settings.ca_bundle,
                transport=transport,
                timeout=httpx.Timeout(READ_TIMEOUT_S),
                max_body_bytes=None,  # streamed on as it comes, as curl does
            ) as http,
            _send(http, call, LoginTokenAuth(live, http.nonces), deadline) as answer,
        ):
            first_line = _stream(answer, call.output)
    except SendFailed as failure:
        if failure.timed_out:
            raise CiSharkError(
                f"no complete answer within --max-time {call.max_time_s:g}s"
            ) from None
        raise CiSharkError(
            f"could not reach {untrusted(call.url)}: {failure}",
            hint="check the URL and that the API is reachable from here",
        ) from None
    if answer.response.status_code >= 400:
        raise HttpFailed(answer.response.status_code, first_line)


def _send(http: HttpClient, call: Call, auth: httpx.Auth, deadline: float) -> Exchange:
    """The answer, once its headers are in: redirects followed within the origin only, the
    token and a fresh proof on every hop (``auth``: a nonce demanded, a token refused)."""
    method, url, body = call.method, call.url, call.body
    start = origin(url)
    for _ in range(MAX_REDIRECTS + 1):
        built = http.build(method, url, deadline=deadline, headers=call.headers, content=body)
        answer = http.send(built, deadline=deadline, auth=auth)
        status, location = answer.response.status_code, answer.response.headers.get("location")
        if status not in REDIRECTS or not location:
            return answer
        answer.close()
        target = str(answer.response.url.join(location))
        if origin(target) != start:
            raise ProtocolError(
                f"the API redirected to another origin ({untrusted(origin(target))}); "
                "ci-shark does not send the token there",
                hint="call the final URL directly if you trust it",
            )
        if status == 303 or (status in (301, 302) and method == "POST"):
            method, body = "GET", None
        url = target
    raise ProtocolError(f"more than {MAX_REDIRECTS} redirects")


def _stream(answer: Exchange, output: BinaryIO) -> str:
    """The body to the output as it comes off the wire; returns its first line, for the
    message of an error (server text: sanitised, the run's secrets taken out)."""
    head = b""
    for chunk in answer.chunks():
        if len(head) < FIRST_LINE_BYTES:
            head += chunk[: FIRST_LINE_BYTES - len(head)]
        output.write(chunk)
    output.flush()
    return first_line(head, 200)


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


def build_call(
    url: str,
    *,
    method: str | None,
    headers: Iterable[str],
    data: str | None,
    json_data: str | None,
    output: Path | None,
    max_time_s: float,
    stdin: BinaryIO,
) -> Call:
    """The request as curl would send it: ``-H`` checked and the body read first (a bad
    one leaves ``-o`` untouched), then curl's defaults: POST when there is a body, a
    form-encoded ``-d``, a JSON ``--json`` that also accepts JSON. A ``-H`` or ``-X`` wins."""
    given = parse_headers(headers)
    body = read_body(data, json_data, stdin)
    defaults: list[tuple[str, str]] = []
    if json_data is not None:
        defaults = [("Content-Type", "application/json"), ("Accept", "application/json")]
    elif body is not None:
        defaults = [("Content-Type", "application/x-www-form-urlencoded")]
    named = {name.lower() for name, _ in given}
    given += [(name, value) for name, value in defaults if name.lower() not in named]
    return Call(
        method=(method or ("POST" if body is not None else "GET")).upper(),
        url=url,
        headers=given,
        body=body,
        output=open_output(output),
        max_time_s=max_time_s,
    )


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
    """``-H 'Name: value'``: printable ASCII (a header is), and never the two headers
    ci-shark sends itself. A bad one is refused without repeating it: it may hold a secret."""
    headers = []
    for number, item in enumerate(given, start=1):
        name, sep, value = item.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not name or not all(" " <= ch <= "~" for ch in name + value):
            raise ConfigError(
                f"-H number {number} is not 'Name: value' in printable ASCII",
                hint="give each header as -H 'Name: value'",
            )
        if name.lower() in ("authorization", "dpop"):
            raise ConfigError(
                f"-H {name}: ci-shark sends this header itself",
                hint="leave it out; the token and the proof come from the login",
            )
        headers.append((name, value))
    return headers
