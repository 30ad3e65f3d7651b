"""Our client against the real provider through a misbehaving network.

The client finds the provider's metadata directly, but is told (explicit
endpoint inputs) to send the device authorization and token requests through
fault_proxy.FaultProxy, which injects, per request and by script: 5xx bursts,
connection resets, 429 + Retry-After, latency, truncated and oversized bodies.

Faults scripted for the token endpoint are consumed while the code is still
pending (the approver waits for them), so the flow must end with a valid,
DPoP-bound token; a fault that outlasts the deadline must end with the right
exit code, on time. One scenario shows the protocol's own hazard: a lost 200
from the token endpoint cannot be recovered, because oidc-provider treats the
second redemption as a stolen code and revokes the grant.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from approver import approve
from fault_proxy import FaultProxy, delay, oversize, reset, status, truncate
from oidc_peer import (
    CLIENT_ID,
    RS_CLIENT_ID,
    RS_CLIENT_SECRET,
    SCOPE,
    ProviderServer,
    wait_for_link,
)
from peers import login_env
from support.cli import CliJob
from support.job_outputs import read_json_outputs
from support.waits import until

pytestmark = pytest.mark.interop

DEVICE = "/device/auth"
TOKEN = "/token"
JOB_TIMEOUT_S = 60
MB = 1024 * 1024


@pytest.fixture
def proxy(provider: ProviderServer, ci_shark_cli: list[str]) -> Iterator[FaultProxy]:
    with FaultProxy(provider.issuer) as running:
        yield running


def job(provider: ProviderServer, proxy: FaultProxy, tmp: Path, *, timeout: str = "60") -> CliJob:
    env = login_env(
        tmp,
        auth_url=provider.issuer,
        client_id=CLIENT_ID,
        scope=SCOPE,
        timeout=timeout,
        CI_SHARK_DEVICE_AUTHORIZATION_ENDPOINT=f"{proxy.url}{DEVICE}",
        CI_SHARK_TOKEN_ENDPOINT=f"{proxy.url}{TOKEN}",
    )
    return CliJob([], env, cwd=tmp)


def approved_through_faults(
    provider: ProviderServer, proxy: FaultProxy, tmp: Path
) -> tuple[CliJob, dict[str, Any]]:
    """Run the job; approve once the scripted token-endpoint faults are used up."""
    with job(provider, proxy, tmp) as running:
        link, code = wait_for_link(running, timeout_s=30)
        proxy.wait_consumed(TOKEN, timeout_s=30)
        approve(link, code)
        rc = running.wait(JOB_TIMEOUT_S)
    assert rc == 0, f"{running.transcript()}\nproxy: {proxy.summary()}"
    outputs = read_json_outputs(tmp / "out.json")
    assert_bound_token(provider, outputs)
    return running, outputs


def assert_bound_token(provider: ProviderServer, outputs: dict[str, Any]) -> None:
    assert outputs["SHARK_TOKEN_TYPE"] == "DPoP"
    response = httpx.post(
        provider.introspection_endpoint,
        data={"token": outputs["SHARK_ACCESS_TOKEN"]},
        auth=(RS_CLIENT_ID, RS_CLIENT_SECRET),
        timeout=10,
    )
    info = response.json()
    assert info["active"] is True, info
    assert info["cnf"] == {"jkt": outputs["SHARK_DPOP_JKT"]}


def kinds(proxy: FaultProxy, path: str) -> list[str]:
    return [str(exchange.fault) for exchange in proxy.seen(path)]


def test_clean_path_through_the_proxy(
    provider: ProviderServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    """No faults: the Host-preserving proxy keeps DPoP htu what the provider expects."""
    approved_through_faults(provider, proxy, tmp_path)
    assert kinds(proxy, DEVICE) == ["forward"]
    assert {exchange.upstream_status for exchange in proxy.seen(TOKEN)} <= {200, 400}
    assert proxy.seen(TOKEN)[-1].upstream_status == 200


def test_5xx_burst_while_polling(
    provider: ProviderServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.script(TOKEN, status(503), status(502), status(500), status(504))
    approved_through_faults(provider, proxy, tmp_path)
    assert kinds(proxy, TOKEN)[:4] == ["status 503", "status 502", "status 500", "status 504"]


def test_5xx_burst_at_device_authorization(
    provider: ProviderServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.script(DEVICE, status(503), status(500), status(502))
    approved_through_faults(provider, proxy, tmp_path)
    assert kinds(proxy, DEVICE) == ["status 503", "status 500", "status 502", "forward"]


def test_connection_resets(provider: ProviderServer, proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.script(DEVICE, reset())
    proxy.script(TOKEN, reset(), reset())
    approved_through_faults(provider, proxy, tmp_path)
    assert kinds(proxy, DEVICE) == ["reset", "forward"]
    assert kinds(proxy, TOKEN)[:2] == ["reset", "reset"]


def test_429_retry_after_while_polling(
    provider: ProviderServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.script(TOKEN, status(429, retry_after="3"))
    approved_through_faults(provider, proxy, tmp_path)
    throttled, after = proxy.seen(TOKEN)[:2]
    assert str(throttled.fault) == "status 429"
    gap_s = after.arrived_at - throttled.arrived_at
    assert gap_s >= 2.9, f"polled again {gap_s:.2f} s after a 429 with Retry-After: 3"


def test_429_retry_after_at_device_authorization(
    provider: ProviderServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.script(DEVICE, status(429, retry_after="2"))
    approved_through_faults(provider, proxy, tmp_path)
    throttled, after = proxy.seen(DEVICE)
    gap_s = after.arrived_at - throttled.arrived_at
    assert gap_s >= 1.9, f"asked again {gap_s:.2f} s after a 429 with Retry-After: 2"


def test_truncated_bodies(provider: ProviderServer, proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.script(DEVICE, truncate())
    proxy.script(TOKEN, truncate(), truncate())
    approved_through_faults(provider, proxy, tmp_path)
    assert kinds(proxy, DEVICE) == ["truncate", "forward"]
    assert kinds(proxy, TOKEN)[:2] == ["truncate", "truncate"]


def test_slow_answers(provider: ProviderServer, proxy: FaultProxy, tmp_path: Path) -> None:
    proxy.script(DEVICE, delay(1.5))
    proxy.script(TOKEN, delay(2), delay(2))
    approved_through_faults(provider, proxy, tmp_path)


def test_oversized_5xx_body_is_a_transient_failure(
    provider: ProviderServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.script(TOKEN, oversize(503, 16 * MB), oversize(502, 16 * MB, chunked=True))
    approved_through_faults(provider, proxy, tmp_path)
    oversized = proxy.seen(TOKEN)[:2]
    # The client hung up instead of reading 16 MB (its cap is 1 MiB): the proxy's thread
    # marks that when its next send fails.
    until(lambda: all(e.client_gone for e in oversized), "the proxy saw both hang-ups")


def test_oversized_token_response_is_refused(
    provider: ProviderServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.script(TOKEN, oversize(200, 16 * MB, chunked=True))
    with job(provider, proxy, tmp_path) as running:
        wait_for_link(running)
        rc = running.wait(30)
    assert rc == 5, f"{running.transcript()}\nproxy: {proxy.summary()}"
    # It hung up: the proxy's thread sees that at its next send, which may come after the
    # job's exit.
    until(lambda: proxy.seen(TOKEN)[0].client_gone, "the proxy saw the hang-up")
    assert not (tmp_path / "out.json").exists()


def test_latency_beyond_the_deadline_exits_4_on_time(
    provider: ProviderServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Every poll's answer is held 20 s: the read timeout is capped by the deadline."""
    proxy.always(TOKEN, delay(20))
    started = time.monotonic()
    with job(provider, proxy, tmp_path, timeout="4") as running:
        wait_for_link(running)
        rc = running.wait(30)
    elapsed_s = time.monotonic() - started
    assert rc == 4, f"{running.transcript()}\nproxy: {proxy.summary()}"
    assert elapsed_s < 12, f"took {elapsed_s:.1f} s with a 4 s timeout\n{running.transcript()}"
    assert not (tmp_path / "out.json").exists()


def test_token_endpoint_outage_outlasting_the_deadline_exits_4(
    provider: ProviderServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    proxy.always(TOKEN, status(503))
    started = time.monotonic()
    with job(provider, proxy, tmp_path, timeout="4") as running:
        link, code = wait_for_link(running)
        approve(link, code)  # approved, but the job never hears of it
        rc = running.wait(30)
    elapsed_s = time.monotonic() - started
    assert rc == 4, f"{running.transcript()}\nproxy: {proxy.summary()}"
    assert elapsed_s < 12
    assert len(proxy.seen(TOKEN)) >= 2
    assert not (tmp_path / "out.json").exists()


def test_device_endpoint_outage_outlasting_the_deadline_exits_1(
    provider: ProviderServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    """README, "Commands and exit codes": exit 1 is "a server unreachable until the deadline"."""
    proxy.always(DEVICE, status(503))
    started = time.monotonic()
    with job(provider, proxy, tmp_path, timeout="4") as running:
        rc = running.wait(30)
    elapsed_s = time.monotonic() - started
    assert rc == 1, f"{running.transcript()}\nproxy: {proxy.summary()}"
    assert elapsed_s < 12
    assert len(proxy.seen(DEVICE)) >= 2, "no retry"
    assert "approval needed" not in running.stderr  # no code was ever shown
    assert not (tmp_path / "out.json").exists()


def test_lost_token_response_cannot_be_recovered(
    provider: ProviderServer, proxy: FaultProxy, tmp_path: Path
) -> None:
    """The 200 with the tokens is cut in transit: the code is spent, the grant revoked.

    Not a client bug: RFC 8628 has no way to fetch the answer again. The client
    must fail cleanly (no outputs, a non-zero exit) rather than hang or loop.
    """
    proxy.always(TOKEN, truncate(only_status=200))
    with job(provider, proxy, tmp_path) as running:
        link, code = wait_for_link(running)
        approve(link, code)
        rc = running.wait(JOB_TIMEOUT_S)
    seen = proxy.seen(TOKEN)
    granted = [exchange for exchange in seen if exchange.upstream_status == 200]
    assert [str(exchange.fault) for exchange in granted] == ["truncate"], proxy.summary()
    later = [exchange for exchange in seen if exchange.arrived_at > granted[0].arrived_at]
    assert later, f"the client gave up without asking again: {proxy.summary()}"
    assert rc not in (0, 3, 4), running.transcript()
    assert not (tmp_path / "out.json").exists()
