"""A proxy set in the environment never sees loopback traffic (issue 21), through the CLI.

The URL rule allows plain ``http://`` to every loopback host (all of 127.0.0.0/8,
``localhost``, ``::1``): each of them must also bypass ``HTTP(S)_PROXY``, or a login,
``request`` or ``refresh`` against ``http://127.0.0.2`` hands the token, in clear, to the
proxy. Anything else still goes through the proxy (self-hosted runners need it)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from support.cli import clean_env, login_env, run_cli
from support.recording_proxy import RecordingProxy

from ci_shark.sandbox import SandboxServer

SandboxFactory = Callable[..., SandboxServer]
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture
def proxy() -> Iterator[RecordingProxy]:
    proxy = RecordingProxy().start()
    yield proxy
    proxy.stop()


def through(proxy: RecordingProxy, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with every proxy variable (both spellings) pointing at ``proxy``, and no
    NO_PROXY to exempt anything."""
    names = {*PROXY_VARIABLES, *(name.lower() for name in PROXY_VARIABLES)}
    proxied = {name: value for name, value in env.items() if name.upper() != "NO_PROXY"}
    return {**proxied, **dict.fromkeys(names, proxy.url)}


def test_login_request_refresh_and_revoke_on_127_0_0_2_go_direct(
    sandbox_factory: SandboxFactory, proxy: RecordingProxy, tmp_path: Path
) -> None:
    server = sandbox_factory(host="127.0.0.2", approve_after_s=1)
    assert server.url.startswith("http://127.0.0.2:")
    login = run_cli([], through(proxy, login_env(server, tmp_path)), cwd=tmp_path)
    assert login.returncode == 0, login.log
    credentials = ["--credentials", str(tmp_path / "out.json")]
    env = through(proxy, clean_env())

    done = run_cli(["request", *credentials, f"{server.url}/api/echo"], env, cwd=tmp_path)
    assert done.returncode == 0, done.log
    assert json.loads(done.stdout)["path"] == "/api/echo"  # the sandbox answered, directly
    for command in ("refresh", "revoke"):
        done = run_cli([command, *credentials], env, cwd=tmp_path)
        assert done.returncode == 0, done.log

    assert proxy.heads == []


def test_a_host_that_is_not_loopback_still_goes_through_the_proxy(
    proxy: RecordingProxy, tmp_path: Path
) -> None:
    token = "at-through-the-proxy-0123456789"
    env = through(proxy, clean_env({"SHARK_ACCESS_TOKEN": token, "SHARK_TOKEN_TYPE": "Bearer"}))
    done = run_cli(["request", "https://api.ci-shark.example/deploy"], env, cwd=tmp_path)

    # The proxy was asked for a tunnel (and refused it): the token would have gone inside
    # TLS, and never reached the proxy.
    assert proxy.request_lines == ["CONNECT api.ci-shark.example:443 HTTP/1.1"]
    assert all(token.encode() not in head for head in proxy.heads)
    assert done.returncode == 1, done.log
    assert "could not reach https://api.ci-shark.example/deploy: the proxy refused" in done.stderr
    assert token not in done.log
