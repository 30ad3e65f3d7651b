"""The one writer of the job log. Every platform writes through it; none writes a stream itself.

Its rules, which every CI runner depends on:

1. A command for the runner (``::add-mask::``, ``::warning::``, ``##vso[…]``, a GitLab
   section marker) always starts a line of its own. Runners read commands line by line, at
   the line start: a command written after an unfinished line is printed, not obeyed — an
   ``::add-mask::`` then shows the very secret it was meant to hide.
2. Our own text is never read as a command: a line that would start with ``::`` is
   prefixed, ``##`` (legacy GitHub commands and Azure's, recognised anywhere in a line) is
   split, and line breaks inside it become spaces.
3. Only a person at a terminal gets a countdown redrawn in place (an unfinished line). CI
   logs never do, even when the runner gives the step a terminal (nektos act, Buildkite's
   PTY): a CI log is read line by line, later, by people and by the runner.
"""

from __future__ import annotations

import re
from typing import TextIO

from ci_shark.safe_text import split_hashes

_CLEAR_LINE = "\r\x1b[2K"  # back to column 0, erase: the countdown redraws in place
_COMMAND_START = re.compile(r"^\s*::")


def neutralise(line: str) -> str:
    """A line of our own (or server text already made one line) that no runner acts on."""
    line = split_hashes(line.replace("\r", " ").replace("\n", " "))
    if _COMMAND_START.match(line):
        return "ci_shark: " + line.lstrip()
    return line


class LogWriter:
    """Lines and commands on the log's streams; a countdown only where a person watches."""

    def __init__(
        self,
        lines: TextIO,
        commands: TextIO | None = None,
        *,
        live: bool = False,
        color: bool = False,
    ) -> None:
        self._lines = lines
        self._commands = commands or lines
        self.live = live  # a person at a terminal, not a CI log
        self.color = live and color
        self._open: TextIO | None = None  # a stream whose last line is unfinished

    def line(self, text: str) -> None:
        """One line of our text: ended, on a line of its own, never a command."""
        self._write(self._lines, neutralise(text))

    def command(self, text: str, *, among_lines: bool = False) -> None:
        """A command for the runner, at the start of a line of its own; ``among_lines``
        for one that must keep its place among the log lines (a group or section start),
        written on their stream."""
        self._write(self._lines if among_lines else self._commands, text)

    def countdown(self, text: str) -> None:
        """Redraw the unfinished line in place; a no-op unless a person watches."""
        if not self.live:
            return
        self._lines.write(_CLEAR_LINE + neutralise(text))
        self._lines.flush()
        self._open = self._lines

    def end_line(self) -> None:
        """Finish an unfinished line (the countdown stays as the last state shown)."""
        if self._open is not None:
            self._open.write("\n")
            self._open.flush()
            self._open = None

    def styled(self, text: str, sgr: str) -> str:
        """Bold, dim...: only for a person at a terminal who did not ask for NO_COLOR."""
        return f"\x1b[{sgr}m{text}\x1b[0m" if self.color else text

    def _write(self, stream: TextIO, text: str) -> None:
        self.end_line()
        stream.write(text + "\n")
        stream.flush()
