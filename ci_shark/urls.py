"""The one rule for every URL we send to or show: https, or plain http to a loopback host."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit, urlunsplit


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_problem(url: str) -> str | None:
    """Why ``url`` may not be used, or None when it is fine."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 (a port that is not a number raises)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("https", "http") or not host:
        return "must be an absolute https:// URL"
    if parts.username or parts.password:
        return "must not contain credentials"
    if parts.scheme == "http" and not is_loopback_host(host):
        return "uses plain http://, which is only allowed for a loopback host (use https://)"
    if any(ord(ch) < 0x21 or ch in "<>\"'`\\" for ch in url):
        return "contains characters that do not belong in a URL"
    return None


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_endpoint(one: str, other: str) -> bool:
    """Equal up to what does not change the target: scheme and host case, a default port,
    a trailing slash."""

    def key(url: str) -> tuple[str, str, int | None, str, str]:
        parts = urlsplit(url)
        default = {"https": 443, "http": 80}.get(parts.scheme.lower())
        port = parts.port if parts.port != default else None
        host = (parts.hostname or "").lower()
        return parts.scheme.lower(), host, port, parts.path.rstrip("/"), parts.query

    try:
        return key(one) == key(other)
    except ValueError:
        return False


def same_issuer(one: str, other: str) -> bool:
    """RFC 8414 §3.3 asks for the identical issuer; servers and users disagree on a
    trailing slash (Auth0's issuer has one) and on host case, which change nothing."""
    return same_endpoint(one, other)


def without_userinfo(url: str) -> str:
    """``url`` for a message: a ``user:password@`` part is dropped, never echoed."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
