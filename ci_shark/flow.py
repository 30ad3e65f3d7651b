"""One run of ci_shark, top to bottom: policy, key, device code, approval, outputs.

Reading order is execution order. Every way out goes through ``platform.finish`` so the
comment, the summary and the ``status`` output always tell what happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import httpx

from ci_shark.config import Settings
from ci_shark.errors import CiSharkError
from ci_shark.oauth.device import DeviceFlow
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import OAuthHttp
from ci_shark.outputs import Credentials
from ci_shark.platforms.base import Platform
from ci_shark.render import ApprovalRequest, Outcome


def load_dpop_key(settings: Settings) -> DPoPKey | None:
    if not settings.dpop:
        return None
    if settings.dpop_private_key is not None:
        return DPoPKey.load(settings.dpop_private_key.reveal())
    return DPoPKey.generate()


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
    try:
        auth_url, client_id = settings.required("auth_url"), settings.required("client_id")
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
                http=http,
                clock=clock,
                sleep=sleep,
            )
            authorization = flow.begin(deadline=deadline)
            platform.mask([authorization.device_code])
            request = ApprovalRequest(
                link=authorization.link,
                verification_uri=authorization.verification_uri,
                user_code=authorization.user_code,
                expires_at=datetime.now(timezone.utc) + timedelta(seconds=authorization.expires_in),
                scope=settings.scope,
                resource=settings.resource,
                dpop_jkt=dpop_key.jkt if dpop_key else None,
                context=context,
            )
            platform.announce(request)
            tokens = flow.wait_for_approval(timeout_s=deadline - clock(), on_wait=platform.waiting)

        if dpop_key is not None and not tokens.is_dpop_bound:
            platform.warn(
                f"DPoP was requested but the server issued a {tokens.token_type} token: it is "
                "not sender-constrained; `token-type` says so"
            )
        credentials = Credentials(tokens=tokens, dpop_key=dpop_key, dpop_key_file=None)
        platform.mask(credentials.secrets())  # before anything is written anywhere
        credentials = platform.export(credentials)
    except CiSharkError as failure:
        platform.finish(Outcome(failure.status, failure.message), request)
        raise
    except Exception:
        platform.finish(Outcome("error", "ci_shark failed unexpectedly"), request)
        raise
    platform.finish(Outcome("approved", "approved; credentials exported"), request)
    return credentials
