"""RFC 8693 token exchange at the token endpoint: a client trades an access token it holds
for a narrower one (part of its scope, an audience), bound to the same DPoP key.

The rules, strict where a real server must be:

- the client is authenticated as for any grant (the token endpoint did that), and the
  subject token is an active access token issued to that same client: nobody exchanges
  another client's token;
- ``subject_token_type`` and ``requested_token_type`` (when sent) are access tokens; an
  ``actor_token`` (delegation) is not supported;
- a DPoP-bound subject token is exchanged only with a proof from the key it is bound to (a
  stolen token alone buys nothing), and the new token is bound to the proof's key;
- the scope is the subject token's, or a subset of it; ``audience`` is kept and
  introspection reports it as ``aud``;
- no refresh token (RFC 8693 §2.2.1 leaves it optional: the client can exchange again),
  and the new token belongs to the subject token's grant: revoking the grant ends it.

Errors are RFC 8693 §2.2.2's: ``invalid_request`` for a subject token that is invalid or
unacceptable, ``invalid_scope``, and RFC 9449's ``invalid_dpop_proof``.
"""

from __future__ import annotations

from typing import Final

from ci_shark.sandbox.state import SandboxState
from ci_shark.sandbox.wire import Form, OAuthError, Reply, json_reply

TOKEN_EXCHANGE_GRANT_TYPE: Final = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
ACCESS_TOKEN_TYPE: Final = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105


def exchange_token(state: SandboxState, form: Form, client_id: str, jkt: str | None) -> Reply:
    """The token response for one exchange; ``jkt`` is the verified proof's key, if any."""
    if form.require("subject_token_type") != ACCESS_TOKEN_TYPE:
        raise OAuthError("invalid_request", "only access tokens are exchanged here")
    if form.get("requested_token_type") not in (None, ACCESS_TOKEN_TYPE):
        raise OAuthError("invalid_request", "only access tokens are issued here")
    if form.get("actor_token") is not None:
        raise OAuthError("invalid_request", "delegation (actor_token) is not supported")
    value = form.require("subject_token")
    audience = form.get("audience")
    with state.lock:
        subject = state.active_token_locked(value)
        if subject is None or subject.kind != "access" or subject.client_id != client_id:
            raise OAuthError(
                "invalid_request", "the subject_token is not an active access token of this client"
            )
        subject.require_key(jkt, "the subject_token")
        scope = subject.narrowed_scope(form.get("scope"), "the subject token's")
        payload = state.issue_tokens_locked(
            client_id, scope, jkt, subject.family, with_refresh_token=False
        )
        state.tokens[payload["access_token"]].audience = audience
    payload["issued_token_type"] = ACCESS_TOKEN_TYPE
    return json_reply(200, payload, "exchanged")
