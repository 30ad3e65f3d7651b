"""ci_shark: human-approved, DPoP-bound OAuth credentials for CI jobs (RFC 8628 + RFC 9449).

The library API mirrors the SharkAuth SDK (switch by changing the import)::

    flow = DeviceFlow(auth_url=..., client_id=..., scope=..., dpop_prover=DPoPProver.generate())
    init = flow.begin()
    token = flow.wait_for_approval(timeout_s=300)

    client = OAuthClient(base_url=...)
    token = client.refresh_token(token.refresh_token, client_id=..., dpop_prover=prover)
    narrow = client.token_exchange(subject_token=token.access_token, client_id=...,
                                   dpop_prover=prover, scope=..., audience=...)
    with DPoPHTTPClient(api_url) as api:
        api.get_with_dpop("/items", token=narrow.access_token, prover=prover)

A later step of the job uses what the login issued (token, key, refresh) with any httpx
call::

    with ci_shark.session() as api:
        api.get("https://api.example.com/items").raise_for_status()

Names are imported on first use, so ``python -m ci_shark --version`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "DeviceFlow": "ci_shark.oauth.device",
    "DeviceAuthorization": "ci_shark.oauth.device",
    "DPoPKey": "ci_shark.oauth.dpop",
    "DPoPProver": "ci_shark.oauth.dpop",
    "Token": "ci_shark.oauth.tokens",
    "TokenSet": "ci_shark.oauth.tokens",
    "OAuthClient": "ci_shark.client",
    "DPoPHTTPClient": "ci_shark.http_client",
    "Secret": "ci_shark.secret",
    "CiSharkError": "ci_shark.errors",
    "OAuthError": "ci_shark.errors",
    "DeviceFlowError": "ci_shark.errors",
    "AccessDenied": "ci_shark.errors",
    "ExpiredToken": "ci_shark.errors",
    "TimedOut": "ci_shark.errors",
    "session": "ci_shark.login_session",
}

if TYPE_CHECKING:
    from ci_shark.client import OAuthClient
    from ci_shark.errors import (
        AccessDenied,
        CiSharkError,
        DeviceFlowError,
        ExpiredToken,
        OAuthError,
        TimedOut,
    )
    from ci_shark.http_client import DPoPHTTPClient
    from ci_shark.login_session import session
    from ci_shark.oauth.device import DeviceAuthorization, DeviceFlow
    from ci_shark.oauth.dpop import DPoPKey, DPoPProver
    from ci_shark.oauth.tokens import Token, TokenSet
    from ci_shark.secret import Secret


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ci_shark' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "AccessDenied",
    "CiSharkError",
    "DPoPHTTPClient",
    "DPoPKey",
    "DPoPProver",
    "DeviceAuthorization",
    "DeviceFlow",
    "DeviceFlowError",
    "ExpiredToken",
    "OAuthClient",
    "OAuthError",
    "Secret",
    "TimedOut",
    "Token",
    "TokenSet",
    "__version__",
    "session",
]
