"""The SharkAuth SDK's documented Python examples, run unchanged against the sandbox with
only the import line changed (issue 10): users of the SDK switch by changing the import.

The examples are quoted from the SDK's docs ("Device flow" and
"OAuthClient.get_token_with_dpop()"); the only other edits are the deployment's own values,
the server's and the API's URLs, which here point at the loopback sandbox.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support.cli import clean_env, run_process

from ci_shark.sandbox import SandboxServer

SandboxFactory = Callable[..., SandboxServer]

# "Device flow", the first example: only the import line differs.
DEVICE_FLOW = """
from ci_shark import DeviceFlow
flow = DeviceFlow(
auth_url="https://auth.example.com",
client_id="shark_agent_xxx",
scope="calendar:read",
)
init = flow.begin()
print("Visit:", init.verification_uri)
print("Code:", init.user_code)
# Or print verification_uri_complete which embeds the code.
token = flow.wait_for_approval(timeout_s=300)
print(token.access_token)
"""

# "DPoP-bound device flow": only the import line differs.
DPOP_DEVICE_FLOW = """
from ci_shark import DPoPProver, DeviceFlow
prover = DPoPProver.generate()
flow = DeviceFlow(
auth_url="https://auth.example.com",
client_id="shark_agent_xxx",
scope="calendar:read",
dpop_prover=prover,
)
init = flow.begin()
token = flow.wait_for_approval(timeout_s=300)
# token bound to prover.jkt
assert token.cnf_jkt == prover.jkt
"""

# OAuthClient.get_token_with_dpop(), "Example Usage" and "Error Handling": the imports differ.
GET_TOKEN_WITH_DPOP = """
from ci_shark import DPoPProver, OAuthClient

# 1. Generate a fresh P-256 keypair (or load one with DPoPProver.from_pem())
prover = DPoPProver.generate()

# 2. Build the client
client = OAuthClient(base_url="https://auth.example.com")

# 3. Request a DPoP-bound token
token = client.get_token_with_dpop(
    grant_type="client_credentials",
    dpop_prover=prover,
    client_id="my-agent",
    client_secret="s3cr3t",
    scope="read write",
)

# 4. Verify binding
assert token.cnf_jkt == prover.jkt  # True — proof of possession

# 5. Use the token in a downstream request
import requests
resp = requests.get(
    "https://api.example.com/resource",
    headers={
        "Authorization": f"DPoP {token.access_token}",
        "DPoP": prover.make_proof(htm="GET", htu="https://api.example.com/resource",
                                   access_token=token.access_token),
    },
)

from ci_shark.errors import OAuthError

try:
    token = client.get_token_with_dpop(
        grant_type="client_credentials",
        dpop_prover=prover,
        client_id="my-agent",
        client_secret="wrong",
    )
except OAuthError as e:
    print(e.error)              # "invalid_client"
    print(e.error_description)  # "bad secret" (server-provided, may be None)
    print(e.status_code)        # 401
print("resource", resp.status_code)
"""

# Refresh in the SDK's shape (issue 10): the device flow's refresh token, then
# get_token_with_dpop(grant_type="refresh_token", ...), bound to the same key.
REFRESH = """
from ci_shark import DPoPProver, DeviceFlow, OAuthClient
prover = DPoPProver.generate()
flow = DeviceFlow(auth_url="https://auth.example.com", client_id="shark_agent_xxx",
                  scope="calendar:read", dpop_prover=prover)
flow.begin()
first = flow.wait_for_approval(timeout_s=300)
client = OAuthClient(base_url="https://auth.example.com")
token = client.get_token_with_dpop(grant_type="refresh_token",
                                   refresh_token=first.refresh_token,
                                   dpop_prover=prover, client_id="shark_agent_xxx")
assert token.cnf_jkt == prover.jkt
assert token.access_token != first.access_token
assert "refresh_token" in token.raw
print(repr(token))
"""


def run_example(code: str, server: SandboxServer, tmp: Path) -> tuple[int, str, str]:
    code = code.replace("https://auth.example.com", server.url)
    code = code.replace("https://api.example.com/resource", f"{server.url}/api/echo")
    done = run_process([sys.executable, "-c", code], clean_env(), cwd=tmp)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("example", [DEVICE_FLOW, DPOP_DEVICE_FLOW], ids=["plain", "dpop"])
def test_the_device_flow_examples_run_unchanged(
    sandbox_factory: SandboxFactory, tmp_path: Path, example: str
) -> None:
    server = sandbox_factory(approve_after_s=1, require_dpop=False)
    code, out, err = run_example(example, server, tmp_path)
    assert code == 0, err
    if example is DEVICE_FLOW:
        assert f"Visit: {server.url}/device" in out


def test_get_token_with_dpop_runs_unchanged(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    # The example's own `requests.get` cannot answer a nonce challenge (the SDK has no way
    # to): this server asks for none. `ci-shark request` answers them (test_use_the_token).
    server = sandbox_factory(client_secrets={"my-agent": "s3cr3t"}, require_nonce=False)
    code, out, err = run_example(GET_TOKEN_WITH_DPOP, server, tmp_path)
    assert code == 0, err
    error, description, status, resource = out.splitlines()[-4:]
    assert (error, status, resource) == ("invalid_client", "401", "resource 200")
    assert description != "None"
    assert "s3cr3t" not in out + err


def test_refresh_in_the_sdks_shape(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory(approve_after_s=1)
    code, out, err = run_example(REFRESH, server, tmp_path)
    assert code == 0, err
    assert "access_token='***'" in out  # the token object hides it
