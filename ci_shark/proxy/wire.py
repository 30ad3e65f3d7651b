"""HTTP/1.1 between the proxy and its clients: what a header may be, which headers cross,
and the bodies as they stream (RFC 9110, RFC 9112). No policy of its own: the proxy's rules
are in ``forward.py`` and ``server.py``.

Its rules:

- Hop-by-hop headers (``Connection`` and every header it names, ``Keep-Alive``, ``TE``,
  ``Trailer``, ``Transfer-Encoding``, ``Upgrade``, ``Proxy-*``) never cross: each side has
  its own connection.
- Toward the upstream, the client's credentials never cross (``Authorization``, ``DPoP``,
  ``Cookie``): the proxy adds the login's. Nor do ``Host``, ``Content-Length`` and
  ``Expect``: the proxy frames the request itself.
- Back to the client, ``Set-Cookie`` and ``DPoP-Nonce`` do not cross: the proxy keeps no
  session for a client, and a cookie for ``127.0.0.1`` would go to every other loopback
  service (cookies ignore ports); the nonce is the proxy's business.
- A request body comes with ``Content-Length`` or ``Transfer-Encoding: chunked``, never
  both (a request that could be read two ways is refused); a chunk-size line, the trailers
  and every read are bounded; the body is read ``CHUNK_BYTES`` at a time, never whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Protocol

CHUNK_BYTES = 64 * 1024
MAX_CHUNK_LINE_BYTES = 1024  # the size in hex and its extensions
MAX_TRAILER_BYTES = 16 * 1024

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
NOT_UPSTREAM = HOP_BY_HOP | {"authorization", "dpop", "cookie", "host", "content-length", "expect"}
NOT_BACK = HOP_BY_HOP | {"set-cookie", "dpop-nonce", "content-length"}

# RFC 9110 §5.6.2: a token; §5.5: a field value is visible ASCII, spaces and tabs (and
# obs-text, which a proxy passes on as it came).
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

Header = tuple[str, str]


class Reader(Protocol):
    """A buffered stream: the client's socket file."""

    def read(self, size: int, /) -> bytes: ...
    def readline(self, size: int, /) -> bytes: ...


class BadBody(Exception):
    """The client's body is not what its framing said (cut short, malformed chunks)."""


def is_token(text: str) -> bool:
    return TOKEN.fullmatch(text) is not None


def valid_headers(headers: Iterable[Header]) -> bool:
    return all(is_token(name) and not _BAD_VALUE.search(value) for name, value in headers)


def _named_by_connection(headers: Iterable[Header]) -> set[str]:
    return {
        option.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for option in value.split(",")
        if option.strip()
    }


def crossing(headers: list[Header], dropped: frozenset[str]) -> list[tuple[bytes, bytes]]:
    """The headers that cross (see the module's rules), as the bytes that came: a header
    value is ISO-8859-1 on the wire, and passes on unchanged."""
    also = _named_by_connection(headers)
    return [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in headers
        if name.lower() not in dropped and name.lower() not in also
    ]


def fixed_length(stream: Reader, length: int) -> Iterator[bytes]:
    """A body of ``length`` bytes, in pieces."""
    left = length
    while left > 0:
        piece = stream.read(min(left, CHUNK_BYTES))
        if not piece:
            raise BadBody(f"the body ended {left} bytes before its Content-Length")
        left -= len(piece)
        yield piece


def dechunked(stream: Reader) -> Iterator[bytes]:
    """A ``Transfer-Encoding: chunked`` body, decoded, in pieces (RFC 9112 §7.1)."""
    while True:
        line = stream.readline(MAX_CHUNK_LINE_BYTES + 1)
        if len(line) > MAX_CHUNK_LINE_BYTES or not line.endswith(b"\n"):
            raise BadBody("a chunk-size line is too long or cut short")
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or not all(ch in b"0123456789abcdefABCDEF" for ch in size_text):
            raise BadBody("a chunk size is not hexadecimal")
        size = int(size_text, 16)
        if size == 0:
            _skip_trailers(stream)
            return
        yield from fixed_length(stream, size)
        if stream.readline(3) not in (b"\r\n", b"\n"):
            raise BadBody("a chunk does not end where its size says")


def _skip_trailers(stream: Reader) -> None:
    """Trailer fields are not passed on (the proxy has sent the headers already)."""
    read = 0
    while True:
        line = stream.readline(MAX_TRAILER_BYTES + 1)
        read += len(line)
        if read > MAX_TRAILER_BYTES or not line.endswith(b"\n"):
            raise BadBody("the trailers are too long or cut short")
        if line in (b"\r\n", b"\n"):
            return


def chunked(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """``pieces`` framed as ``Transfer-Encoding: chunked``, the last chunk included."""
    for piece in pieces:
        if piece:
            yield b"%x\r\n%b\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"
