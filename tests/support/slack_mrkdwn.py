"""What a Slack-compatible receiver would make live in a mrkdwn text: links and mentions.

The model is the union of what the receivers of a Slack incoming-webhook message do, each
on the side of caution:

- Slack parses ``<…>`` sequences in the raw text, before any formatting and even inside
  code: ``<https://x>`` / ``<https://x|label>`` are links, ``<@U123>``, ``<!here>``,
  ``<!channel>``, ``<!subteam^S1>``, ``<#C123>`` are mentions. Entities (``&lt;``) are
  decoded only for display afterwards, so an escaped ``&lt;!channel&gt;`` is text.
- Outside inline code, the visible text gets autolinks (``https://…``, ``www.…``, e-mail
  addresses) and, where a receiver reads plain mentions (Mattermost, Rocket.Chat, Discord,
  Slack with ``link_names``), ``@name``, ``@here``, ``@channel``, ``@everyone``.
- Inline code is a backtick-delimited run on one line, opened after a line start, a
  space or an opening bracket, and closed before a line end, a space or punctuation: a
  backtick glued to a word is not code in Slack, so its text would be live.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

_SEQUENCE = re.compile(r"<([^<>\n]*)>")
_CODE = re.compile(r"(?:^|(?<=[\s(*_~]))`([^`\n]+)`(?=$|[\s).,:;!?*_~])", re.MULTILINE)
_AUTOLINK = re.compile(
    r"(?i)\b(?:https?://|www\.)[^\s<>]+|[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+"
)
_PLAIN_MENTION = re.compile(r"(?<![\w@])@[A-Za-z0-9_.-]+")


@dataclass
class SlackRendered:
    text: str = ""  # what is shown, entities decoded, sequences as their labels
    links: list[str] = field(default_factory=list)
    mentions: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)


def read(mrkdwn: str) -> SlackRendered:
    found = SlackRendered()
    for match in _SEQUENCE.finditer(mrkdwn):
        target, _, _label = match[1].partition("|")
        if target[:1] in ("@", "!", "#"):
            found.mentions.append(match[1])
        elif target:
            found.links.append(html.unescape(target))
    labelled = _SEQUENCE.sub(lambda m: m[1].partition("|")[2] or m[1], mrkdwn)
    found.code = [html.unescape(m[1]) for m in _CODE.finditer(labelled)]
    outside_code = html.unescape(_CODE.sub(" ", labelled))
    found.links += _AUTOLINK.findall(outside_code)
    found.mentions += _PLAIN_MENTION.findall(outside_code)
    found.text = html.unescape(labelled)
    return found


def assert_inert(mrkdwn: str, *, links: set[str] | frozenset[str] = frozenset()) -> SlackRendered:
    """No mention, and no link but ``links``."""
    found = read(mrkdwn)
    assert found.mentions == [], f"live mentions: {found.mentions}"
    foreign = [link for link in found.links if link not in links]
    assert foreign == [], f"links nobody asked for: {foreign}"
    return found
