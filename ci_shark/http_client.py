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
  uncompressed (``Accept-Encoding: identity``) unless your headers say otherwise.
"""

from __future__ import annotations

from typing import Any

import httpx

from ci_shark.errors import ConfigError
from ci_shark.oauth.dpop import DPoPKey

# The one import of the DPoP auth flow (another change may move it within oauth/).
from ci_shark.oauth.http import LOOPBACK_PATTERNS, USER_AGENT, DPoPAuth, NonceMemory
from ci_shark.oauth.tls import context_for
from ci_shark.secret import Secret
from ci_shark.urls import url_problem


class DPoPHTTPClient:
    """One ``httpx.Client`` to one API, remembering its DPoP nonce between calls."""

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
        self._nonces = NonceMemory()
        self._client = httpx.Client(
            transport=transport,
            # An injected transport brings its own TLS: no CA bundle to load then.
            verify=context_for(ca_bundle) if transport is None else True,
            timeout=timeout,
            follow_redirects=False,
            trust_env=True,  # HTTPS_PROXY/NO_PROXY...
            mounts={pattern: None for pattern in LOOPBACK_PATTERNS},  # ...never for loopback
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
            event_hooks={"response": [self._nonces.learn]},
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
        auth = DPoPAuth(prover, self._nonces, Secret(str(token)))
        return self._client.request(method, url, auth=auth, **kwargs)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> DPoPHTTPClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
