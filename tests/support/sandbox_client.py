"""A small, independent client of the loopback sandbox (``ci_shark.sandbox``): the device
flow with DPoP proofs from :mod:`support.dpop_proofs`, never ci_shark's own client code."""

from __future__ import annotations

import contextlib
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
from joserfc.jwk import ECKey

from ci_shark.sandbox import DEVICE_CODE_GRANT_TYPE, SandboxServer
from support.ci_tokens import JWT_BEARER
from support.dpop_proofs import DpopKey, make_proof

CLIENT_ID = "ci-shark-tests"
# Everything here is plain loopback http; one shared context spares every httpx.Client the
# ~0.1 s of loading the CA bundle.
SSL_CONTEXT = ssl.create_default_context()


def http_client(**options: Any) -> httpx.Client:
    return httpx.Client(verify=SSL_CONTEXT, **options)


class Client:
    """A minimal DPoP client of one sandbox: remembers the newest nonce from every answer."""

    def __init__(self, server: SandboxServer, http: httpx.Client, key: ECKey | None = None):
        self.server = server
        self.http = http
        self.key = key or ECKey.generate_key("P-256")
        self.nonce: str | None = None

    def _remember(self, response: httpx.Response) -> httpx.Response:
        self.nonce = response.headers.get("DPoP-Nonce", self.nonce)
        return response

    def device(self, **data: Any) -> dict[str, Any]:
        response = self._remember(
            self.http.post(f"{self.server.url}/oauth/device", data={"client_id": CLIENT_ID, **data})
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def token_request(self, data: dict[str, str], *, proof: str | None = None) -> httpx.Response:
        url = f"{self.server.url}/oauth/token"
        headers = {"DPoP": proof or make_proof(self.key, "POST", url, nonce=self.nonce)}
        return self._remember(self.http.post(url, data=data, headers=headers))

    def poll(self, device_code: str) -> httpx.Response:
        data = {"grant_type": DEVICE_CODE_GRANT_TYPE, "device_code": device_code}
        data["client_id"] = CLIENT_ID
        response = self.token_request(data)
        if response.status_code == 400 and response.json()["error"] == "use_dpop_nonce":
            response = self.token_request(data)  # RFC 9449 §8: retry once with the nonce
        return response

    def userinfo(self, token: str, *, nonce: str | None = None) -> httpx.Response:
        url = f"{self.server.url}/userinfo"
        proof = make_proof(self.key, "GET", url, nonce=nonce or self.nonce, access_token=token)
        headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
        return self._remember(self.http.get(url, headers=headers))

    def introspect(self, token: str) -> dict[str, Any]:
        response = self.http.post(f"{self.server.url}/oauth/introspect", data={"token": token})
        assert response.status_code == 200
        return dict(response.json())


class WorkloadClient:
    """A device-flow client of a sandbox at ``url`` that authenticates every request with a
    fresh CI token from ``ci_token()`` (RFC 7523), and signs DPoP proofs with its own key."""

    def __init__(self, url: str, http: httpx.Client, ci_token: Callable[[], str]) -> None:
        self.url = url
        self.http = http
        self.ci_token = ci_token
        self.key = DpopKey()

    def authentication(self, assertion: str | None = None) -> dict[str, str]:
        return {
            "client_id": CLIENT_ID,
            "client_assertion_type": JWT_BEARER,
            "client_assertion": assertion or self.ci_token(),
        }

    def device(self, **extra: str) -> httpx.Response:
        return self.http.post(f"{self.url}/oauth/device", data={**self.authentication(), **extra})

    def token(self, data: dict[str, str], *, retry_nonce: bool = True) -> httpx.Response:
        """A token request; after use_dpop_nonce, once more with a fresh proof and CI token."""
        url = f"{self.url}/oauth/token"
        response = self.key.post(self.http, url, {**self.authentication(), **data})
        if retry_nonce and response.status_code == 400 and error_of(response) == "use_dpop_nonce":
            response = self.key.post(self.http, url, {**self.authentication(), **data})
        return response

    def poll(self, device_code: str) -> httpx.Response:
        return self.token({"grant_type": DEVICE_CODE_GRANT_TYPE, "device_code": device_code})

    def refresh(self, refresh_token: str) -> httpx.Response:
        return self.token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def revoke(self, token: str, *, authenticated: bool = True) -> httpx.Response:
        data = {"token": token, **(self.authentication() if authenticated else {})}
        return self.http.post(f"{self.url}/oauth/revoke", data=data)


def error_of(response: httpx.Response) -> str:
    return str(response.json()["error"])


def page_token_of(page: str) -> str:
    """The form token of an approval page (its Approve/Deny buttons post it)."""
    match = re.search(r'name="page_token" value="([^"]+)"', page)
    assert match, "the page has no Approve/Deny form"
    return match[1]


def granted(client: Client, **device_params: Any) -> dict[str, Any]:
    """Run the device flow to a token response."""
    device = client.device(**device_params)
    client.server.approve(device["user_code"])
    response = client.poll(device["device_code"])
    assert response.status_code == 200, response.text
    return dict(response.json())


@contextlib.contextmanager
def standalone(*flags: str) -> Iterator[str]:
    """``python -m ci_shark.sandbox --port 0 FLAGS``: yields its URL; SIGTERM must stop it."""
    with standalone_lines(*flags) as (url, _):
        yield url


@contextlib.contextmanager
def standalone_lines(*flags: str, then: int = 0) -> Iterator[tuple[str, list[str]]]:
    """``standalone``, yielding also the ``then`` lines it prints after its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ci_shark.sandbox", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"ci_shark sandbox listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, line
        yield match[1], [process.stdout.readline().rstrip("\n") for _ in range(then)]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
