"""``ci_shark.session()``: an ``httpx.Client`` that sends the login's token, for the
Python steps of a job::

    import ci_shark

    with ci_shark.session() as api:
        api.post("https://api.example.com/deploy", json={"ref": "v1.2.3"}).raise_for_status()

Its rules are `request`'s and `proxy`'s (:mod:`ci_shark.token_auth`, one place):

- The credentials are found as every later command finds them
  (:func:`ci_shark.issued.load_issued`: ``credentials``, else the ``SHARK_*`` variables,
  else the job's default file), masked, and named in one log line on stderr.
- Every request gets the token and, for a DPoP-bound one, a fresh proof (``htm``, ``htu``
  without the query, ``ath``, the origin's newest nonce); a ``use_dpop_nonce`` challenge is
  answered once; the token is refreshed before it expires (written back where the
  credentials came from); a token the API calls invalid is refreshed once.
- It is a client of the HTTP base (``oauth/http.py``): the run's trust, proxies honoured
  but loopback direct, no redirect followed (a same-origin ``Location`` is yours to
  follow: each request gets a fresh proof), no byte cap and nothing decompressed unless
  you ask for an encoding. A token goes only to https URLs (plain http to loopback), and
  with a ``base_url`` only to its origin: a link an API hands back (the next page, an
  upload URL elsewhere) gets no token by accident.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from ci_shark.issued import load_issued
from ci_shark.later_settings import load_later_settings
from ci_shark.oauth.dpop_auth import NonceMemory
from ci_shark.oauth.http import new_client
from ci_shark.platforms import detect
from ci_shark.token_auth import LiveCredentials, LoginTokenAuth
from ci_shark.urls import origin


def session(
    credentials: str | Path | None = None,
    *,
    base_url: str = "",
    timeout: float = 30.0,
    ca_bundle: str | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` with the login's token on every request (see the module's
    rules). ``credentials``: the login's dotenv/JSON file (default: as `ci-shark request`
    finds it); ``base_url``: httpx's, and the one origin the token goes to; ``timeout``:
    httpx's; ``ca_bundle``: CAs to trust instead of
    the system's (default: `ca-bundle`, ``CI_SHARK_CA_BUNDLE``); ``transport``: for tests."""
    settings = load_later_settings(os.environ, {"ca_bundle": ca_bundle})
    platform = detect(os.environ)(settings, os.environ, stdout_is_free=False)
    issued = load_issued(Path(credentials) if credentials is not None else None, platform)
    live = LiveCredentials.of_command(issued, settings, platform)
    live.check()
    nonces = NonceMemory()
    client = new_client(
        ca_bundle=settings.ca_bundle,
        transport=transport,
        timeout=httpx.Timeout(timeout),
        max_body_bytes=None,
        nonces=nonces,
        auth=LoginTokenAuth(live, nonces, only_origin=origin(base_url) if base_url else None),
    )
    client.base_url = httpx.URL(base_url)
    return client
