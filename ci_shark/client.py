"""The SharkAuth SDK's ``OAuthClient``, for library users who switch by changing the import.

``OAuthClient(base_url=…).get_token_with_dpop(grant_type=…, dpop_prover=…, client_id=…)``
posts one token request with a DPoP proof and returns a :class:`ci_shark.oauth.tokens.Token`
(``access_token`` usable in an f-string, ``cnf_jkt``, ``raw``); any refusal raises
:class:`ci_shark.errors.OAuthError` with ``error``, ``error_description`` and
``status_code``. Where it differs from the SDK, it is safer: the server's metadata names
the token endpoint (SharkAuth's ``/oauth/token`` without it), a ``use_dpop_nonce``
challenge is answered, and error descriptions are sanitised server text.
"""

from __future__ import annotations

import time
from typing import Any

from ci_shark.oauth.discovery import Endpoints, server_endpoints
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import OAuthHttp
from ci_shark.oauth.providers import lookup
from ci_shark.oauth.tokens import Client, Token, token_request
from ci_shark.secret import Secret

REQUEST_BUDGET_S = 60.0


class OAuthClient:
    """Token requests to one authorization server, over one connection."""

    def __init__(
        self,
        base_url: str,
        *,
        provider: str = "auto",
        ca_bundle: str | None = None,
        http: OAuthHttp | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._provider = lookup(provider, self.base_url)
        self._owns_http = http is None
        self.http = http or OAuthHttp(ca_bundle=ca_bundle)
        self._endpoints: Endpoints | None = None

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> OAuthClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def endpoints(self) -> Endpoints:
        if self._endpoints is None:
            self._endpoints = server_endpoints(
                self.http,
                self.base_url,
                deadline=time.monotonic() + REQUEST_BUDGET_S,
                provider=self._provider,
            )
        return self._endpoints

    def get_token_with_dpop(
        self,
        *,
        grant_type: str,
        dpop_prover: DPoPKey,
        client_id: str,
        client_secret: str | None = None,
        scope: str | None = None,
        **extra: Any,
    ) -> Token:
        """One DPoP-bound token request: ``client_credentials``, ``authorization_code``,
        ``refresh_token`` (with ``refresh_token=…``), or any grant the server takes;
        ``extra`` fields go into the form as given."""
        form: dict[str, str | Secret] = {"grant_type": grant_type}
        if scope is not None:
            form["scope"] = scope
        for name, value in extra.items():
            form[name] = Secret(value) if name in ("refresh_token", "code") else str(value)
        endpoints = self.endpoints()
        secret = Secret(client_secret) if client_secret else None
        tokens = token_request(
            self.http,
            endpoints.token,
            form,
            Client(client_id, secret, endpoints.client_auth),
            dpop=dpop_prover,
            deadline=time.monotonic() + REQUEST_BUDGET_S,
        )
        return Token.from_token_set(tokens, dpop_prover)
