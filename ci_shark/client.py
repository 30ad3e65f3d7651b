"""The SharkAuth SDK's ``OAuthClient``, for library users who switch by changing the import.

Each method is the shark-auth 0.1.1 method of the same name and signature:
``get_token_with_dpop``, ``refresh_token``, ``token_exchange`` (RFC 8693), ``revoke_token``
(RFC 7009) and ``introspect_token`` (RFC 7662). A token comes back as a
:class:`ci_shark.oauth.tokens.Token` (``access_token`` usable in an f-string and ``***`` in
``repr``, ``cnf_jkt``, ``raw``); any refusal raises :class:`ci_shark.errors.OAuthError`
with ``error``, ``error_description`` and ``status_code``.

Where it differs from the SDK, it is safer or says more:

- the endpoints come from the server's metadata (SharkAuth's paths without it);
- ``refresh_token`` and ``token_exchange`` take a ``dpop_prover`` and prove possession of
  that key, so the new token is bound to the same key as the old one; a ``use_dpop_nonce``
  challenge is answered once;
- a refresh token is sent once: a lost answer is not replayed (a server that rotates refresh
  tokens would take the second use for a theft and end the grant);
- a client secret goes the way the server's metadata says (HTTP Basic, else the form);
- ``revoke_token`` and ``introspect_token`` authenticate as the client when the constructor
  got ``client_id`` (RFC 7009 and RFC 7662 servers want that), else with the SDK's admin
  API key ``token`` (SharkAuth), else not at all;
- tokens and secrets travel as :class:`ci_shark.secret.Secret` and never reach a message;
  error descriptions are sanitised server text.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from ci_shark.errors import ConfigError, OAuthError, ProtocolError
from ci_shark.oauth.discovery import Endpoints, server_endpoints
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import OAuthHttp, Reply
from ci_shark.oauth.providers import lookup
from ci_shark.oauth.tokens import Client, Token, post_form, token_request
from ci_shark.secret import Secret

REQUEST_BUDGET_S = 60.0
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 (a URN)
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105 (a URN)
# Form fields that carry a credential: kept as Secret, so no message can quote them.
_SECRET_FIELDS = frozenset(
    {
        *("refresh_token", "code", "code_verifier", "subject_token", "actor_token"),
        *("password", "assertion", "client_assertion", "client_secret"),
    }
)

Form = dict[str, str | Secret]


class OAuthClient:
    """Token requests to one authorization server, over one connection."""

    def __init__(
        self,
        base_url: str,
        token: str = "",
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        provider: str = "auto",
        ca_bundle: str | None = None,
        http: OAuthHttp | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._admin_token = Secret(token) if token else None  # the SDK's admin API key
        self._client_id = client_id
        self._client_secret = client_secret
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

    # -- token requests ----------------------------------------------------------------

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
        form: Form = {"grant_type": grant_type}
        return self._token(form, scope, extra, client_id, client_secret, dpop=dpop_prover)

    def refresh_token(
        self,
        refresh_token_str: str,
        *,
        scope: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        dpop_prover: DPoPKey | None = None,
        **extra: Any,
    ) -> Token:
        """RFC 6749 §6: new tokens for a refresh token (``scope`` may narrow them). With
        ``dpop_prover``, the request carries a proof from that key: a DPoP-bound refresh
        token needs it (RFC 9449 §5), and the new access token is bound to the same key."""
        form: Form = {"grant_type": "refresh_token", "refresh_token": Secret(refresh_token_str)}
        return self._token(
            form, scope, extra, client_id, client_secret, dpop=dpop_prover, once=True, why="refresh"
        )

    def token_exchange(
        self,
        *,
        subject_token: str,
        dpop_prover: DPoPKey,
        client_id: str | None = None,
        client_secret: str | None = None,
        scope: str | None = None,
        audience: str | None = None,
        subject_token_type: str = ACCESS_TOKEN_TYPE,
        requested_token_type: str = ACCESS_TOKEN_TYPE,
        **extra: Any,
    ) -> Token:
        """RFC 8693: trade ``subject_token`` for a narrower token (``scope``, ``audience``),
        proving possession of ``dpop_prover``'s key: a DPoP-bound subject token is
        exchanged only by the key it is bound to, and the new token is bound to it too.
        An ``actor_token`` in ``extra`` gets its ``actor_token_type`` (an access token)."""
        form: Form = {
            "grant_type": TOKEN_EXCHANGE_GRANT,
            "subject_token": Secret(subject_token),
            "subject_token_type": subject_token_type,
            "requested_token_type": requested_token_type,
        }
        if audience is not None:
            form["audience"] = audience
        if "actor_token" in extra:
            extra.setdefault("actor_token_type", ACCESS_TOKEN_TYPE)
        return self._token(
            form, scope, extra, client_id, client_secret, dpop=dpop_prover, why="token_exchange"
        )

    def _token(
        self,
        form: Form,
        scope: str | None,
        extra: dict[str, Any],
        client_id: str | None,
        client_secret: str | None,
        *,
        dpop: DPoPKey | None,
        once: bool = False,
        why: str = "get_token_with_dpop",
    ) -> Token:
        if scope is not None:
            form["scope"] = scope
        for name, value in extra.items():
            form[name] = Secret(str(value)) if name in _SECRET_FIELDS else str(value)
        endpoints = self.endpoints()
        tokens = token_request(
            self.http,
            endpoints.token,
            form,
            self._client(client_id, client_secret, why),
            dpop=dpop,
            deadline=time.monotonic() + REQUEST_BUDGET_S,
            retry=not once,
        )
        return Token.from_token_set(tokens, dpop)

    def _client(self, client_id: str | None, client_secret: str | None, why: str) -> Client:
        """Who asks: the call's client, else the constructor's."""
        if client_id is None:
            client_id, client_secret = self._client_id, client_secret or self._client_secret
        if client_id is None:
            raise ConfigError(
                f"{why} needs client_id: the client the token was issued to",
                hint="pass client_id=… to the call, or to OAuthClient(…)",
            )
        secret = client_secret or None
        return Client(client_id, Secret(secret) if secret else None, self.endpoints().client_auth)

    # -- revocation and introspection ----------------------------------------------------

    def revoke_token(
        self,
        token: str,
        token_type_hint: Literal["access_token", "refresh_token"] | None = None,
    ) -> None:
        """RFC 7009: revoke ``token``. The server answers 200 whether or not it knew it."""
        form: Form = {"token": Secret(token)}
        if token_type_hint is not None:
            form["token_type_hint"] = token_type_hint
        reply = self._post("revocation", form)
        if reply.status != 200:
            raise _refused(reply, "the revocation endpoint")

    def introspect_token(self, token: str) -> dict[str, Any]:
        """RFC 7662: what the server knows of ``token``: ``{"active": True, "sub": …,
        "scope": …, "cnf": {"jkt": …}, …}``, or ``{"active": False}``."""
        reply = self._post("introspection", {"token": Secret(token)})
        if reply.status != 200:
            raise _refused(reply, "the introspection endpoint")
        if reply.body is None or not isinstance(reply.body.get("active"), bool):
            raise ProtocolError("the introspection endpoint answered without `active` (RFC 7662)")
        return dict(reply.body)

    def _post(self, kind: Literal["revocation", "introspection"], form: Form) -> Reply:
        endpoint = getattr(self.endpoints(), kind)
        if endpoint is None:
            raise ProtocolError(
                f"the authorization server names no {kind} endpoint",
                hint="check base_url; its metadata lists none, and it is not a preset's path",
            )
        deadline = time.monotonic() + REQUEST_BUDGET_S
        if self._client_id is not None:
            client = self._client(None, None, kind)
            return post_form(self.http, endpoint, form, client, dpop=None, deadline=deadline)
        return self.http.request(
            "POST", endpoint, form=form, access_token=self._admin_token, deadline=deadline
        )


def _refused(reply: Reply, endpoint: str) -> OAuthError:
    return OAuthError(
        reply.error or f"HTTP {reply.status}",
        reply.error_description if reply.error else reply.text or None,
        status_code=reply.status,
        endpoint=endpoint,
    )
