"""GitHub's REST API with the job's token: its URL and headers on the one CI REST helper
(:mod:`ci_shark.platforms.rest`), the account it posts as, the calls about pull requests,
and how a refusal is told.

Everything the API answers is untrusted: a field is used only when it has the type we
expect, and never printed unless it is a number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import httpx

from ci_shark.platforms.common import Note, NoteApiError
from ci_shark.platforms.rest import RestApi
from ci_shark.secret import Secret

API_VERSION = "2022-11-28"
API_BUDGET_S = 15.0
# On cancellation the runner sends SIGINT, then SIGTERM 7.5 s later, then SIGKILL: the
# closing edit of a comment or issue must fit in that window.
FINISH_BUDGET_S = 3.0
# The account GITHUB_TOKEN posts as. Its installation token cannot ask GET /user.
ACTIONS_BOT = "github-actions[bot]"


class GitHubApi(RestApi):
    """One repository's side of the API, with the job's token."""

    def __init__(
        self,
        api_url: str,
        token: Secret,
        transport: httpx.BaseTransport | None,
        mask: Callable[[Sequence[Secret]], None] | None = None,
    ) -> None:
        super().__init__(
            api_url,
            name="the GitHub API",
            token=token,
            token_header=("Authorization", "Bearer "),
            headers={"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION},
            transport=transport,
            budget_s=API_BUDGET_S,
            mask=mask,
        )
        # Shared with the copies `within` makes: the account is asked once per run.
        self._own_login: dict[str, str | None] = {}

    def own_login(self) -> str | None:
        """The account our token posts as (asked once); None when the API cannot tell."""
        if "login" not in self._own_login:
            try:
                data = self.call("GET", "/user")
            except NoteApiError as refused:
                if refused.status != 403:
                    return None
                data = {"login": ACTIONS_BOT}  # GITHUB_TOKEN may not read /user: the bot
            login = dig(data, "login")
            self._own_login["login"] = login if isinstance(login, str) else None
        return self._own_login["login"]

    def head_repository(self, repository: str, number: int) -> str | None:
        """The repository a PR's head lives in; None when GitHub names none (a deleted
        fork). NoteApiError when the PR cannot be read."""
        pull_request = self.call("GET", f"/repos/{repository}/pulls/{number}")
        return repository_name(dig(pull_request, "head", "repo"))

    def open_pull_request_of(self, repository: str, sha: str) -> tuple[int, str | None] | None:
        """The open PR whose head IS this commit (a PR that merely contains it is someone
        else's conversation): its number and head repository."""
        data = self.call("GET", f"/repos/{repository}/commits/{sha}/pulls")
        for item in data if isinstance(data, list) else []:
            number = pull_request_number(dig(item, "number"))
            if number and dig(item, "state") == "open" and dig(item, "head", "sha") == sha:
                return number, repository_name(dig(item, "head", "repo"))
        return None


def refused(doing: str, needs: str, failure: NoteApiError) -> str:
    """A channel the API refused, in one warning: the permission when it is one."""
    if failure.status in (401, 403, 404):
        return (
            f"could not {doing} ({failure}). The job's token needs {needs}. "
            "Approve from the link in this log instead."
        )
    return f"could not {doing} ({failure}); use the link in the log"


def dig(data: object, *keys: str) -> object:
    """``data[k1][k2]…`` through JSON objects; None where one is missing or not an object."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def pull_request_number(value: object) -> int | None:
    """A PR number as GitHub writes one: a positive integer (not a bool, not a string)."""
    return value if type(value) is int and value > 0 else None


def repository_name(repo: object) -> str | None:
    """A repository object's ``full_name`` (``octo/app``); None when it names none."""
    name = dig(repo, "full_name")
    return name if isinstance(name, str) else None


def note_of(item: object, id_field: str) -> Note | None:
    """A comment or an issue the API answered with, as a :class:`Note`: its ``id_field``
    an integer, its author's login; None when it is not one."""
    number = dig(item, id_field)
    if not isinstance(number, int):
        return None
    login = dig(item, "user", "login")
    return Note(number, login if isinstance(login, str) else None, str(dig(item, "body") or ""))
