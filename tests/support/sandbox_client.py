"""A small, independent client of the loopback sandbox (``ci_shark.sandbox``): the device
flow with DPoP proofs from :mod:`support.dpop_proofs`, never ci_shark's own client code."""

from __future__ import annotations

import contextlib
import re
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
from joserfc.jwk import ECKey

from ci_shark.sandbox import DEVICE_CODE_GRANT_TYPE, SandboxServer
from support.dpop_proofs import make_proof

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


def error_of(response: httpx.Response) -> str:
    return str(response.json()["error"])


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
        yield match[1]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
