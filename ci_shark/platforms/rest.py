"""A CI's REST API (GitHub's, GitLab's): the one helper both use; each CI supplies only
its URL, its headers and how it names the token.

Its rules:

- Built on the HTTP base (:mod:`ci_shark.oauth.http`): the run's trust (or the CI's own
  CA), a proxy when one is set but never for loopback, no redirects (a redirect must not
  carry the token elsewhere), the byte cap, and a budget for each call as a whole. The
  last calls of a run use the same API :meth:`~RestApi.within` a shorter budget, said
  where they are made: on a cancellation the runner's grace period is a few seconds.
- The token is a :class:`Secret`, masked before its first use, revealed only into the
  header of each request: never into the client's defaults, a message or a log line.
- JSON in and out. A listing is read page by page (100 a page), lazily, until a short
  page or ``max_pages``.
- Every failure is one :class:`NoteApiError` in our words (never the server's text, never
  the URL), with the HTTP status when there was one: callers decide on ``status``, never
  on the message.
"""

from __future__ import annotations

import copy
import json
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import httpx

from ci_shark.oauth.http import HttpClient, SendFailed
from ci_shark.platforms.common import NoteApiError
from ci_shark.secret import Secret

PAGE_SIZE = 100
# A listing of 100 comments of up to 64 KiB each, JSON-escaped, with its URLs and users.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
API_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
_Api = TypeVar("_Api", bound="RestApi")


class RestApi:
    """One CI's REST API with one token: one connection for the run, bounded calls."""

    def __init__(
        self,
        api_url: str,
        *,
        name: str,
        token: Secret,
        token_header: tuple[str, str],
        headers: Mapping[str, str],
        transport: httpx.BaseTransport | None,
        budget_s: float,
        trust: Callable[[], ssl.SSLContext] | None = None,
        mask: Callable[[Sequence[Secret]], None] | None = None,
        refused: Callable[[int, str], str] | None = None,
    ) -> None:
        """``token_header`` is the header's name and what comes before the token in it
        (``("Authorization", "Bearer ")``); ``refused(status, doing)`` words an error
        status when the CI has more to say than ``HTTP 403 from GET /path``."""
        if mask is not None:
            mask([token])
        self.name = name
        self._base = api_url.rstrip("/")
        self._token = token
        self._token_header = token_header
        self._budget_s = budget_s
        self._refused = refused or (lambda status, doing: f"HTTP {status} from {doing}")
        self._http = HttpClient(
            trust=trust,
            transport=transport,
            timeout=API_TIMEOUT,
            max_body_bytes=MAX_ANSWER_BYTES,
            headers=headers,
        )

    def close(self) -> None:
        self._http.close()

    def within(self: _Api, budget_s: float) -> _Api:
        """The same API, on the same connection, with another budget for each call."""
        shorter = copy.copy(self)
        shorter._budget_s = budget_s
        return shorter

    def call(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        *,
        doing: str | None = None,
    ) -> Any:
        """``path`` (below the API's URL) as JSON, None for an empty body. ``doing`` names
        the call in messages (``GET /path`` when not given)."""
        doing = doing or f"{method} {path}"
        deadline = time.monotonic() + self._budget_s
        name, prefix = self._token_header
        request = self._http.build(
            method,
            self._base + path,
            deadline=deadline,
            json=payload,
            params=params,
            headers={name: prefix + self._token.reveal()},
        )
        try:
            with self._http.send(request, deadline=deadline) as answer:
                status, raw = answer.response.status_code, answer.body()
        except SendFailed as failure:
            raise NoteApiError(f"{self.name} could not be reached ({failure})") from None
        if status >= 300:
            raise NoteApiError(self._refused(status, doing), status=status)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise NoteApiError(
                f"{self.name} answered {doing} with something other than JSON", status=status
            ) from None

    def pages(
        self, path: str, params: Mapping[str, str], max_pages: int, *, doing: str | None = None
    ) -> Iterator[Any]:
        """The items of a listing, page by page, up to ``max_pages``; fetched lazily, so a
        search that finds its item early asks for no more."""
        for page in range(1, max_pages + 1):
            paged = {**params, "per_page": str(PAGE_SIZE), "page": str(page)}
            items = self.call("GET", path, params=paged, doing=doing) or []
            if not isinstance(items, list):
                raise NoteApiError(f"{self.name} answered a listing with something else")
            yield from items
            if len(items) < PAGE_SIZE:
                return
