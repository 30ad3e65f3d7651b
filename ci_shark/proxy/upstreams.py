"""Where a proxied request goes, and how an upstream's redirect comes back.

Its rules:

- ``--upstream URL`` takes an origin (``https://api.example.com``, or plain ``http://`` to
  a loopback host, the URL rule): its paths are at the proxy's root,
  ``$SHARK_PROXY_URL/v2/items`` is ``https://api.example.com/v2/items``. A path, a query,
  a fragment or credentials in it are refused: the token goes to that origin, and the
  request says the rest. An internationalised host name is kept as IDNA writes it (its
  ``xn--`` form), the name requests go to.
- Several upstreams are named: ``--upstream NAME=URL`` (repeated), each under its own
  prefix, ``$SHARK_PROXY_URL/NAME/...``. A name is lowercase letters, digits, ``-`` and
  ``_``; names differ; an unnamed upstream is only allowed alone (its paths and a name
  would be ambiguous).
- A path that names no upstream is not forwarded anywhere.
- A ``Location`` the upstream sends for its own origin (absolute, or relative to the
  request) points back at the proxy, capability and prefix included, so a client that
  follows it stays on the proxy; one for another origin is passed on unchanged and never
  followed with the token.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from ci_shark.errors import ConfigError
from ci_shark.safe_text import untrusted
from ci_shark.urls import url_problem

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_DEFAULT_PORTS = {"https": 443, "http": 80}
_FIX = (
    "give an origin, `--upstream https://api.example.com`, or several named ones, "
    "`--upstream api=https://api.example.com --upstream files=https://files.example.com`"
)


@dataclass(frozen=True)
class Upstream:
    """One upstream origin, under ``/NAME`` of the proxy (at its root when unnamed)."""

    name: str | None
    origin: str  # scheme://host[:port], lowercase, without a default port

    @property
    def prefix(self) -> str:
        return "" if self.name is None else f"/{self.name}"


def parse_upstreams(given: Sequence[str]) -> tuple[Upstream, ...]:
    """The ``--upstream`` values, checked (see the module's rules)."""
    if not given:
        raise ConfigError("`proxy` needs an upstream to forward to", hint=_FIX)
    upstreams = tuple(_one(item) for item in given)
    names = [upstream.name for upstream in upstreams]
    if None in names and len(upstreams) > 1:
        raise ConfigError(
            "with several `--upstream`s each needs a name (NAME=URL)",
            hint="each is then under its own prefix: $SHARK_PROXY_URL/NAME/...",
        )
    if len(set(names)) != len(names):
        raise ConfigError("two `--upstream`s have the same name", hint=_FIX)
    return upstreams


def _one(item: str) -> Upstream:
    name, sep, url = item.partition("=")
    if not sep or "://" in name:  # no name (a URL's query may hold an "=")
        name, sep, url = "", "", item
    if sep and not NAME.fullmatch(name):
        raise ConfigError(
            f"`--upstream` name {untrusted(name, 64)!r} is not lowercase letters, digits, "
            "- and _ (at most 63)",
            hint=_FIX,
        )
    url = url.strip()
    problem = url_problem(url)
    if problem is None:
        parts = urlsplit(url)
        if parts.path not in ("", "/") or parts.query or parts.fragment or url.endswith("?"):
            problem = "has a path, a query or a fragment: it takes an origin (paths go on requests)"
    if problem:
        raise ConfigError(f"`--upstream` {untrusted(url, 200)} {problem}", hint=_FIX)
    try:  # the host as it goes on the wire (IDNA): what DNS, TLS and the proof's htu see
        on_the_wire = str(httpx.URL(url))
    except httpx.InvalidURL:
        raise ConfigError(
            f"`--upstream` {untrusted(url, 200)} is not a valid URL", hint=_FIX
        ) from None
    return Upstream(name if sep else None, canonical_origin(on_the_wire))


def canonical_origin(url: str) -> str:
    """``scheme://host[:port]``, lowercase, without the scheme's default port."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    host = f"[{host}]" if ":" in host else host
    port = parts.port if parts.port not in (None, _DEFAULT_PORTS.get(parts.scheme)) else None
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port else "")


class Routes:
    """The upstreams of one proxy, and its base URL (with the capability)."""

    def __init__(self, upstreams: Sequence[Upstream], base_url: str) -> None:
        self.upstreams = tuple(upstreams)
        self._base_url = base_url.rstrip("/")
        self._by_name = {upstream.name: upstream for upstream in self.upstreams}

    def route(self, rest: str) -> tuple[Upstream, str] | None:
        """The upstream and its path (with the query) for ``rest``, what follows the
        capability in the request target; None when it names none."""
        path, mark, query = rest.partition("?")
        if None in self._by_name:
            return self._by_name[None], (path or "/") + mark + query
        name, slash, below = path.lstrip("/").partition("/")
        upstream = self._by_name.get(name) if path.startswith("/") else None
        if upstream is None:
            return None
        return upstream, "/" + below + mark + query if slash else "/" + mark + query

    def location_back(self, upstream: Upstream, location: str, request_url: str) -> str:
        """A ``Location`` as the client gets it (see the module's rules)."""
        try:
            target = urljoin(request_url, location)
            same = canonical_origin(target) == upstream.origin
        except ValueError:
            return location
        if not same:
            return location
        parts = urlsplit(target)
        tail = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        tail += f"#{parts.fragment}" if parts.fragment else ""
        return f"{self._base_url}{upstream.prefix}{tail}"


__all__ = ["NAME", "Routes", "Upstream", "canonical_origin", "parse_upstreams"]
