"""What lies under every connection ci_shark opens: the byte cap and the loopback route.

Its rules:

- :class:`CappedTransport` counts what comes off the wire and what it decodes to, and
  refuses anything past the cap: a 300-byte answer layered ``gzip, gzip, gzip`` must not
  cost gigabytes. One layer of gzip/deflate at most is decoded (we ask for none:
  ``Accept-Encoding: identity``); anything else is refused, never passed on undecoded.
- :class:`LoopbackDirect` wraps a proxy's transport: a request to a loopback host goes
  direct, never through the proxy. Loopback is what :func:`ci_shark.urls.is_loopback_host`
  says, the predicate behind the URL rule, so every host allowed plain ``http://`` (all of
  127.0.0.0/8, ``localhost``, ``::1``) is also a host whose traffic, token included, never
  reaches a proxy in clear. httpx's mount patterns cannot say 127.0.0.0/8.

Failures are :class:`SendFailed` and carry our words only, never a URL or server data.
"""

from __future__ import annotations

import os
import socket
import ssl
import zlib
from collections.abc import Iterator

import httpx

from ci_shark.safe_text import untrusted
from ci_shark.urls import is_loopback_host

# X509_V_ERR_HOSTNAME_MISMATCH, _EMAIL_MISMATCH, _IP_ADDRESS_MISMATCH: Python's message
# for these names the host, which may be a secret (a webhook's).
_NAME_MISMATCH_CODES = frozenset({62, 63, 64})


class SendFailed(Exception):
    """An exchange that brought no usable answer. The message is ours and names no URL
    (a webhook's is a secret) and no server data. ``timed_out``: the deadline cut it."""

    timed_out = False


class NoAnswer(SendFailed):
    """The connection failed, or the deadline passed, before a complete answer."""

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


class ResponseTooLarge(SendFailed):
    """More bytes came (or would come) off the wire, or out of a decoder, than the cap."""

    def __init__(self, status_code: int, max_bytes: int) -> None:
        super().__init__(f"the answer is larger than {max_bytes} bytes")
        self.status_code = status_code


class UnwantedEncoding(SendFailed):
    """A ``Content-Encoding`` we neither asked for nor decode with a bound."""

    def __init__(self, encoding: str) -> None:
        super().__init__("the answer has a Content-Encoding ci_shark did not ask for")
        self.encoding = encoding  # the server's words: for a caller that sanitises them


# The kinds of failure that say enough by their type: the first match wins.
_TIMEOUTS = (
    (httpx.ConnectTimeout, "no connection in time"),
    (httpx.TimeoutException, "no answer in time"),
    (httpx.DecodingError, "the compressed body of the answer is damaged"),
)
_OTHERS = (
    (httpx.ProxyError, "the proxy refused the connection"),
    (httpx.ConnectError, "could not connect"),
    (httpx.RemoteProtocolError, "the server closed the connection without a complete answer"),
)


def describe(failure: BaseException) -> str:
    """What failed below HTTP, in the words a user needs. Read from the kind of failure
    and its causes, never from its text: httpx quotes URLs (a webhook's is a secret), and
    Python's TLS errors can name the host."""
    words = _words_for_kind(failure, _TIMEOUTS)
    for cause in _causes(failure):
        if words is not None:
            break
        words = _words_for_cause(cause)
    return words or _words_for_kind(failure, _OTHERS) or f"it failed ({type(failure).__name__})"


def _words_for_kind(
    failure: BaseException, kinds: tuple[tuple[type[Exception], str], ...]
) -> str | None:
    return next((words for kind, words in kinds if isinstance(failure, kind)), None)


def _words_for_cause(cause: BaseException) -> str | None:
    if isinstance(cause, ssl.SSLCertVerificationError):
        if cause.verify_code in _NAME_MISMATCH_CODES:
            return "TLS failed, the certificate is for another host name"
        # OpenSSL's fixed words for the code ("self-signed certificate", ...).
        reason = untrusted(str(cause.verify_message).split(",")[0], 80)
        return f"TLS failed, the certificate is not trusted: {reason}"
    if isinstance(cause, ssl.SSLError):
        return f"TLS failed: {str(cause.reason or 'no reason given').lower().replace('_', ' ')}"
    if isinstance(cause, socket.gaierror):
        return "the host name does not resolve (DNS)"
    if isinstance(cause, OSError) and cause.errno and cause.errno > 0:
        return os.strerror(cause.errno).lower()  # "connection refused", "no route to host"
    return None


def _causes(failure: BaseException) -> Iterator[BaseException]:
    cause: BaseException | None = failure
    for _ in range(8):
        if cause is None:
            return
        yield cause
        cause = cause.__cause__ or cause.__context__


class _CappedStream(httpx.SyncByteStream):
    def __init__(
        self, inner: httpx.SyncByteStream, max_bytes: int, encoding: str | None, status: int
    ) -> None:
        self._inner = inner
        self._max_bytes = max_bytes
        self._status = status
        # gzip, or deflate with or without its zlib wrapper: one layer, decoded with a bound.
        self._decoder = (
            zlib.decompressobj(47 if encoding == "gzip" else zlib.MAX_WBITS) if encoding else None
        )

    def __iter__(self) -> Iterator[bytes]:
        received = produced = 0
        for chunk in self._inner:
            received += len(chunk)
            if received > self._max_bytes:
                raise ResponseTooLarge(self._status, self._max_bytes)
            if self._decoder is None:
                produced = received
                yield chunk
                continue
            try:
                # max_length: never more than the cap out of one chunk, whatever it holds.
                data = self._decoder.decompress(chunk, self._max_bytes - produced + 1)
            except zlib.error:
                raise httpx.DecodingError("the compressed body is damaged") from None
            produced += len(data)
            if produced > self._max_bytes or self._decoder.unconsumed_tail:
                raise ResponseTooLarge(self._status, self._max_bytes)
            yield data

    def close(self) -> None:
        self._inner.close()


class CappedTransport(httpx.BaseTransport):
    """Wraps a transport: at most ``max_bytes`` off the wire and out of decompression; one
    layer of gzip/deflate at most."""

    def __init__(self, inner: httpx.BaseTransport, max_bytes: int) -> None:
        self._inner = inner
        self._max_bytes = max_bytes

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        layers = [
            name.strip().lower()
            for name in response.headers.get("content-encoding", "").split(",")
            if name.strip() and name.strip().lower() != "identity"
        ]
        if len(layers) > 1 or (layers and layers[0] not in ("gzip", "x-gzip", "deflate")):
            response.close()
            raise UnwantedEncoding(", ".join(layers))
        declared = response.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self._max_bytes:
            response.close()
            raise ResponseTooLarge(response.status_code, self._max_bytes)
        headers = [
            (name, value)
            for name, value in response.headers.raw
            if not layers or name.lower() not in (b"content-encoding", b"content-length")
        ]
        assert isinstance(response.stream, httpx.SyncByteStream)
        encoding = "gzip" if layers and layers[0] != "deflate" else (layers or [None])[0]
        return httpx.Response(
            response.status_code,
            headers=headers,
            stream=_CappedStream(response.stream, self._max_bytes, encoding, response.status_code),
            extensions=response.extensions,
            request=request,
        )

    def close(self) -> None:
        self._inner.close()


class LoopbackDirect(httpx.BaseTransport):
    """A proxy's transport that sends every request to a loopback host ``direct`` instead."""

    def __init__(self, proxied: httpx.BaseTransport, direct: httpx.BaseTransport) -> None:
        self._proxied = proxied
        self._direct = direct

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        chosen = self._direct if is_loopback_host(request.url.host) else self._proxied
        return chosen.handle_request(request)

    def close(self) -> None:
        self._proxied.close()  # the direct transport is the client's own: it closes it


def route_and_cap(client: httpx.Client, max_body_bytes: int | None) -> None:
    """Put the cap (unless ``None``) under every connection ``client`` may open, proxied
    ones included, and loopback hosts on the direct one. httpx keeps its transports in
    these two attributes and offers no public way in; tests hold both rules."""

    def capped(transport: httpx.BaseTransport) -> httpx.BaseTransport:
        return transport if max_body_bytes is None else CappedTransport(transport, max_body_bytes)

    direct = client._transport = capped(client._transport)
    client._mounts = {
        pattern: LoopbackDirect(capped(mounted), direct) if mounted is not None else None
        for pattern, mounted in client._mounts.items()
    }
