"""The authorization-server endpoints: metadata, JWKS, device authorization, token (token
exchange in ``exchange.py``), revoke, introspect. Strict where real servers are: SharkAuth's
zero-tolerance poll spacing, RFC 9449 key binding, one redemption per device code.

Client authentication, in one place (``_authenticate_client``): a confidential client's
secret; with a trusted CI issuer, a client its rules name proves who asks with the CI's OIDC
token (RFC 7523 ``client_assertion``) on every request that authenticates it, before the DPoP
proof is judged, so the retry after ``use_dpop_nonce`` needs a fresh CI token too. The token
itself is never stored: the grant keeps the verified claims only.
"""

from __future__ import annotations

import hmac
import secrets
import time
import urllib.parse
from typing import Any, Final

from ci_shark.sandbox.assertions import ALGORITHMS, AssertionRefused
from ci_shark.sandbox.ci_trust import CiIdentity
from ci_shark.sandbox.endpoints import EndpointGroup
from ci_shark.sandbox.exchange import TOKEN_EXCHANGE_GRANT_TYPE, exchange_token
from ci_shark.sandbox.jose import es256_public_jwk
from ci_shark.sandbox.state import Grant, display_user_code
from ci_shark.sandbox.wire import (
    DEVICE_CODE_GRANT_TYPE,
    DEVICE_PATH,
    INTROSPECT_PATH,
    JWKS_PATH,
    METADATA_PATHS,
    NO_STORE,
    REVOKE_PATH,
    TOKEN_PATH,
    USERINFO_PATH,
    VERIFICATION_PATH,
    Form,
    OAuthError,
    Reply,
    Request,
    Routes,
    client_credentials_of,
    json_reply,
    parse_form,
)

SLOW_DOWN_STEP_S: Final = 5
# Client authentication's form fields: never a device request's "extra" parameters.
_CLIENT_AUTH_FIELDS: Final = frozenset(
    {"client_id", "client_secret", "client_assertion", "client_assertion_type"}
)


class AuthorizationEndpoints(EndpointGroup):
    def routes(self) -> Routes:
        return {
            **{path: {"GET": self.metadata_document} for path in METADATA_PATHS},
            DEVICE_PATH: {"POST": self.device_authorization},
            TOKEN_PATH: {"POST": self.token},
            REVOKE_PATH: {"POST": self.revoke},
            INTROSPECT_PATH: {"POST": self.introspect},
            JWKS_PATH: {"GET": self.jwks},
        }

    def metadata_document(self, req: Request) -> Reply:
        url = self._issuer()
        device_flow = self._options.device_flow
        document: dict[str, Any] = {"issuer": url}
        if device_flow != "missing":
            document["device_authorization_endpoint"] = url + DEVICE_PATH
        document |= {
            "token_endpoint": url + TOKEN_PATH,
            "revocation_endpoint": url + REVOKE_PATH,
            "introspection_endpoint": url + INTROSPECT_PATH,
            "userinfo_endpoint": url + USERINFO_PATH,
            "jwks_uri": url + JWKS_PATH,
            "grant_types_supported": [
                *([DEVICE_CODE_GRANT_TYPE] if device_flow != "missing" else []),
                "refresh_token",
                *(["client_credentials"] if self._options.client_secrets else []),
                TOKEN_EXCHANGE_GRANT_TYPE,
            ],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": [
                "none",
                "client_secret_basic",
                "client_secret_post",
                # The registered name for a JWT assertion signed with an asymmetric key; here
                # the key is the CI issuer's, not the client's own.
                *(["private_key_jwt"] if self._state.ci_trust else []),
            ],
            **(
                {"token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS)}
                if self._state.ci_trust
                else {}
            ),
            "dpop_signing_alg_values_supported": ["ES256"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "subject_types_supported": ["public"],
        }
        return json_reply(200, document, "metadata")

    def jwks(self, req: Request) -> Reply:
        return json_reply(200, {"keys": [es256_public_jwk(self._state.signing_key)]}, "jwks")

    def device_authorization(self, req: Request) -> Reply:
        if self._options.device_flow == "disabled":
            # SharkAuth at its current release: the route exists, the grant is switched off.
            raise OAuthError(
                "unsupported_grant_type",
                "the device authorization grant is disabled on this server",
                status=501,
            )
        form = parse_form(req)
        client_id, identity = self._authenticate_client(req, form)
        resources = tuple(form.all("resource"))
        for resource in resources:
            # RFC 8707 §2: an absolute URI without a fragment.
            split = urllib.parse.urlsplit(resource)
            if not split.scheme or not split.netloc or "#" in resource:
                raise OAuthError("invalid_target", "resource must be an absolute URI")
        known = _CLIENT_AUTH_FIELDS | {"scope", "resource"}
        extra = {name: value for name, value in form.pairs if name not in known}
        now = req.arrived_at
        expires_in_s = self._options.expires_in_s
        state = self._state
        with state.lock:
            device_code = secrets.token_urlsafe(32)
            user_code = state.new_user_code_locked()
            grant = Grant(
                device_code=device_code,
                user_code=user_code,
                client_id=client_id,
                scope=form.get("scope") or "",
                resources=resources,
                extra_params=extra,
                issued_at=now,
                expires_at=now + expires_in_s,
                interval_s=self._options.interval_s,
                ci_identity=identity,
            )
            state.grants[device_code] = grant
            state.grants_by_user_code[user_code] = grant
        display = display_user_code(user_code)
        verification_uri = self._issuer() + VERIFICATION_PATH
        payload: dict[str, Any] = {
            "device_code": device_code,
            "user_code": display,
            "verification_uri": verification_uri,
            "verification_uri_complete": f"{verification_uri}?user_code={display}",
            "expires_in": expires_in_s,
        }
        if self._options.send_interval:
            payload["interval"] = self._options.interval_s
        return json_reply(200, payload, "issued")

    def token(self, req: Request) -> Reply:
        form = parse_form(req)
        client_id, _ = self._authenticate_client(req, form)
        grant_type = form.require("grant_type")
        if grant_type == DEVICE_CODE_GRANT_TYPE:
            if self._options.device_flow != "enabled":
                raise OAuthError("unsupported_grant_type", "the device code grant is not enabled")
            return self._redeem_device_code(req, form, client_id)
        if grant_type == "refresh_token":
            return self._refresh(req, form, client_id)
        if grant_type == "client_credentials":
            return self._client_credentials(req, form, client_id)
        if grant_type == TOKEN_EXCHANGE_GRANT_TYPE:
            return exchange_token(self._state, form, client_id, self._verify_proof(req))
        raise OAuthError("unsupported_grant_type", "this grant_type is not supported")

    def _authenticate_client(self, req: Request, form: Form) -> tuple[str, CiIdentity | None]:
        """The client's id, and the CI identity it proved (workload identity)."""
        client_id, secret = client_credentials_of(req, form)
        if not self._options.knows_client(client_id):
            # As a real server answers a client nobody registered (RFC 6749 §5.2).
            raise OAuthError("invalid_client", "unknown client", status=401)
        trust = self._state.ci_trust
        assertion_type = form.get("client_assertion_type")
        assertion = form.get("client_assertion")
        sent_assertion = assertion_type is not None or assertion is not None
        if sent_assertion and secret is not None:
            raise OAuthError("invalid_request", "use one client authentication method, not two")
        if trust is not None and (sent_assertion or trust.requires_identity(client_id)):
            if not sent_assertion:
                raise _refused(
                    f"client '{client_id}' must authenticate with its CI's OIDC token: send "
                    "client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer "
                    f"and client_assertion, a fresh CI token with aud {self._issuer()}"
                )
            try:
                identity = trust.authenticate(
                    client_id, assertion_type, assertion, audience=self._issuer(), now=time.time()
                )
            except AssertionRefused as refused:
                raise _refused(refused.reason) from None  # the cause may quote the token
            return client_id, identity
        if sent_assertion:
            raise _refused(
                "this server trusts no CI issuer, so it takes no client_assertion "
                "(the sandbox: --trust-ci-issuer or --fake-ci-issuer)"
            )
        expected = self._options.client_secrets.get(client_id)
        if expected is not None and (
            secret is None or not hmac.compare_digest(secret.encode(), expected.encode())
        ):
            raise OAuthError("invalid_client", "client authentication failed", status=401)
        return client_id, None

    def _verify_proof(self, req: Request) -> str | None:
        """The proof's key thumbprint; None without a proof where DPoP is optional."""
        proof = self._proofs.verify(
            req, self._issuer() + req.path, required=self._options.require_dpop
        )
        return proof.jkt if proof else None

    def _redeem_device_code(self, req: Request, form: Form, client_id: str) -> Reply:
        jkt = self._verify_proof(req)
        device_code = form.require("device_code")
        now = req.arrived_at
        state = self._state
        with state.lock:
            grant = state.grants.get(device_code)
            if grant is None or grant.client_id != client_id:
                raise OAuthError("invalid_grant", "unknown device_code for this client")
            if grant.redeemed:
                # As for a replayed authorization code (RFC 6749 §4.1.2): revoke what it gave.
                state.revoke_family_locked(grant.device_code)
                raise OAuthError(
                    "invalid_grant",
                    "the device_code was already redeemed; its tokens are now revoked",
                )
            if grant.jkt is not None and jkt != grant.jkt:
                raise OAuthError(
                    "invalid_dpop_proof", "every poll of a device_code must use the same DPoP key"
                )
            grant.jkt = grant.jkt or jkt
            if now >= grant.expires_at:
                raise OAuthError("expired_token", "the device_code has expired")
            if req.counts_as_poll:
                self._judge_interval_locked(grant, now)
            state.settle_locked(grant, now)
            if grant.status == "pending":
                raise OAuthError("authorization_pending", "the user has not yet decided")
            if grant.status == "denied":
                raise OAuthError("access_denied", "the user denied the request")
            grant.redeemed = True
            payload = state.issue_tokens_locked(client_id, grant.scope, jkt, grant.device_code)
        return json_reply(200, payload, "granted")

    def _judge_interval_locked(self, grant: Grant, arrived_at: float) -> None:
        """SharkAuth's LastPolledAt rule: arrival minus previous arrival, zero tolerance."""
        previous = grant.last_poll_at
        grant.last_poll_at = arrived_at
        if (
            self._options.strict_interval
            and previous is not None
            and arrived_at - previous < grant.interval_s
        ):
            grant.interval_s += SLOW_DOWN_STEP_S  # RFC 8628 §3.5: and it stays added
            raise OAuthError(
                "slow_down", f"polling too fast: wait {grant.interval_s} s between polls"
            )

    def _refresh(self, req: Request, form: Form, client_id: str) -> Reply:
        jkt = self._verify_proof(req)
        value = form.require("refresh_token")
        state = self._state
        with state.lock:
            token = state.tokens.get(value)
            if token is None or token.kind != "refresh" or token.client_id != client_id:
                raise OAuthError("invalid_grant", "the refresh token is invalid")
            if not token.active:
                if self._options.refresh_reuse_revokes:
                    # RFC 9700 §4.14.2: a spent refresh token used again means two holders
                    # (or a thief): end the whole grant.
                    state.revoke_family_locked(token.family)
                raise OAuthError("invalid_grant", "the refresh token is invalid")
            # RFC 9449 §5: a public client's refresh token is bound to its DPoP key.
            token.require_key(jkt, "the refresh token")
            scope = token.narrowed_scope(form.get("scope"), "the original grant")
            token.active = False  # rotation: each refresh token works once
            payload = state.issue_tokens_locked(client_id, scope, jkt, token.family)
        return json_reply(200, payload, "refreshed")

    def _client_credentials(self, req: Request, form: Form, client_id: str) -> Reply:
        if client_id not in self._options.client_secrets:
            # RFC 6749 §4.4: for confidential clients only.
            raise OAuthError(
                "unauthorized_client", "client_credentials needs a client with a secret"
            )
        jkt = self._verify_proof(req)
        scope = form.get("scope") or ""
        with self._state.lock:
            # RFC 6749 §4.4.3: no refresh token; the client can simply ask again.
            payload = self._state.issue_tokens_locked(
                client_id, scope, jkt, family=secrets.token_urlsafe(16), with_refresh_token=False
            )
        return json_reply(200, payload, "client_credentials")

    def revoke(self, req: Request) -> Reply:
        form = parse_form(req)
        value = form.require("token")
        # A public client may revoke without naming itself (RFC 7009 §2.1 asks credentials of
        # confidential clients only); a client that must prove its CI identity must here too.
        # (An admin's Bearer token, as the SDK's OAuthClient sends, names no client.)
        basic = (req.header("Authorization") or "")[:6].lower() == "basic "
        named = form.get("client_id") or basic or form.get("client_assertion")
        client_id = self._authenticate_client(req, form)[0] if named else None
        state = self._state
        trust = state.ci_trust
        with state.lock:
            token = state.tokens.get(value)
            if (
                token is not None
                and trust is not None
                and trust.requires_identity(token.client_id)
                and client_id != token.client_id
            ):
                raise _refused(
                    f"client '{token.client_id}' must authenticate with its CI's OIDC token to "
                    "revoke its tokens: send client_id, client_assertion_type and client_assertion"
                )
            if token is not None:
                token.active = False
                if token.kind == "refresh":
                    # RFC 7009 §2.1: revoking a refresh token ends the grant's access tokens.
                    state.revoke_family_locked(token.family)
        # RFC 7009 §2.2: 200 whether or not the token was known.
        return Reply(200, b"", None, list(NO_STORE), "revoked")

    def introspect(self, req: Request) -> Reply:
        form = parse_form(req)
        value = form.require("token")
        with self._state.lock:
            token = self._state.active_token_locked(value)
        if token is None:
            return json_reply(200, {"active": False}, "inactive")
        payload: dict[str, Any] = {
            "active": True,
            "sub": self._options.subject,
            "scope": token.scope,
            "client_id": token.client_id,
            "iat": token.issued_at,
            "iss": self._issuer(),
        }
        if token.expires_at is not None:
            payload["exp"] = token.expires_at
        if token.kind == "access":
            payload["token_type"] = "DPoP" if token.jkt else "Bearer"
        if token.jkt:
            payload["cnf"] = {"jkt": token.jkt}
        if token.audience:
            payload["aud"] = token.audience
        return json_reply(200, payload, "active")


def _refused(reason: str) -> OAuthError:
    return OAuthError("invalid_client", reason, status=401)
