"""What the GitHub Actions runner and the GitHub REST API do, small enough to read.

- :func:`parse_file_commands` reads ``GITHUB_OUTPUT`` / ``GITHUB_ENV`` with the runner's
  rules (actions/runner ``SetEnvFileCommand``): ``NAME=VALUE`` or ``NAME<<DELIM`` heredocs
  that end at the first line equal to the delimiter; the newline before it is not part of
  the value; a missing delimiter is an error.
- :func:`workflow_commands` finds what the runner would act on in a log: ``::name::`` at a
  line start after leading whitespace, legacy ``##[name]`` anywhere in a line.
- :class:`FakeGitHubApi` is a loopback stand-in for the few REST endpoints ci_shark calls:
  PRs, a commit's PRs, issue comments, and issues (listed newest first, PRs among them, as
  GitHub's issues list does).
- :class:`HostileAuthServer` is an RFC 8628 server whose every text is an attack.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from support.loopback_http import JsonHandler, LoopbackFake, LoopbackServer

# -- the runner's rules ----------------------------------------------------------------------


class FileCommandError(ValueError):
    """The runner would fail the step with "Unable to process file command"."""


def parse_file_commands(text: str, *, windows: bool = False) -> dict[str, str]:
    """Read a GITHUB_OUTPUT / GITHUB_ENV file as the runner does (later names win)."""
    lines = _runner_lines(text, windows=windows)
    values: dict[str, str] = {}
    index = 0
    while index < len(lines):
        line, _ = lines[index]
        index += 1
        if not line:
            continue
        equals, heredoc = line.find("="), line.find("<<")
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            name, value = line.split("=", 1)
            if not name:
                raise FileCommandError(f"empty name in {line!r}")
            values[name] = value
            continue
        if heredoc < 0:
            raise FileCommandError(f"invalid format {line!r}")
        name, delimiter = line.split("<<", 1)
        if not name or not delimiter:
            raise FileCommandError(f"empty name or delimiter in {line!r}")
        collected: list[tuple[str, str]] = []
        while True:
            if index >= len(lines):
                raise FileCommandError(f"matching delimiter not found {delimiter!r}")
            candidate = lines[index]
            index += 1
            if candidate[0] == delimiter:
                break
            collected.append(candidate)
        # The value is the text between the heredoc line and the newline before the
        # delimiter: every line with its own newline, except the last one's.
        value = "".join(text + newline for text, newline in collected)
        if collected:
            value = value[: len(value) - len(collected[-1][1])]
        values[name] = value
    return values


def _runner_lines(text: str, *, windows: bool) -> list[tuple[str, str]]:
    """(line, newline) pairs: LF ends a line; CRLF too on Windows."""
    found: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        lf = text.find("\n", position)
        if lf < 0:
            found.append((text[position:], ""))
            break
        if windows and lf > position and text[lf - 1] == "\r":
            found.append((text[position : lf - 1], "\r\n"))
        else:
            found.append((text[position:lf], "\n"))
        position = lf + 1
    return found


def unescape_command_data(data: str) -> str:
    return data.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


@dataclass(frozen=True)
class WorkflowCommand:
    name: str
    data: str
    line: str


_V2 = re.compile(r"^::(?P<info>.*?)::(?P<data>.*)$", re.DOTALL)
_LEGACY = re.compile(r"##\[(?P<info>[^\]]*)\](?P<data>.*)$", re.DOTALL)


def workflow_commands(log: str) -> list[WorkflowCommand]:
    """Every command the runner would see in this stdout/stderr text."""
    found = []
    for line in log.splitlines():
        stripped = line.lstrip()
        match = _V2.match(stripped) if stripped.startswith("::") else None
        if match is None:
            match = _LEGACY.search(line)
        if match is None:
            continue
        name = match["info"].split(" ", 1)[0].split(";", 1)[0].lower()
        found.append(WorkflowCommand(name, unescape_command_data(match["data"]), line))
    return found


def masked_values(log: str) -> list[str]:
    return [command.data for command in workflow_commands(log) if command.name == "add-mask"]


# -- a runner's files for one step -----------------------------------------------------------


@dataclass
class RunnerFiles:
    """The temp files a runner hands to a step, and the environment naming them."""

    root: Path
    output: Path
    env_file: Path
    summary: Path
    event: Path
    temp: Path

    @classmethod
    def create(cls, root: Path, payload: Mapping[str, Any]) -> RunnerFiles:
        temp = root / "runner-temp"
        temp.mkdir()
        files = cls(
            root=root,
            output=root / "github_output",
            env_file=root / "github_env",
            summary=root / "step_summary",
            event=root / "event.json",
            temp=temp,
        )
        for path in (files.output, files.env_file, files.summary):
            path.write_text("")
        files.event.write_text(json.dumps(payload))
        return files

    def env(
        self,
        *,
        event_name: str,
        api_url: str,
        repository: str = "octo/app",
        sha: str = "a" * 40,
    ) -> dict[str, str]:
        return {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_OUTPUT": str(self.output),
            "GITHUB_ENV": str(self.env_file),
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "GITHUB_EVENT_PATH": str(self.event),
            "GITHUB_EVENT_NAME": event_name,
            "GITHUB_API_URL": api_url,
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_REPOSITORY": repository,
            "GITHUB_WORKFLOW": "deploy",
            "GITHUB_JOB": "release",
            "GITHUB_RUN_ID": "4242",
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_SHA": sha,
            "GITHUB_ACTOR": "maintainer",
            "RUNNER_TEMP": str(self.temp),
        }

    def outputs(self) -> dict[str, str]:
        return parse_file_commands(self.output.read_text(encoding="utf-8"))

    def exported_env(self) -> dict[str, str]:
        return parse_file_commands(self.env_file.read_text(encoding="utf-8"))


def pull_request_payload(
    number: int = 7, *, head_repo: str | None = "octo/app", base_repo: str = "octo/app"
) -> dict[str, Any]:
    head: dict[str, Any] = {"sha": "b" * 40, "ref": "feature"}
    head["repo"] = {"full_name": head_repo} if head_repo else None
    return {
        "action": "synchronize",
        "number": number,
        "pull_request": {
            "number": number,
            "title": "Deploy",
            "head": head,
            "base": {"sha": "c" * 40, "ref": "main", "repo": {"full_name": base_repo}},
        },
        "repository": {"full_name": base_repo},
    }


# -- the GitHub REST API ---------------------------------------------------------------------


@dataclass
class ApiCall:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGitHubApi(LoopbackFake):
    """Issue comments, issues, PRs and commits' PRs for one repository, on 127.0.0.1."""

    repository: str = "octo/app"
    token: str = "ghs_fake_token_0123456789"
    comment_status: int | None = None  # e.g. 403: every comment request is refused
    issue_status: int | None = None  # e.g. 403: every issue request is refused
    collaborators: frozenset[str] | None = None  # who may be assigned (None: anyone)
    # Set: new comments are answered; clear: each is kept (recorded) without an answer, for
    # at most 10 s, as a slow API keeps the job waiting on its POST.
    comments_answered: threading.Event | None = None
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    commit_pulls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # by id
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)  # by number
    calls: list[ApiCall] = field(default_factory=list)
    _next_id: int = 1000
    _next_number: int = 40
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FakeGitHubApi:
        api = self

        class Handler(JsonHandler):
            def _handle(self) -> None:
                status, reply = api.handle(
                    self.command,
                    self.path,
                    {key.lower(): value for key, value in self.headers.items()},
                    self.read_json(),
                )
                self.send_json(status, reply)

            do_GET = do_POST = do_PATCH = _handle

        self._server = LoopbackServer(Handler)
        return self

    def add_comment(self, number: int, body: str, *, user: str, user_type: str) -> int:
        with self._lock:
            self._next_id += 1
            self.comments[self._next_id] = {
                "id": self._next_id,
                "issue": number,
                "body": body,
                "user": {"login": user, "type": user_type},
            }
            return self._next_id

    def comments_on(self, number: int) -> list[dict[str, Any]]:
        return [c for c in self.comments.values() if c["issue"] == number]

    def add_issue(
        self, title: str, body: str, *, user: str, assignees: list[str] | None = None
    ) -> dict[str, Any]:
        with self._lock:
            self._next_number += 1
            issue = {
                "number": self._next_number,
                "title": title,
                "body": body,
                "state": "open",
                "state_reason": None,
                "user": {"login": user, "type": "Bot" if user.endswith("[bot]") else "User"},
                "assignees": [{"login": name} for name in assignees or []],
            }
            self.issues[self._next_number] = issue
            return issue

    def _issues(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> Any:
        """GET/POST /issues and PATCH /issues/N as GitHub answers them, or None."""
        if path == "/issues" and method == "GET":
            state = query.get("state", ["open"])[0]
            listed = [i for i in self.issues.values() if state == "all" or i["state"] == state]
            listed.sort(key=lambda issue: -issue["number"])  # sort=created, direction=desc
            page = int(query.get("page", ["1"])[0])
            per_page = int(query.get("per_page", ["30"])[0])
            return 200, listed[(page - 1) * per_page : page * per_page]
        if path == "/issues" and method == "POST":
            assignees = body.get("assignees") or []
            if self.collaborators is not None and not set(assignees) <= self.collaborators:
                return 422, {"message": "Validation Failed", "errors": [{"field": "assignees"}]}
            created = self.add_issue(
                body["title"], body["body"], user="github-actions[bot]", assignees=assignees
            )
            return 201, created
        match = re.fullmatch(r"/issues/(\d+)", path)
        if match and method == "PATCH":
            issue = self.issues.get(int(match[1]))
            if issue is None:
                return 404, {"message": "Not Found"}
            issue.update(
                {k: v for k, v in body.items() if k in ("title", "body", "state", "state_reason")}
            )
            return 200, issue
        return None

    def handle(
        self, method: str, raw_path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, Any]:
        parts = urlsplit(raw_path)
        self.calls.append(ApiCall(method, parts.path, parse_qs(parts.query), headers, body))
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"message": "Bad credentials"}
        if parts.path == "/user":  # as for GITHUB_TOKEN, an installation token
            return 403, {"message": "Resource not accessible by integration"}
        prefix = f"/repos/{self.repository}"
        if not parts.path.startswith(prefix + "/"):
            return 404, {"message": "Not Found"}
        path = parts.path[len(prefix) :]
        if match := re.fullmatch(r"/pulls/(\d+)", path):
            pull = self.pulls.get(int(match[1]))
            return (200, pull) if pull else (404, {"message": "Not Found"})
        if match := re.fullmatch(r"/commits/([0-9a-f]+)/pulls", path):
            return 200, self.commit_pulls.get(match[1], [])
        if "comments" in path and self.comment_status is not None:
            return self.comment_status, {"message": "Resource not accessible by integration"}
        if path.startswith("/issues") and "comments" not in path:
            if self.issue_status is not None:
                return self.issue_status, {"message": "Resource not accessible by integration"}
            answer = self._issues(method, path, parse_qs(parts.query), body)
            if answer is not None:
                status, reply = answer
                return status, reply
        if match := re.fullmatch(r"/issues/(\d+)/comments", path):
            number = int(match[1])
            if method == "POST":
                comment_id = self.add_comment(
                    number, body["body"], user="github-actions[bot]", user_type="Bot"
                )
                if self.comments_answered is not None:
                    self.comments_answered.wait(10)
                return 201, self.comments[comment_id]
            page = int(parse_qs(parts.query).get("page", ["1"])[0])
            per_page = int(parse_qs(parts.query).get("per_page", ["30"])[0])
            found = self.comments_on(number)
            return 200, found[(page - 1) * per_page : page * per_page]
        if match := re.fullmatch(r"/issues/comments/(\d+)", path):
            comment = self.comments.get(int(match[1]))
            if comment is None or method != "PATCH":
                return 404, {"message": "Not Found"}
            comment["body"] = body["body"]
            return 200, comment
        return 404, {"message": "Not Found"}


@contextmanager
def fake_github_api(**options: Any) -> Iterator[FakeGitHubApi]:
    api = FakeGitHubApi(**options).start()
    try:
        yield api
    finally:
        api.stop()


# -- an authorization server whose texts are attacks -----------------------------------------

HOSTILE_USER_CODE = "<img src=x>[a](https://evil.example)@admin ##[error]x"  # <= 64 chars
HOSTILE_URI = "https://127.0.0.1/device?x=1)](https://evil.example/phish)&y=[*x*]"
HOSTILE_DESCRIPTION = (
    "denied\n::error::forged\r\n##[warning]forged too <script>alert(1)</script> "
    "[click](https://evil.example) @everyone ::add-mask::x"
)


class HostileAuthServer(LoopbackFake):
    """Metadata, a device code with hostile texts, then ``access_denied`` with a hostile
    description on the first poll. No DPoP demands: it only attacks the rendering."""

    def __init__(self, *, verification_uri: str = "https://auth.example/device") -> None:
        self.verification_uri = verification_uri

    def start(self) -> HostileAuthServer:
        owner = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/.well-known/"):
                    self.send_json(
                        200,
                        {
                            "issuer": owner.url,
                            "device_authorization_endpoint": owner.url + "/device",
                            "token_endpoint": owner.url + "/token",
                        },
                    )
                else:
                    self.send_json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))  # a form
                if self.path == "/device":
                    self.send_json(
                        200,
                        {
                            "device_code": "hostile-device-code-CANARY-7f3a",
                            "user_code": HOSTILE_USER_CODE,
                            "verification_uri": owner.verification_uri,
                            "verification_uri_complete": HOSTILE_URI,
                            "expires_in": 60,
                            "interval": 1,
                        },
                    )
                else:
                    self.send_json(
                        400, {"error": "access_denied", "error_description": HOSTILE_DESCRIPTION}
                    )

        self._server = LoopbackServer(Handler)
        return self
