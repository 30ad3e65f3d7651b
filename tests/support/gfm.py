"""Markdown as GitHub renders it: cmark-gfm (the parser GitHub uses, via cmarkgfm), then
the filters GitHub runs on the HTML it gives: @mentions and #references in text that is
not inside a link or code. Tests check what an approver would see and what would notify
or link someone, not strings in the markdown source.

The HTML is rendered with raw HTML allowed, so any tag a hostile text smuggled in shows up
as a tag here (GitHub would keep a sanitised subset of them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

import cmarkgfm
from cmarkgfm.cmark import Options

# github/github's mention filter: an @ not preceded by a word char, a login, maybe /team.
_MENTION = re.compile(r"(?<![A-Za-z0-9_`.@/-])@([A-Za-z0-9][A-Za-z0-9-]*(?:/[A-Za-z0-9_.-]+)?)")
# Issue references: #123, GH-123, owner/repo#123.
_REFERENCE = re.compile(r"(?<![A-Za-z0-9_&/-])(?:[\w.-]+/[\w.-]+)?(?:#|GH-)\d+\b")
# What our own markdown may contain; anything else came from text we did not write.
OUR_TAGS = frozenset(
    {
        "h3",
        "p",
        "strong",
        "em",
        "a",
        "code",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "blockquote",
        "br",
        "hr",
    }
)


def render(markdown: str) -> str:
    return cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)


@dataclass
class Rendered:
    """What an approver sees, and what GitHub would make live, in one rendered comment."""

    text: str = ""  # the visible text
    links: list[str] = field(default_factory=list)  # hrefs
    tags: set[str] = field(default_factory=set)
    mentions: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)  # the text of each code element


class _Reader(HTMLParser):
    def __init__(self, found: Rendered) -> None:
        super().__init__(convert_charrefs=True)
        self.found = found
        self._inert = 0  # inside <a> or <code>: GitHub's filters skip it
        self._code: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.tags.add(tag)
        if tag == "a":
            self.found.links.extend(value or "" for name, value in attrs if name == "href")
        if tag in ("a", "code", "pre"):
            self._inert += 1
        if tag == "code":
            self._code = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("a", "code", "pre"):
            self._inert -= 1
        if tag == "code" and self._code is not None:
            self.found.code.append("".join(self._code))
            self._code = None

    def handle_data(self, data: str) -> None:
        self.found.text += data
        if self._code is not None:
            self._code.append(data)
        if self._inert == 0:
            self.found.mentions += _MENTION.findall(data)
            self.found.references += _REFERENCE.findall(data)


def read(markdown: str) -> Rendered:
    found = Rendered()
    _Reader(found).feed(render(markdown))
    return found


def assert_inert(markdown: str, *, links: set[str] | frozenset[str] = frozenset()) -> Rendered:
    """No mention, no reference, no tag we did not write, no link but ``links``."""
    found = read(markdown)
    assert found.mentions == [], f"live mentions: {found.mentions}"
    assert found.references == [], f"live references: {found.references}"
    assert found.tags <= OUR_TAGS, f"foreign tags: {found.tags - OUR_TAGS}"
    foreign = [link for link in found.links if link not in links]
    assert foreign == [], f"links nobody asked for: {foreign}"
    return found
