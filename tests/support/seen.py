"""What a person reads in a text, to ask whether a value shown to an approver could pass
for another one: characters drawn as nothing are not seen, and whitespace reads as one
space, none at the ends (a browser, Slack and a terminal all show it so)."""

from __future__ import annotations

import re

# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): soft hyphen, zero
# widths and joiners, the bidi controls, Hangul fillers, variation selectors, tags.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff]"
)


def as_seen(text: str) -> str:
    """``text`` as it looks: invisible characters gone, whitespace runs one space."""
    return " ".join(_INVISIBLE.sub("", text).split())


# Branches that are not `main`, whose names git and GitHub take, and which look like it.
MAIN = "refs/heads/main"
LOOK_ALIKES_OF_MAIN = {
    "zero-width-space": "refs/heads/main\u200b",
    "word-joiner": "refs/heads/main\u2060",
    "soft-hyphen": "refs/heads/ma\u00adin",
    "no-break-space": "refs/heads/main\u00a0",
    "ideographic-space": "refs/heads/\u3000main",
    "variation-selector": "refs/heads/main\ufe0f",
    "tag-character": "refs/heads/main\U000e0041",
    "mongolian-vowel-separator": "refs/heads/main\u180e",
    "hangul-filler": "refs/heads/main\u3164",
}
