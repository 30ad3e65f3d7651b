"""A loopback fake of the GitLab REST API the integration and engine tests talk to.

``GitLabNotesServer``: the MR notes endpoints of the GitLab REST API (list, create, edit,
and ``GET /user``, who the token is),
on 127.0.0.1, stdlib only, over TLS when given a server context. It records every request
(method, path, PRIVATE-TOKEN header, the client's port: one port, one connection) and can
answer every request with a fixed status (401, 403, ...) instead.
"""

from __future__ import annotations

import re
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from support.loopback_http import JsonHandler, LoopbackFake, LoopbackServer

# The predefined variables of a job of project team/app (id 7) on gitlab.example.com, for
# tests that play that job; each adds CI_API_V4_URL and the pipeline's own (MR, branch).
JOB_ENV = {
    "GITLAB_CI": "true",
    "CI_PROJECT_ID": "7",
    "CI_PROJECT_PATH": "team/app",
    "CI_PROJECT_URL": "https://gitlab.example.com/team/app",
    "CI_PIPELINE_URL": "https://gitlab.example.com/team/app/-/pipelines/99",
    "CI_JOB_URL": "https://gitlab.example.com/team/app/-/jobs/1234",
    "CI_JOB_NAME": "deploy",
    "CI_COMMIT_SHA": "0123456789abcdef0123456789abcdef01234567",
    "GITLAB_USER_LOGIN": "maria",
}
# The user of the project access token the tests use: it writes, and may edit, our notes.
TOKEN_USER = {"id": 4242, "username": "project_7_bot_ci"}
_NOTES = re.compile(
    r"^/api/v4/projects/(?P<project>[^/]+)/merge_requests/(?P<iid>\d+)/notes(?:/(?P<id>\d+))?$"
)


@dataclass
class Recorded:
    method: str
    path: str
    token: str | None
    body: dict[str, Any] | None
    client_port: int


@dataclass
class GitLabNotesServer(LoopbackFake):
    status: int | None = None  # answer everything with this status, when set
    tls: ssl.SSLContext | None = None
    notes: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/v4"

    def notes_of(self, project: str, iid: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(note) for note in self.notes.get((project, iid), [])]

    def start(self) -> GitLabNotesServer:
        fake = self

        class Handler(JsonHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as GitLab: connection reuse shows

            def _handle(self) -> None:
                body = self.read_json()
                parts = urlsplit(self.path)
                with fake._lock:
                    fake.requests.append(
                        Recorded(
                            self.command,
                            parts.path,
                            self.headers.get("PRIVATE-TOKEN"),
                            body,
                            self.client_address[1],
                        )
                    )
                if fake.status is not None:
                    self.send_json(fake.status, {"message": f"{fake.status} fake"})
                    return
                if parts.path == "/api/v4/user":
                    self.send_json(200, TOKEN_USER)
                    return
                match = _NOTES.match(parts.path)
                if not match:
                    self.send_json(404, {"message": "404 Not Found"})
                    return
                key = (match["project"], match["iid"])
                with fake._lock:
                    notes = fake.notes.setdefault(key, [])
                    if self.command == "GET":
                        page = int(parse_qs(parts.query).get("page", ["1"])[0])
                        newest = sorted(notes, key=lambda note: -int(note["id"]))
                        self.send_json(200, newest[(page - 1) * 100 : page * 100])
                    elif self.command == "POST" and body:
                        note = {
                            "id": 1000 + len(notes),
                            "body": body["body"],
                            "system": False,
                            "author": TOKEN_USER,
                        }
                        notes.append(note)
                        self.send_json(201, note)
                    elif self.command == "PUT" and body and match["id"]:
                        for note in notes:
                            if note["id"] == int(match["id"]):
                                note["body"] = body["body"]
                                self.send_json(200, note)
                                return
                        self.send_json(404, {"message": "404 Note Not Found"})
                    else:
                        self.send_json(400, {"message": "bad request"})

            do_GET = do_POST = do_PUT = _handle

        self._server = LoopbackServer(Handler, tls=self.tls)
        return self
