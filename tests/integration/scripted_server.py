"""An authorization server whose every answer the test writes: for hostile servers and
approvers, on 127.0.0.1.

Each endpoint answers from a script of :class:`Answer` (the last one repeats); the metadata
names this server as its issuer unless told otherwise; every request is recorded with its
form, so a test can check what was sent (a revocation, a second device code) and what not.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from support.loopback_http import JsonHandler, LoopbackFake, LoopbackServer

DEVICE_CODE = "dc-scripted-CANARY-5e0f1a2b3c4d"
HELD_AT_MOST_S = 30.0


@dataclass
class Answer:
    status: int = 200
    body: Any = None  # JSON
    raw: bytes | None = None  # sent as is instead of the JSON
    headers: dict[str, str] = field(default_factory=dict)
    # Sent only once this is set (the request is recorded at once): a request in flight
    # that the test lets finish when it chooses. Bounded: HELD_AT_MOST_S, then sent anyway.
    held: threading.Event | None = None


def device_answer(**overrides: Any) -> Answer:
    body: dict[str, Any] = {
        "device_code": DEVICE_CODE,
        "user_code": "WDJB-MJHT",
        "verification_uri": "{url}/device",
        "verification_uri_complete": "{url}/device?user_code=WDJB-MJHT",
        "expires_in": 60,
        "interval": 1,
    }
    body.update(overrides)
    return Answer(body={k: v for k, v in body.items() if v is not None})


def token_answer(**overrides: Any) -> Answer:
    body: dict[str, Any] = {"access_token": "at-scripted-1", "token_type": "Bearer"}
    body.update(overrides)
    return Answer(body={k: v for k, v in body.items() if v is not None})


def id_token(claims: dict[str, Any]) -> str:
    """An id_token with these claims (ci_shark does not check the signature: it came
    straight from the token endpoint; it checks iss, aud and exp)."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'ES256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def gzip_layers(data: bytes, layers: int) -> bytes:
    for _ in range(layers):
        data = gzip.compress(data, compresslevel=9)
    return data


def nested_json(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@dataclass
class Request:
    method: str
    path: str
    form: dict[str, list[str]]
    authorization: str | None = None  # the Authorization header (HTTP Basic client auth)


class ScriptedServer(LoopbackFake):
    def __init__(
        self,
        *,
        device: list[Answer] | None = None,
        token: list[Answer] | None = None,
        metadata: Answer | None = None,
        userinfo: Answer | None = None,
        issuer: str | None = None,
    ) -> None:
        self.scripts: dict[str, list[Answer]] = {
            "/device": device or [device_answer()],
            "/token": token or [token_answer()],
            "/revoke": [Answer(body={})],
            "/userinfo": [userinfo or Answer(404, {"error": "not_found"})],
        }
        self.metadata = metadata
        self.issuer = issuer
        self.requests: list[Request] = []
        self._lock = threading.Lock()

    def start(self) -> ScriptedServer:
        owner = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                owner.record(self.command, self.path, b"")
                if self.path.startswith("/.well-known/oauth-authorization-server"):
                    self.answer(owner.metadata_answer())
                elif self.path in owner.scripts:  # /userinfo, GitHub's /api/v3/user, ...
                    self.answer(owner.next(self.path))
                else:
                    self.send_json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.record(self.command, self.path, raw, self.headers.get("Authorization"))
                if self.path in owner.scripts:
                    self.answer(owner.next(self.path))
                else:
                    self.send_json(404, {"error": "not_found"})

            def answer(self, answer: Answer) -> None:
                if answer.held is not None:
                    answer.held.wait(HELD_AT_MOST_S)
                data = answer.raw
                if data is None:
                    text = json.dumps(answer.body).replace("{url}", owner.url)
                    data = text.encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self._server = LoopbackServer(Handler)
        return self

    def metadata_answer(self) -> Answer:
        if self.metadata is not None:
            return self.metadata
        return Answer(
            body={
                "issuer": self.issuer or self.url,
                "device_authorization_endpoint": self.url + "/device",
                "token_endpoint": self.url + "/token",
                "revocation_endpoint": self.url + "/revoke",
                "userinfo_endpoint": self.url + "/userinfo",
            }
        )

    def next(self, path: str) -> Answer:
        with self._lock:
            script = self.scripts[path]
            return script.pop(0) if len(script) > 1 else script[0]

    def record(self, method: str, path: str, raw: bytes, authorization: str | None = None) -> None:
        form = parse_qs(raw.decode("utf-8", "replace")) if raw else {}
        with self._lock:
            self.requests.append(
                Request(method, path.split("?", maxsplit=1)[0], form, authorization)
            )

    def posts(self, path: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST" and r.path == path]
