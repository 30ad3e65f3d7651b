"""One rule per output for text we did not write: the server's, the CI event payload's,
and whatever an approver's account on the server may choose (a username).

Every rule first takes out every secret of the run (:func:`ci_shark.secret.redact`):
a server that quotes the device code or the client secret back must not publish it.

- Every rule: one line, no control characters, bounded, and no character a reader cannot
  see: zero widths, bidi controls and spaces other than U+0020 show as U+FFFD, so a value
  never reads as another (a branch ``main`` plus a zero-width space is not ``main``).
- The log (:func:`untrusted`): ``##`` split so no runner acts on it. Where it may be
  shown, a workflow command needs a line start, which the log writer never gives such text.
- An output value (:func:`inert`): also no character a shell, a dotenv reader or a workflow
  expression gives a meaning to.
- Markdown (:func:`md_code`): a code span. GitHub renders comments with cmark-gfm and then
  links mentions (``@org/team``), references (``#1``) and autolinks (``https://…``,
  ``www.…``, e-mail addresses) in the text, and it does so after character references are
  decoded (``&#64;team`` is a live mention) and even inside a ``<code>`` HTML tag. Inside
  a code span it does none of these, and the text reads exactly as it was sent, with no
  backslashes. Links come only from :func:`md_link`, to URLs that passed the https rule.
- Slack mrkdwn (:func:`slack_code`), also what Mattermost, Rocket.Chat and Discord's
  ``/slack`` endpoint read: Slack acts on ``<…>`` anywhere in a text (``<!channel>``,
  ``<@U123>``, ``<https://x|label>``), even inside code, and links bare URLs and e-mail
  addresses in plain text; the receivers that read it as markdown also act on a plain
  ``@channel`` or ``@name``. So the text is put in an inline code span (no formatting, no
  autolink, no mention in any of them) and ``&``, ``<``, ``>`` are escaped as Slack asks.
  A span cannot hold a backtick (mrkdwn has no escape for it): it becomes U+02CB, a
  look-alike. Links come only from :func:`slack_link`.
- A Teams Adaptive Card (:func:`card_text`): a ``TextBlock``'s text is markdown, so text
  we did not write goes only into a ``TextRun`` of a ``RichTextBlock``, which Teams shows
  as plain text; card links are ``Action.OpenUrl`` buttons to URLs from :func:`safe_url`.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from ci_shark.secret import redact
from ci_shark.urls import url_problem

# C0/C1 controls, DEL and the line separators: line breaks and escapes, read as a space.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# What a reader cannot see, or takes for a plain space: Unicode's Default_Ignorable_Code_Point
# (zero widths, joiners, the bidi controls, soft hyphen, fillers, variation selectors, tags)
# and every space but U+0020. Each is shown as U+FFFD: a branch `main` plus one of them is
# another branch, and must not read as `main` (a space would be trimmed at the end).
_INVISIBLE = re.compile(
    "[\u00a0\u00ad\u034f\u061c\u115f\u1160\u1680\u17b4\u17b5\u180b-\u180f\u2000-\u200f"
    "\u202a-\u202f\u205f-\u206f\u3000\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)
SHOWN_INVISIBLE = "\ufffd"
_NOT_INERT = re.compile(r"[^A-Za-z0-9 ._:/+@=,%~-]")
_BACKTICKS = re.compile(r"`+")


def one_line(text: object, limit: int = 200) -> str:
    """No secret of the run, no control character or line break, every invisible
    character made visible (:data:`SHOWN_INVISIBLE`), bounded: what every rule below
    starts from."""
    visible = _INVISIBLE.sub(SHOWN_INVISIBLE, _CONTROLS.sub(" ", redact(str(text))))
    flat = " ".join(visible.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def untrusted(text: object, limit: int = 200) -> str:
    """Untrusted text made safe for one log line: :func:`one_line`, and ``##`` split:
    runners act on ``##[command]`` (GitHub) and ``##vso[`` (Azure) anywhere in a line."""
    return split_hashes(one_line(text, limit))


_DOUBLE_HASH = re.compile("#(?=#)")


def split_hashes(text: str) -> str:
    """Every ``##`` split with a space. A lookahead, not str.replace: "###[" would become
    "# ##[", still a command."""
    return _DOUBLE_HASH.sub("# ", text)


def inert(text: object, limit: int = 200) -> str:
    """Untrusted text for an output value: :func:`untrusted`, and no character a shell, a
    dotenv reader or a workflow expression gives a meaning to (``$ ` ( ) ; | & < > ' "``
    and the like become ``_``). For names and scopes, which never need them."""
    return _NOT_INERT.sub("_", untrusted(text, limit))


def md_code(text: object, limit: int = 200, *, in_table: bool = False) -> str:
    """Untrusted text as a markdown code span: shown verbatim, never a link, a mention, a
    reference, HTML or formatting. In a table cell a ``|`` would end the cell (GFM splits
    rows before it parses code spans), so it is escaped there, and only there."""
    flat = one_line(text, limit) or " "
    if in_table:
        flat = flat.replace("|", "\\|")
    longest = max((len(run) for run in _BACKTICKS.findall(flat)), default=0)
    fence = "`" * (longest + 1)
    # CommonMark strips one space at each end: pad when the text starts or ends with a
    # backtick (it would join the fence) or a space (it would be lost).
    pad = " " if flat[0] in "` " or flat[-1] in "` " else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


_PLAIN = re.compile(r"[A-Za-z][A-Za-z ,;()'-]*")


def md_text(text: object, limit: int = 200) -> str:
    """Untrusted text as plain words when it is only letters, spaces and ``,;()'-``
    (nothing markdown or an autolinker acts on, no list marker at its start, and no digit:
    GitHub links ``GH-1``, ``JIRA-1`` and commit hashes in plain text); otherwise
    :func:`md_code`."""
    flat = one_line(text, limit)
    return flat if _PLAIN.fullmatch(flat) else md_code(flat, limit)


def safe_url(url: str | None) -> str | None:
    """A URL that passed the https rule, with every secret of the run taken out and every
    character a markup could end a link on (``( ) [ ] < > | "`` and spaces) percent-encoded;
    None for any other URL."""
    if url is None or url_problem(url):
        return None
    return quote(redact(url), safe=":/?#&=%+~,;@!$*")


def md_link(label_markdown: str, url: str) -> str:
    """A link with an already-safe markdown label (our words, or :func:`md_code`) to a
    URL that passed the https rule; otherwise just the label."""
    target = safe_url(url)
    return f"[{label_markdown}](<{target}>)" if target else label_markdown


# -- Slack mrkdwn --------------------------------------------------------------------------


def slack_escape(text: str) -> str:
    """Slack's three control characters as the entities it asks for (our words too)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_code(text: object, limit: int = 200) -> str:
    """Untrusted text as a Slack inline code span: shown as sent, never a link, a mention
    or formatting (see the module's rule)."""
    flat = one_line(text, limit).replace("`", "\u02cb")
    return f"`{slack_escape(flat)}`" if flat else "_(empty)_"


def slack_link(label: str, url: str) -> str:
    """A Slack link with a label of our own words to a URL that passed the https rule;
    otherwise just the label."""
    target = safe_url(url)
    words = slack_escape(label)
    return f"<{slack_escape(target)}|{words}>" if target else words


# -- Teams Adaptive Cards ------------------------------------------------------------------


def card_text(text: object, limit: int = 200) -> str:
    """Untrusted text for a ``TextRun`` (plain text, never a ``TextBlock``): one line, no
    secret, no control character."""
    return one_line(text, limit)
