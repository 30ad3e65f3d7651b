"""Regenerate docs/approving-sandbox.png: the sandbox's approval page in headless Chromium.

Usage:
  .venv/bin/python scripts/approving_screenshot.py [OUT.png]   (default: docs/approving-sandbox.png)

A sandbox on 127.0.0.1:8787 (any free port if taken) trusts a fake CI issuer that signs
tokens shaped like GitHub's, ``iss`` included; a device request authenticated by one (the
repository octo/app, its main branch), with a scope and a binding message, is what a GitHub
job with workload identity sends. Debian's Chromium (/usr/bin/chromium; never
``playwright install``) opens the link 900 px wide (one device pixel per CSS pixel, about
120 KB), every request off loopback blocked, and saves the whole page. Needs the test extra
(playwright).
"""

from __future__ import annotations

import socket
import sys
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import httpx

from ci_shark.sandbox import JWT_BEARER, ClaimRule, FakeCiIssuer, SandboxServer

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "approving-sandbox.png"
CHROMIUM = Path("/usr/bin/chromium")
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
WIDTH = 900
PORT = 8787


def _free(port: int) -> int:
    with socket.socket() as probe:
        return port if probe.connect_ex(("127.0.0.1", port)) != 0 else 0


def _only_loopback(route: Any) -> None:
    if urllib.parse.urlsplit(route.request.url).hostname == "127.0.0.1":
        route.continue_()
    else:
        route.abort()


def screenshot(out: Path, chromium: Path = CHROMIUM) -> Path:
    """Open a pending approval page and save it to ``out``."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - a test-only tool

    with FakeCiIssuer() as ci, tempfile.TemporaryDirectory() as tmp:
        jwks = Path(tmp) / "jwks.json"
        jwks.write_bytes(ci.jwks_document())
        rules = [ClaimRule.parse("ci-shark:repository=octo/app")]
        options = {"trust_ci_issuer": str(jwks), "ci_issuer": GITHUB_ISSUER, "ci_allow": rules}
        with SandboxServer(port=_free(PORT), **options) as server, httpx.Client() as http:
            data = {
                "client_id": "ci-shark",
                "scope": "deploy:write",
                "binding_message": "deploy v1.4.2 to production",
                "client_assertion_type": JWT_BEARER,
                "client_assertion": ci.mint(server.url, iss=GITHUB_ISSUER),
            }
            response = http.post(f"{server.url}/oauth/device", data=data)
            response.raise_for_status()
            link = response.json()["verification_uri_complete"]
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(chromium), headless=True, args=["--no-sandbox"]
                )
                try:
                    page = browser.new_page(viewport={"width": WIDTH, "height": 600})
                    page.route("**/*", _only_loopback)
                    page.goto(link)
                    page.screenshot(path=str(out), full_page=True, type="png")
                finally:
                    browser.close()
    return out


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else DEFAULT_OUT
    screenshot(out)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
