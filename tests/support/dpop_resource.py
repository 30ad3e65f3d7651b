"""A DPoP-protected API on 127.0.0.1 that checks every proof as a resource server must
(RFC 9449 §4.3, §7), with joserfc (``dpop_proofs.verify_proof``), not with ci_shark's code:
``htm``, ``htu`` (its own URL, without the query), ``ath``, ``iat``, a ``jti`` used once,
the nonce it demands, and the key the token is bound to. It notes each request's
connection (the client's address), so a test can tell keep-alive from one per request.
Bodies stream both ways, so a test can send and fetch hundreds of megabytes through a
client without either side holding them.

- ``/echo`` (any method): JSON with the method, the target, the body's length and digest.
- ``/upload`` (PUT, POST): the same for a body of any size, read as it streams.
- ``/download?n=N`` (GET): N bytes (byte i is ``i % 256``); ``&chunked=1`` without a
  Content-Length.
- ``/redirect?to=URL`` (GET): ``302`` to ``to``.

Tokens are the ones :meth:`accept` was given, each bound to its key thumbprint. What every
request carried (its headers included) is in :attr:`seen`, for the test: the answers
never echo a header. Headers and body go out in two writes, so it sets TCP_NODELAY.
"""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from support.dpop_proofs import ProofRefused, verify_proof
from support.loopback_http import LoopbackFake, LoopbackServer

PIECE = bytes(range(256)) * 256  # 64 KiB of the download pattern


@dataclass
class Seen:
    method: str
    target: str
    headers: list[tuple[str, str]]
    outcome: str  # "ok", or why the request was refused
    claims: dict[str, Any] = field(default_factory=dict)
    body_bytes: int = 0
    connection: tuple[str, int] | None = None  # the client's address: one per connection


class DPoPResource(LoopbackFake):
    def __init__(self, *, require_nonce: bool = True) -> None:
        self.require_nonce = require_nonce
        self.nonce = "n-" + hashlib.sha256(str(id(self)).encode()).hexdigest()[:16]
        self.accepted: dict[str, str] = {}  # token -> jkt
        self.jtis: set[str] = set()
        self.seen: list[Seen] = []
        self.lock = threading.Lock()

    def start(self) -> DPoPResource:
        resource = self

        class Handler(_Handler):
            owner = resource

        self._server = LoopbackServer(Handler)
        return self

    def accept(self, access_token: str, jkt: str) -> None:
        with self.lock:
            self.accepted[access_token] = jkt

    def rotate_nonce(self) -> None:
        with self.lock:
            self.nonce = "n-" + hashlib.sha256(self.nonce.encode()).hexdigest()[:16]

    def outcomes(self) -> list[str]:
        with self.lock:
            return [seen.outcome for seen in self.seen]


class _Handler(BaseHTTPRequestHandler):
    owner: DPoPResource
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        return

    def handle_one_request(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        seen = Seen(self.command, self.path, list(self.headers.items()), "ok")
        seen.connection = self.client_address
        with self.owner.lock:
            self.owner.seen.append(seen)
        refusal = self._refusal(seen)
        if refusal is not None:
            seen.outcome = refusal
            challenge = f'DPoP error="{refusal}"' if refusal != "no_credentials" else "DPoP"
            self._reply(401, {"error": refusal}, [("WWW-Authenticate", challenge)], close=True)
            return
        self._serve(seen)

    def _refusal(self, seen: Seen) -> str | None:
        """Why the request is refused (an RFC 9449 error code), or None."""
        authorizations = self.headers.get_all("Authorization") or []
        proofs = self.headers.get_all("DPoP") or []
        if len(authorizations) != 1 or len(proofs) != 1:
            return "no_credentials"
        scheme, _, token = authorizations[0].partition(" ")
        with self.owner.lock:
            jkt = self.owner.accepted.get(token)
            nonce = self.owner.nonce if self.owner.require_nonce else None
        if scheme != "DPoP" or jkt is None:
            return "invalid_token"
        try:
            claims = verify_proof(
                proofs[0],
                method=self.command,
                url=self.owner.url + self.path,
                access_token=token,
                nonce=nonce,
            )
        except ProofRefused as refused:
            return refused.error
        with self.owner.lock:
            replayed = claims["jti"] in self.owner.jtis
            self.owner.jtis.add(claims["jti"])
        if replayed or claims["jkt"] != jkt:
            return "invalid_dpop_proof"
        seen.claims = claims
        return None

    def _serve(self, seen: Seen) -> None:
        split = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(split.query))
        if split.path == "/download":
            self._download(int(query.get("n", "0")), chunked=query.get("chunked") == "1")
        elif split.path == "/redirect":
            self._reply(302, {"to": query.get("to", "/")}, [("Location", query.get("to", "/"))])
        elif split.path in ("/echo", "/upload"):
            length, digest = self._read_body()
            seen.body_bytes = length
            answer = {"method": self.command, "target": self.path, "bytes": length}
            self._reply(200, {**answer, "sha256": digest})
        else:
            self._reply(404, {"error": "not_found"})

    def _read_body(self) -> tuple[int, str]:
        digest = hashlib.sha256()
        length = 0
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                length += self._read_into(digest, size)
                self.rfile.readline(3)
        else:
            length = self._read_into(digest, int(self.headers.get("Content-Length") or 0))
        return length, digest.hexdigest()

    def _read_into(self, digest: Any, size: int) -> int:
        left = size
        while left:
            piece = self.rfile.read(min(left, 1 << 16))
            if not piece:
                raise ConnectionError("the body ended early")
            digest.update(piece)
            left -= len(piece)
        return size

    def _download(self, n: int, *, chunked: bool) -> None:
        self.send_response(200)
        self._common_headers()
        self.send_header("Content-Type", "application/octet-stream")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(n))
        self.end_headers()
        while n > 0:
            piece = PIECE[: min(n, len(PIECE))]
            n -= len(piece)
            self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _reply(
        self,
        status: int,
        body: dict[str, Any],
        headers: list[tuple[str, str]] | None = None,
        *,
        close: bool = False,
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self._common_headers()
        for name, value in headers or []:
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:  # a refused request's body is never read: the connection cannot go on
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _common_headers(self) -> None:
        if self.owner.require_nonce:
            self.send_header("DPoP-Nonce", self.owner.nonce)
        self.send_header("Set-Cookie", "upstream-session=s3ss10n; Path=/")
