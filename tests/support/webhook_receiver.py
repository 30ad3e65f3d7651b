"""A loopback incoming webhook: records every POST (path, headers, JSON body) and answers
as told: 200, an error status, or only after a delay (a slow or hung receiver).

Its path carries a token, as Slack's and Teams' do: the URL is a secret, and tests check
that neither it nor the token reaches a log.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from support.loopback_http import JsonHandler, LoopbackFake, LoopbackServer

WEBHOOK_TOKEN = "T0CANARY/B0CANARY/hookSecret4Dd8c2e9"


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class WebhookReceiver(LoopbackFake):
    status: int = 200
    answer: bytes = b"ok"
    delay_s: float = 0.0  # before answering (a slow receiver), cut short by stop()
    posts: list[Post] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def hook_url(self) -> str:
        return f"{self.url}/services/{WEBHOOK_TOKEN}"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                receiver.posts.append(
                    Post(
                        self.path,
                        {name.lower(): value for name, value in self.headers.items()},
                        self.read_json(),
                    )
                )
                if receiver.delay_s and receiver._stopping.wait(receiver.delay_s):
                    return
                self.send_response(receiver.status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(receiver.answer)))
                self.end_headers()
                self.wfile.write(receiver.answer)

        self._server = LoopbackServer(Handler)
        return self

    def stop(self) -> None:
        self._stopping.set()
        super().stop()

    def bodies(self) -> list[Any]:
        return [post.body for post in self.posts]
