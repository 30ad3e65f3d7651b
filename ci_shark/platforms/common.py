"""What the CI platforms share: environment values, the programs on the job's PATH, and
the lifecycle of a "marked note" (a PR comment, an MR note, an issue). A CI's REST API is
:mod:`ci_shark.platforms.rest`.

A marked note is ours when BOTH hold: its first line is our hidden marker, and it was
written by the account our token posts as. A marker alone proves nothing (anyone can paste
it into a comment), and editing someone else's note would put the approval link into a
comment its author can change afterwards. This rule is decided here, once, for every CI.
A post cut before its answer (the job cancelled meanwhile) may still have made the note:
the end finds it by that rule and edits it, instead of leaving it asking for approval.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol


def env_value(env: Mapping[str, str], name: str) -> str | None:
    """A CI variable, stripped; None when unset or empty."""
    value = env.get(name, "").strip()
    return value or None


def find_program(name: str, env: Mapping[str, str]) -> str | None:
    """``name`` on the job's PATH, absolute folders only: an empty or relative entry means
    the working directory, a checkout, where a pull request could plant a program of that
    name to be handed our secrets."""
    folders = [folder for folder in env.get("PATH", "").split(os.pathsep) if os.path.isabs(folder)]
    return shutil.which(name, path=os.pathsep.join(folders)) if folders else None


@dataclass(frozen=True)
class Note:
    id: int
    author: str | None  # the account that wrote it, as the API names it
    body: str


class NoteApiError(Exception):
    """The API refused or failed; the message is ours and says what to fix. ``status``:
    the HTTP status when there was an answer (decide on it, never on the message)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NoteApi(Protocol):
    """One CI's notes on one thread (a PR, an MR, an issue)."""

    def own_author(self) -> str | None:
        """The account our token posts as; None when the API cannot tell."""

    def notes(self) -> Iterable[Note]:
        """The thread's notes, newest first (a bounded number of pages)."""

    def create(self, body: str) -> int:
        """Post a new note; its id."""

    def edit(self, note_id: int, body: str) -> None:
        """Replace a note's body; NoteApiError with status 403/404 when it cannot."""


class MarkedNote:
    """What we know of our note: found by marker and author, then created or edited; every
    failure is one warning (the approval never depends on a note), after which the note is
    left alone. Each write is given the API to reach it with (the last ones, at the end of
    a run, on a shorter budget)."""

    def __init__(self, marker: str, *, warn: Callable[[NoteApiError], None]) -> None:
        self._marker = marker
        self._warn = warn
        self.note_id: int | None = None
        self.adopted = False  # the note was found (an earlier attempt's), not created
        self._looked = False
        self._cut = False  # a post got no answer (a cancellation cut it): the note may exist
        self.broken = False

    @property
    def exists(self) -> bool:
        """Whether there is a note for the end to edit: one we know, or one whose post was
        cut before its answer (it is then found by its marker)."""
        return self.note_id is not None or self._cut

    def write(self, api: NoteApi, markdown: str) -> bool:
        """Post or update the note with ``markdown`` under the marker; True when it did."""
        if self.broken:
            return False
        body = f"{self._marker}\n{markdown}"
        try:
            if not self._looked:
                self._looked = True
                self.note_id = self._find(api)
                self.adopted = self.note_id is not None
            elif self._cut:
                self._cut = False
                self.note_id = self._find(api)  # what the cut post made, if it got there
                if self.note_id is None:
                    return False  # it did not: nothing asks for approval, nothing to edit
            if self.note_id is not None:
                try:
                    api.edit(self.note_id, body)
                    return True
                except NoteApiError as refused:
                    if refused.status not in (403, 404):
                        raise
                    self.note_id = None  # deleted meanwhile, or no longer ours: a new one
                    self.adopted = False
            self._cut = True  # until its answer is read
            self.note_id = api.create(body)
            self._cut = False
            return True
        except NoteApiError as failure:
            self._cut = False  # answered: no note was made
            self.broken = True
            self._warn(failure)
            return False

    def _find(self, api: NoteApi) -> int | None:
        author = api.own_author()
        if author is None:
            return None  # cannot tell whose a note is: never adopt one
        for note in api.notes():
            if note.body.split("\n", 1)[0] == self._marker and note.author == author:
                return note.id
        return None
