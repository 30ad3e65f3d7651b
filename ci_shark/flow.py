"""One run of ci_shark, top to bottom: policy, key, device code, approval, approver, outputs.

Reading order is execution order. Every way out goes through ``platform.finish`` so the
comment, the summary and the ``status`` output always tell what happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import httpx

from ci_shark import cancel
from ci_shark.config import Settings
from ci_shark.errors import CiSharkError, ExpiredToken, PolicyRefused
from ci_shark.oauth.device import DeviceAuthorization, DeviceFlow
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import OAuthHttp
from ci_shark.oauth.identity import Identity, identify
from ci_shark.oauth.providers import resolve
from ci_shark.oauth.tokens import TokenSet, revoke_each
from ci_shark.outputs import Credentials
from ci_shark.platforms.base import Platform
from ci_shark.render import ApprovalRequest, Outcome, RunContext
from ci_shark.secret import Secret

# A renewed code is only worth asking for when there is time left to approve it.
MIN_RENEWAL_WINDOW_S = 10.0
# Once the token is in, learning who approved (and undoing a refused grant) gets its own
# short budget: the outputs must not wait for a slow userinfo until the approval deadline.
AFTER_APPROVAL_BUDGET_S = 15.0


def load_dpop_key(settings: Settings) -> DPoPKey | None:
    if not settings.dpop:
        return None
    if settings.dpop_private_key is not None:
        return DPoPKey.load(settings.dpop_private_key.reveal())
    return DPoPKey.generate()


def approval_request(
    authorization: DeviceAuthorization,
    settings: Settings,
    dpop_key: DPoPKey | None,
    context: RunContext,
) -> ApprovalRequest:
    return ApprovalRequest(
        link=authorization.link,
        verification_uri=authorization.verification_uri,
        user_code=authorization.user_code,
        expires_at=datetime.now(timezone.utc) + timedelta(seconds=authorization.expires_in),
        scope=settings.scope,
        resource=settings.resource,
        dpop_jkt=dpop_key.jkt if dpop_key else None,
        context=context,
    )


def run(
    settings: Settings,
    platform: Platform,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    transport: httpx.BaseTransport | None = None,
) -> Credentials:
    """Get an approved, exported credential, or raise the CiSharkError that says why not."""
    request: ApprovalRequest | None = None
    approver: str | None = None
    try:
        auth_url, client_id = settings.required("auth_url"), settings.required("client_id")
        provider = resolve(
            settings.provider, auth_url, has_client_secret=settings.client_secret is not None
        )
        deadline = clock() + settings.timeout
        context = platform.context()
        platform.enforce_policy(context)  # before a device code exists: nothing to leak
        dpop_key = load_dpop_key(settings)
        if settings.dpop_private_key is not None:
            platform.mask([settings.dpop_private_key])

        with OAuthHttp(
            ca_bundle=settings.ca_bundle, transport=transport, clock=clock, sleep=sleep
        ) as http:
            flow = DeviceFlow(
                auth_url,
                client_id,
                settings.scope,
                client_secret=settings.client_secret,
                dpop_prover=dpop_key,
                resource=settings.resource,
                extra_params=settings.extra_params,
                device_authorization_endpoint=settings.device_authorization_endpoint,
                token_endpoint=settings.token_endpoint,
                provider=provider,
                http=http,
                clock=clock,
                sleep=sleep,
            )
            while True:  # more than once only with `renew: true`
                authorization = flow.begin(deadline=deadline)
                platform.mask([authorization.device_code])
                request = approval_request(authorization, settings, dpop_key, context)
                platform.announce(request)  # a renewal edits the same comment in place
                try:
                    tokens = flow.wait_for_approval(
                        timeout_s=deadline - clock(), on_wait=platform.waiting
                    )
                    break
                except ExpiredToken:
                    if not settings.renew or deadline - clock() < MIN_RENEWAL_WINDOW_S:
                        raise
                    platform.log("ci_shark: the code expired; asking for a new one (renew)")

            budget = clock() + AFTER_APPROVAL_BUDGET_S
            identity = identify(
                tokens,
                client_id=client_id,
                http=http,
                find_userinfo=lambda: flow.endpoints_after_approval(deadline=budget).userinfo,
                dpop=dpop_key,
                deadline=budget,
            )
            approver = identity.display if identity else None
            if settings.allowed_approvers:
                enforce_allowed_approver(
                    identity,
                    settings.allowed_approvers,
                    lambda: revoke_quietly(
                        flow,
                        tokens,
                        client_secret=settings.client_secret,
                        deadline=clock() + AFTER_APPROVAL_BUDGET_S,
                    ),
                )

        if dpop_key is not None and not tokens.is_dpop_bound:
            platform.warn(
                f"DPoP was requested but the server issued a {tokens.token_type} token: it is "
                "not sender-constrained; `token-type` says so"
            )
        credentials = Credentials(tokens=tokens, dpop_key=dpop_key, approver=approver)
        with cancel.shielded():  # a cancellation now waits: all outputs, or none
            platform.mask(credentials.secrets())  # before anything is written anywhere
            credentials = platform.export(credentials)
            platform.finish(Outcome("approved", "credentials exported", approver), request)
    except CiSharkError as failure:
        platform.finish(Outcome(failure.status, failure.message, approver), request)
        raise
    except Exception:
        platform.finish(Outcome("error", "ci_shark failed unexpectedly", approver), request)
        raise
    if cancel.deferred() is not None:
        platform.log("ci_shark: cancelled while writing the outputs; they were written whole")
    return credentials


def enforce_allowed_approver(
    identity: Identity | None, allowed: tuple[str, ...], revoke_grant: Callable[[], bool]
) -> None:
    """Anyone signed in can approve any code (device-code phishing): when the workflow
    names its approvers, an approval from anyone else is revoked at once and refused."""
    if identity is not None and identity.matches(allowed):
        return
    who = identity.display if identity else "someone the server did not identify"
    revoked = revoke_grant()
    raise PolicyRefused(
        f"approved by {who}, who is not in `allowed-approvers`; "
        + ("the token was revoked" if revoked else "the token could not be revoked"),
        hint="approve as one of the allowed approvers, or change `allowed-approvers` "
        "(CI_SHARK_ALLOWED_APPROVERS); the server must tell who approved (id_token or userinfo)",
    )


def revoke_quietly(
    flow: DeviceFlow, tokens: TokenSet, *, client_secret: Secret | None, deadline: float
) -> bool:
    """Revoke the refresh token (the grant) and the access token; True when both went."""
    endpoint = flow.endpoints_after_approval(deadline=deadline).revocation
    if endpoint is None:
        return False
    results = revoke_each(
        flow.http,
        endpoint,
        ((tokens.refresh_token, "refresh_token"), (tokens.access_token, "access_token")),
        client_id=flow.client_id,
        client_secret=client_secret,
        dpop=flow.dpop if tokens.is_dpop_bound else None,
        deadline=deadline,
    )
    return not any(results.values())
