"""The SharkAuth SDK's ``DPoPHTTPClient``: calls to a DPoP-protected API with a token, for
library users who switch by changing the import.

``DPoPHTTPClient(base_url, timeout=30.0)`` and its ``get_with_dpop`` / ``post_with_dpop`` /
``delete_with_dpop(path, *, token, prover, **kw)`` are shark-auth 0.1.1's; ``kw`` are the
SDK's ``requests`` keywords that httpx shares (``params``, ``headers``, ``json``, ``data``,
``timeout``, ...), and the answer is an ``httpx.Response`` (``status_code``, ``json()``,
``raise_for_status()``). Its rules:

- every request carries ``Authorization: DPoP <token>`` and a fresh proof (``htm``, ``htu``
  without the query, ``ath``, the API's newest ``DPoP-Nonce``), over your own headers;
- a ``use_dpop_nonce`` challenge (RFC 9449 §9: a 401 naming it, or a bare 401 that brings
  a new nonce) is answered with one retry, as ``ci-shark request`` does; the SDK has none;
- ``path`` is a path under ``base_url``: a full URL is refused, so the token and the proofs
  go nowhere the client was not pointed at; redirects are returned, not followed;
- ``base_url`` is https (plain http to a loopback host only); the answer is asked for
  uncompressed (``Accept-Encoding: identity``) unless your headers say otherwise;
- it is the run's one HTTP base (``oauth/http.py``: trust, proxy rules with loopback
  direct, our User-Agent), and each call ends by its ``timeout`` as a whole, a server
  dripping its answer included; the answer comes back read, its connection released.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from ci_shark.errors import ConfigError
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.dpop_auth import DPoPAuth
from ci_shark.oauth.http import HttpClient
from ci_shark.secret import Secret
from ci_shark.urls import url_problem


class DPoPHTTPClient:
    """One connection pool to one API, remembering its DPoP nonce between calls."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        ca_bundle: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        problem = url_problem(base_url)
        if problem:
            raise ConfigError(f"base_url {problem}", hint="use the API's https:// base URL")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # An API's answer may be larger than an OAuth one: no byte cap, as `request`.
        self._http = HttpClient(
            ca_bundle=ca_bundle,
            transport=transport,
            timeout=httpx.Timeout(timeout),
            max_body_bytes=None,
        )

    def get_with_dpop(
        self, path: str, *, token: str, prover: DPoPKey, **kwargs: Any
    ) -> httpx.Response:
        """HTTP GET with the token and a DPoP proof."""
        return self._request("GET", path, token=token, prover=prover, **kwargs)

    def post_with_dpop(
        self, path: str, *, token: str, prover: DPoPKey, json: Any = None, **kwargs: Any
    ) -> httpx.Response:
        """HTTP POST with the token and a DPoP proof; ``json`` as the SDK has it."""
        return self._request("POST", path, token=token, prover=prover, json=json, **kwargs)

    def delete_with_dpop(
        self, path: str, *, token: str, prover: DPoPKey, **kwargs: Any
    ) -> httpx.Response:
        """HTTP DELETE with the token and a DPoP proof."""
        return self._request("DELETE", path, token=token, prover=prover, **kwargs)

    def _request(
        self, method: str, path: str, *, token: str, prover: DPoPKey, **kwargs: Any
    ) -> httpx.Response:
        if "://" in path or path.startswith("//"):
            raise ConfigError(
                f"{method} {path!r}: give a path under base_url, not a URL",
                hint="the token and its proofs go to base_url only: make another client",
            )
        url = f"{self.base_url}{path}" if path.startswith("/") else f"{self.base_url}/{path}"
        data = kwargs.pop("data", None)
        if isinstance(data, (str, bytes)):  # requests' raw body; httpx calls it content
            kwargs["content"] = data
        elif data is not None:
            kwargs["data"] = data
        deadline = time.monotonic() + float(kwargs.pop("timeout", None) or self.timeout)
        request = self._http.build(method, url, deadline=deadline, **kwargs)
        auth = DPoPAuth(prover, self._http.nonces, Secret(str(token)))
        with self._http.send(request, deadline=deadline, auth=auth) as answer:
            content = answer.body()
            response = answer.response
        headers = response.headers.copy()
        for decoded in ("content-encoding", "content-length"):  # the body is decoded
            headers.pop(decoded, None)
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=content,
            request=response.request,
            extensions={"http_version": response.http_version.encode("ascii")},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DPoPHTTPClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
