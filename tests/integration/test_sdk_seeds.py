"""The SharkAuth SDK's documented Python examples, run unchanged against the sandbox with
only the import line changed (issues 10 and 20): users of the SDK switch by changing the
import.

The first examples are quoted from the SDK's docs in /work/shared/seeds ("Device flow" and
"OAuthClient.get_token_with_dpop()"). The seeds show no example for the rest of
shark-auth 0.1.1's surface (``private_key_pem``/``from_pem``, ``DPoPHTTPClient``,
``revoke_token``, ``introspect_token``, ``refresh_token``, ``token_exchange``): those
examples make the calls exactly as its README and docstrings document them, with the same
signatures and arguments. The only other edits are the deployment's own values: the
server's and the API's URLs (the loopback sandbox), and the tokens a previous step got.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from support.cli import clean_env, login_env, run_cli, run_process

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


# Quickstart "DPoPProver": persist the key, load it back (PKCS#8 PEM bytes).
KEY_ROUND_TRIP = """
from ci_shark import DPoPProver
prover = DPoPProver.generate()
pem = prover.private_key_pem()
# ...store `pem` safely, then later:
restored = DPoPProver.from_pem(pem)
assert restored.jkt == prover.jkt
assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
print(repr(pem), pem.decode().count("PRIVATE KEY"))
"""

# A device-flow token for the examples below (the seeds' DPoP-bound device flow).
APPROVED = """
from ci_shark import DPoPHTTPClient, DPoPProver, DeviceFlow, OAuthClient
prover = DPoPProver.generate()
flow = DeviceFlow(auth_url="https://auth.example.com", client_id="my-app",
                  scope="mcp:read mcp:write", dpop_prover=prover)
flow.begin()
token = flow.wait_for_approval(timeout_s=300)
at = token.access_token
"""

# DPoPHTTPClient: get_with_dpop as the class documents it, then its context-manager form
# with post_with_dpop and delete_with_dpop.
DPOP_HTTP = """
client = DPoPHTTPClient("https://auth.example.com")
resp = client.get_with_dpop("/api/v1/auth/me", token=at, prover=prover)
resp.raise_for_status()
print("get", resp.json()["method"], resp.json()["scheme"])
with DPoPHTTPClient("https://auth.example.com") as http:
    resp = http.post_with_dpop("/api/v1/auth/me", token=at, prover=prover, json={"a": 1})
    print("post", resp.status_code, resp.json()["body"])
    resp = http.delete_with_dpop("/api/v1/auth/me", token=at, prover=prover,
                                 params={"id": "7"})
    print("delete", resp.status_code, resp.json()["path"])
"""

# OAuthClient: introspect_token, then revoke_token, then introspect_token again.
REVOKE_AND_INTROSPECT = """
client = OAuthClient(base_url="https://auth.example.com", token="sk_live_...")
info = client.introspect_token(at)
if info["active"]:
    print("sub:", info.get("sub"))
client.revoke_token(at, "access_token")
info = client.introspect_token(at)
print(info["active"])
"""

# OAuthClient.refresh_token as the SDK documents it, for a grant that is not DPoP-bound.
REFRESH_TOKEN_BEARER = """
from ci_shark import DeviceFlow, OAuthClient
flow = DeviceFlow(auth_url="https://auth.example.com", client_id="my-app", scope="mcp:read")
flow.begin()
old_token = flow.wait_for_approval(timeout_s=300)
client = OAuthClient(base_url="https://auth.example.com")
new_tok = client.refresh_token(
    old_token.refresh_token,
    client_id="my-app",
)
print(new_tok.token_type, new_tok.access_token != old_token.access_token)
"""

# The same call with the prover ci_shark adds: a bound grant stays bound to the same key.
REFRESH_TOKEN = """
client = OAuthClient(base_url="https://auth.example.com")
new_tok = client.refresh_token(
    token.refresh_token,
    client_id="my-app",
    dpop_prover=prover,
)
assert new_tok.cnf_jkt == prover.jkt
assert new_tok.access_token != token.access_token
narrower = client.refresh_token(new_tok.refresh_token, scope="mcp:read", client_id="my-app",
                                dpop_prover=prover)
print(narrower.token_type, narrower.scope)
"""

# OAuthClient.token_exchange as its docstring shows it: a client_credentials parent, then
# a narrower child bound to the same key.
TOKEN_EXCHANGE = """
from ci_shark import DPoPProver, OAuthClient
prover = DPoPProver.generate()
client = OAuthClient(base_url="https://auth.example.com")
parent = client.get_token_with_dpop(
    grant_type="client_credentials",
    dpop_prover=prover,
    client_id="agent-a",
    client_secret="s3cr3t",
    scope="mcp:read mcp:write",
)
child = client.token_exchange(
    subject_token=parent.access_token,
    client_id="agent-a",
    client_secret="s3cr3t",
    dpop_prover=prover,
    scope="mcp:read",
    audience="https://mcp.example.com",
)
assert child.cnf_jkt == parent.cnf_jkt  # same keypair bound
print(child.scope)  # "mcp:read"
print(child.access_token == parent.access_token, child.raw["issued_token_type"])
"""


def test_the_key_round_trip_runs_unchanged(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    code, out, err = run_example(KEY_ROUND_TRIP, sandbox_factory(), tmp_path)
    assert code == 0, err
    assert out.split() == ["b'***'", "2"]  # the key never prints


def test_the_dpop_http_client_answers_the_apis_nonce(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)  # nonces required, at the API too
    example = DPOP_HTTP.replace("/api/v1/auth/me", "/api/echo")  # the API's path
    code, out, err = run_example(APPROVED + example, server, tmp_path)
    assert code == 0, err
    assert out.splitlines()[-3:] == [
        "get GET DPoP",
        'post 200 {"a":1}',
        "delete 200 /api/echo?id=7",
    ]
    # Each client learnt the API's nonce from a challenge, once, and answered it.
    echoes = server.stats.outcomes("/api/echo")
    assert echoes == ["use_dpop_nonce", "echo", "use_dpop_nonce", "echo", "echo"], echoes


def test_revoke_and_introspect_run_unchanged(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1, subject="maintainer")
    code, out, err = run_example(APPROVED + REVOKE_AND_INTROSPECT, server, tmp_path)
    assert code == 0, err
    assert out.splitlines()[-2:] == ["sub: maintainer", "False"]
    assert server.stats.outcomes("/oauth/revoke") == ["revoked"]


def test_refresh_token_runs_unchanged(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory(approve_after_s=1, require_dpop=False)
    code, out, err = run_example(REFRESH_TOKEN_BEARER, server, tmp_path)
    assert code == 0, err
    assert out.splitlines()[-1] == "Bearer True"


def test_refresh_token_stays_bound_to_the_provers_key(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)  # its refresh tokens are DPoP-bound
    code, out, err = run_example(APPROVED + REFRESH_TOKEN, server, tmp_path)
    assert code == 0, err
    assert out.splitlines()[-1] == "DPoP mcp:read"
    assert server.stats.outcomes("/oauth/token")[-2:] == ["refreshed", "refreshed"]


def test_token_exchange_runs_unchanged(sandbox_factory: SandboxFactory, tmp_path: Path) -> None:
    server = sandbox_factory(client_secrets={"agent-a": "s3cr3t"})
    code, out, err = run_example(TOKEN_EXCHANGE, server, tmp_path)
    assert code == 0, err
    assert out.splitlines() == [
        "mcp:read",
        "False urn:ietf:params:oauth:token-type:access_token",
    ]
    assert "s3cr3t" not in out + err


# A later step of the job: the login's token and key, traded for a narrower token for one
# API (RFC 8693), which the step then uses; nothing but the files the login wrote.
LATER_STEP = """
import json, os
from ci_shark import DPoPHTTPClient, DPoPProver, OAuthClient
login = json.load(open(os.environ["LOGIN_OUTPUTS"]))
with open(login["SHARK_DPOP_KEY_FILE"], "rb") as key_file:
    prover = DPoPProver.from_pem(key_file.read())
client = OAuthClient(base_url="https://auth.example.com")
narrow = client.token_exchange(
    subject_token=login["SHARK_ACCESS_TOKEN"],
    client_id="ci-shark-test",
    dpop_prover=prover,
    scope="deploy:read",
    audience="https://api.example.com",
)
with DPoPHTTPClient("https://auth.example.com") as api:
    echo = api.get_with_dpop("/api/echo", token=narrow.access_token, prover=prover).json()
seen = client.introspect_token(narrow.access_token)
print(echo["scope"], echo["jkt"] == login["SHARK_DPOP_JKT"], seen["aud"], repr(narrow))
"""


def test_a_later_step_trades_the_approved_token_for_a_narrower_one(
    sandbox_factory: SandboxFactory, tmp_path: Path
) -> None:
    server = sandbox_factory(approve_after_s=1)
    outputs = tmp_path / "out.json"
    login = run_cli([], login_env(server, tmp_path, CI_SHARK_SCOPE="deploy:write deploy:read"))
    assert login.returncode == 0, login.stderr
    step = LATER_STEP.replace("https://auth.example.com", server.url)
    done = run_process(
        [sys.executable, "-c", step], clean_env({"LOGIN_OUTPUTS": str(outputs)}), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    scope, same_key, audience, shown = done.stdout.split(" ", 3)
    assert (scope, same_key, audience) == ("deploy:read", "True", "https://api.example.com")
    assert "access_token='***'" in shown
    assert json.loads(outputs.read_text())["SHARK_ACCESS_TOKEN"] not in done.stdout
