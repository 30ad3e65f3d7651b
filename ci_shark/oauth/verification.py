"""The link an approver opens (RFC 8628 §3.3.1): a ``verification_uri_complete`` may be
shown only when the code it embeds is the code the approver is told to check.

A link that embeds another code than ``user_code`` would have the approver confirm
another device's request while comparing the code shown with ours: device-code phishing
done by the server's answer itself. Codes compare as people type them (§6.1).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlsplit

from ci_shark.safe_text import untrusted

# Query parameters a verification_uri_complete carries the user code in (else a path
# segment: see complete_uri_problem).
_CODE_PARAMETERS = ("user_code", "code")


def _same_code(one: str, other: str) -> bool:
    """User codes as people type them: case, dashes and spaces do not count (RFC 8628 §6.1)."""

    def key(code: str) -> str:
        return "".join(ch for ch in code if ch not in "- ").upper()

    return key(one) == key(other)


def _path_segments(path: str) -> list[str]:
    return [unquote(segment) for segment in path.split("/") if segment]


def complete_uri_problem(complete: str, verification_uri: str, user_code: str) -> str | None:
    """Why ``complete`` must not be shown, or None. It embeds the code in a ``user_code`` or
    ``code`` query parameter, or in a path segment after the ``verification_uri``'s path
    (``/device/WDJB-MJHT``); a link that embeds another code than the one shown would have
    the approver confirm another device's request while checking the code against ours.

    Every code parameter must be ours; path segments beyond the verification_uri's (all of
    them, on another path) must hold ours unless a code parameter did. A link that embeds
    nothing recognisable (an opaque ``?t=…`` on the same path) cannot be checked, and is
    shown: the page then shows the code, for the approver to compare."""
    parts = urlsplit(complete)
    in_query = [value for name, value in parse_qsl(parts.query) if name in _CODE_PARAMETERS]
    other = next((code for code in in_query if not _same_code(code, user_code)), None)
    if other is None and not in_query:
        base = _path_segments(urlsplit(verification_uri).path)
        segments = _path_segments(parts.path)
        extra = segments[len(base) :] if segments[: len(base)] == base else segments
        if extra and not any(_same_code(segment, user_code) for segment in extra):
            other = "/".join(extra)
    if other is None:
        return None
    return (
        "the server's verification_uri_complete carries another code than its user_code "
        f"({untrusted(other, 40)} vs {untrusted(user_code, 40)}): that link could approve "
        "another device's request, so it is not shown; the approver opens the "
        "verification_uri and enters the code"
    )
