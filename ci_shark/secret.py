"""A value that must never be printed: tokens, device codes, private keys, client secrets.

Every :class:`Secret` is also remembered (weakly) for the life of the process, so that
:func:`redact` can take every secret of the run out of text that a server sent back: a
server that quotes the device code or the client secret in an ``error_description`` must
not get it into a PR comment, which no CI runner masks.
"""

from __future__ import annotations

import hmac
import weakref
from functools import partial
from typing import NoReturn
from urllib.parse import quote

REDACTED = "***"
# A piece shorter than this is not hidden inside other text: "ab" would blank half a sentence
# and tell nothing; such a short secret is no secret anyway.
MIN_REDACTED_CHARS = 4


class Secret:
    """Wraps a secret string so that ``str()``, ``repr()`` and f-strings show ``***``.

    ``reveal()`` is the one way to the value, which makes every use of it easy to find.
    """

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value
        key = id(self)
        _known[key] = weakref.ref(self, partial(_forget, key))

    def reveal(self) -> str:
        return self._value

    def pieces(self) -> list[str]:
        """What must be hidden: the whole value, and each line of a multi-line one (CI
        runners mask line by line, and a PEM is printed line by line)."""
        value = self._value
        if not value.strip():
            return []
        lines = [line.strip() for line in value.splitlines() if line.strip()]
        return [value, *lines] if len(lines) > 1 else [value]

    def __str__(self) -> str:
        return REDACTED

    def __repr__(self) -> str:
        return "Secret('***')"

    def __format__(self, format_spec: str) -> str:
        return REDACTED

    def __bool__(self) -> bool:
        return bool(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> NoReturn:
        # Pickling would write the value somewhere we do not control.
        raise TypeError("Secret values cannot be pickled")


class SecretStr(str):
    """A secret that must work as a plain string — the SharkAuth SDK's
    ``f"DPoP {token.access_token}"`` — for library users. Formatting gives the value (that
    is the point); ``repr``, and so every container and dataclass holding it, shows ``***``.
    ci_shark's own code keeps :class:`Secret`, which never formats as its value."""

    _secret: Secret

    def __new__(cls, value: str) -> SecretStr:
        made = super().__new__(cls, value)
        made._secret = Secret(value)  # remembered for redaction while this string lives
        return made

    def reveal(self) -> str:
        return str.__str__(self)

    def __repr__(self) -> str:
        return "'***'"


class SecretBytes(bytes):
    """:class:`SecretStr` for bytes: the SharkAuth SDK's ``prover.private_key_pem()`` writes
    to a file and loads back as plain bytes, while ``repr`` (and ``print``) shows ``***``."""

    _secret: Secret

    def __new__(cls, value: bytes) -> SecretBytes:
        made = super().__new__(cls, value)
        made._secret = Secret(value.decode("latin-1"))  # remembered for redaction
        return made

    def __repr__(self) -> str:
        return "b'***'"

    __str__ = __repr__


# Every live Secret, by identity: two equal values are two entries, so the first one's
# end does not take the value out of redaction while the other still lives.
_known: dict[int, weakref.ref[Secret]] = {}


def _forget(key: int, _: object) -> None:
    _known.pop(key, None)


def redact(text: str) -> str:
    """``text`` with every piece of every live secret (and its URL-encoded form) replaced
    by ``***``. Longest first, so a secret that contains another goes whole."""
    pieces: set[str] = set()
    for reference in list(_known.values()):
        secret = reference()
        if secret is None:
            continue
        for piece in secret.pieces():
            pieces.update({piece, quote(piece, safe="")})
    for piece in sorted(pieces, key=len, reverse=True):
        if len(piece) >= MIN_REDACTED_CHARS and piece in text:
            text = text.replace(piece, REDACTED)
    return text
