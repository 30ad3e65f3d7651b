"""The engine as a Python library, in the shape SharkAuth SDK users know."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ci_shark import AccessDenied, DeviceFlow, DPoPKey
from ci_shark.sandbox import SandboxServer


def test_begin_then_wait_for_approval(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server = sandbox_factory()
    key = DPoPKey.generate()
    with DeviceFlow(server.url, "lib-client", "deploy:write", dpop_prover=key) as flow:
        init = flow.begin()
        assert init.user_code == server.grants[0].user_code
        assert init.link.startswith(f"{server.url}/device?user_code=")
        server.approve(init.user_code)
        token = flow.wait_for_approval(timeout_s=10)
    assert token.token_type == "DPoP"
    assert token.cnf_jkt == key.jkt == server.grants[0].jkt
    assert "***" in repr(token.access_token)
    assert token.access_token.reveal() not in repr(token)
    assert f"DPoP {token.access_token}" == f"DPoP {token.access_token.reveal()}"


def test_denial_raises_a_catchable_error(sandbox_factory: Callable[..., SandboxServer]) -> None:
    server = sandbox_factory(require_dpop=False)
    with DeviceFlow(server.url, "lib-client") as flow:
        flow.begin()
        server.deny()
        with pytest.raises(AccessDenied) as denied:
            flow.wait_for_approval(timeout_s=10)
    assert denied.value.error == "access_denied"
    assert denied.value.exit_code == 3
