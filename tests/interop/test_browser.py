"""A real browser: Debian's Chromium, driven by Playwright, approves on the provider, and on
the sandbox's consent page (workload identity).

Never `playwright install`: the browser is the system's /usr/bin/chromium. Every
request that is not for 127.0.0.1 is aborted (the provider's pages @import a web
font), so the test never leaves the machine. A screenshot of each page the
maintainer saw is kept under the test's tmp dir.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from github_runner import PR_NUMBER, github_step, link_from_pr_comment
from oidc_peer import CLIENT_ID, REPO_ROOT, SCOPE, WI_CLIENT_ID, ProviderServer, wait_for_link
from peers import login_env
from support.ci_tokens import JWT_BEARER, fetch_github_token
from support.cli import CliJob
from support.dpop_proofs import DpopKey
from support.job_outputs import read_json_outputs
from support.required import missing
from support.sandbox_client import WorkloadClient, http_client

from ci_shark.sandbox import FakeCiIssuer, SandboxServer

pytestmark = [pytest.mark.interop, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
STEP_TIMEOUT_MS = 15_000
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 - optional tool
    except ImportError:
        missing(
            "Playwright for Python is missing: pip install playwright (never `playwright install`)"
        )
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} not found (Debian: apt-get install -y chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


class Maintainer:
    """One browser context (cookie jar) with the loopback-only network rule."""

    def __init__(self, browser: Any, shots: Path) -> None:
        self.context = browser.new_context()
        self.context.set_default_timeout(STEP_TIMEOUT_MS)
        self.blocked: list[str] = []
        self.context.route("**/*", self._only_loopback)
        self.page = self.context.new_page()
        self.shots = shots
        self.shots.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    def _only_loopback(self, route: Any) -> None:
        url = route.request.url
        if urllib.parse.urlsplit(url).hostname == "127.0.0.1":
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def shot(self, name: str) -> Path:
        path = self.shots / f"{len(self.taken):02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path

    def close(self) -> None:
        self.context.close()

    def open_link(self, link: str, user_code: str) -> None:
        # verification_uri_complete auto-submits (JavaScript) to the confirmation page
        self.page.goto(link)
        self.page.wait_for_selector("form#op\\.deviceConfirmForm", state="attached")
        assert self.page.title() == "Device Login Confirmation"
        assert self.page.inner_text("code").strip() == user_code
        self.shot("confirm")

    def approve(self, link: str, user_code: str, account: str = "maintainer") -> None:
        self.open_link(link, user_code)
        self.page.click("button[autofocus]:has-text('Continue')")
        self.page.wait_for_selector("input[name=login]")
        self.page.fill("input[name=login]", account)
        self.page.fill("input[name=password]", "correct horse battery staple")
        self.shot("login")
        self.page.click("button:has-text('Sign-in')")
        self.page.wait_for_selector("input[name=prompt][value=consent]", state="attached")
        self.shot("consent")
        self.page.click("button:has-text('Continue')")
        self.page.wait_for_function("document.title === 'Sign-in Success'")
        self.shot("success")

    def abort(self, link: str, user_code: str) -> None:
        self.open_link(link, user_code)
        self.page.click("button[name=abort]")
        self.page.wait_for_selector("text=The Sign-in request was interrupted")
        self.shot("aborted")


@pytest.fixture
def maintainer(browser: Any, tmp_path: Path) -> Iterator[Maintainer]:
    person = Maintainer(browser, tmp_path / "screenshots")
    try:
        yield person
    finally:
        person.close()
    for path in person.taken:
        assert path.stat().st_size > 1000, f"empty screenshot {path}"


def test_browser_approves_a_hand_driven_flow(
    provider: ProviderServer, maintainer: Maintainer
) -> None:
    with httpx.Client(timeout=10) as http:
        start = http.post(
            provider.device_authorization_endpoint, data={"client_id": CLIENT_ID, "scope": SCOPE}
        ).json()
        maintainer.approve(start["verification_uri_complete"], start["user_code"])
        key = DpopKey()
        data = {
            "grant_type": DEVICE_GRANT,
            "device_code": start["device_code"],
            "client_id": CLIENT_ID,
        }
        response = key.post(http, provider.token_endpoint, data)
        if response.json().get("error") == "use_dpop_nonce":
            response = key.post(http, provider.token_endpoint, data)
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    # The network rule held: the provider's web-font @import never left the machine.
    assert any("fonts.googleapis.com" in url for url in maintainer.blocked), maintainer.blocked


def _job(provider: ProviderServer, tmp: Path) -> CliJob:
    env = login_env(tmp, auth_url=provider.issuer, client_id=CLIENT_ID, scope=SCOPE, timeout="60")
    return CliJob([], env, cwd=tmp)


def test_browser_approves_our_job(
    provider: ProviderServer, maintainer: Maintainer, ci_shark_cli: list[str], tmp_path: Path
) -> None:
    with _job(provider, tmp_path) as job:
        link, code = wait_for_link(job)
        maintainer.approve(link, code)
        rc = job.wait(60)
    assert rc == 0, job.transcript()
    outputs = read_json_outputs(tmp_path / "out.json")
    assert outputs["SHARK_TOKEN_TYPE"] == "DPoP"
    assert outputs["SHARK_ACCESS_TOKEN"]
    assert [path.name for path in maintainer.taken] == [
        "00-confirm.png",
        "01-login.png",
        "02-consent.png",
        "03-success.png",
    ]


def test_browser_abort_denies_our_job(
    provider: ProviderServer, maintainer: Maintainer, ci_shark_cli: list[str], tmp_path: Path
) -> None:
    with _job(provider, tmp_path) as job:
        link, code = wait_for_link(job)
        maintainer.abort(link, code)
        rc = job.wait(60)
    assert rc == 3, job.transcript()
    assert not (tmp_path / "out.json").exists()


def test_browser_follows_the_pr_comment_link(
    provider: ProviderServer, maintainer: Maintainer, ci_shark_cli: list[str], tmp_path: Path
) -> None:
    """The GitHub path: the link comes from the PR comment the step posted."""
    with github_step(provider, tmp_path) as (job, files, api):
        link, code, _ = link_from_pr_comment(api, job)
        maintainer.approve(link, code)
        rc = job.wait(60)
        assert rc == 0, job.transcript()
        outputs = files.outputs()
        assert outputs["status"] == "approved"
        assert outputs["token-type"] == "DPoP"
        assert outputs["approver"] == "maintainer"
        (edited,) = api.comments_on(PR_NUMBER)
        assert "Approved" in edited["body"]
        assert code not in edited["body"]
    assert (maintainer.shots / "03-success.png").exists()


# --------------------------------------------------------------------------- workload identity


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


@pytest.mark.parametrize(("button", "expected"), [("Approve", 200), ("Deny", 400)])
def test_browser_reads_the_verified_claims_on_the_sandbox_and_decides(
    maintainer: Maintainer, button: str, expected: int
) -> None:
    """With a trusted CI issuer the link only asks: the maintainer reads what the server
    verified, apart from what the client sent, and clicks."""
    with SandboxServer(fake_ci_issuer=True) as server, http_client(timeout=10) as http:
        ci = server.fake_ci_issuer
        client = WorkloadClient(server.url, http, lambda: ci.mint(server.url))
        device = client.device(binding_message="deploy v1.2.3").json()
        maintainer.page.goto(device["verification_uri_complete"])
        assert maintainer.page.inner_text("#user-code") == device["user_code"]
        verified = maintainer.page.inner_text("section.verified")
        assert "Verified by this server from the CI\u2019s OIDC token" in verified
        assert "octo/app" in verified
        assert "repo:octo/app:ref:refs/heads/main" in verified
        assert "deploy v1.2.3" not in verified
        assert "deploy v1.2.3" in maintainer.page.inner_text("section.sent")
        maintainer.shot("sandbox-consent")
        assert server.grants[0].status == "pending"  # opening the link decided nothing
        maintainer.page.click(f"button:has-text('{button}')")
        maintainer.page.wait_for_selector(".status.approved, .status.denied")
        maintainer.shot(f"sandbox-{button.lower()}")
        response = client.poll(device["device_code"])
    assert response.status_code == expected, response.text
    if button == "Deny":
        assert response.json()["error"] == "access_denied"
    assert maintainer.blocked == []  # the page loads nothing from anywhere


def test_browser_reads_the_verified_claims_on_oidc_provider(
    provider: ProviderServer, ci_issuer: FakeCiIssuer, maintainer: Maintainer
) -> None:
    with httpx.Client(timeout=10) as http:
        token = fetch_github_token(http, ci_issuer.environment(), provider.issuer)
        data = {"client_id": WI_CLIENT_ID, "scope": SCOPE}
        data |= {"client_assertion_type": JWT_BEARER, "client_assertion": token}
        start = http.post(provider.device_authorization_endpoint, data=data).json()
        maintainer.open_link(start["verification_uri_complete"], start["user_code"])
        verified = maintainer.page.inner_text("section.verified")
        assert "Verified by this server from the CI\u2019s OIDC token" in verified
        assert "octo/app" in verified
        assert SCOPE in maintainer.page.inner_text("section.sent")
        maintainer.approve(start["verification_uri_complete"], start["user_code"])
        key = DpopKey()
        poll = {"grant_type": DEVICE_GRANT, "device_code": start["device_code"]}
        poll["client_id"] = WI_CLIENT_ID
        response = key.post(http, provider.token_endpoint, poll)
        if response.json().get("error") == "use_dpop_nonce":
            response = key.post(http, provider.token_endpoint, poll)
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"


def test_browser_reads_our_jobs_verified_claims_on_oidc_provider_and_approves(
    provider: ProviderServer,
    ci_issuer: FakeCiIssuer,
    maintainer: Maintainer,
    ci_shark_cli: list[str],
    tmp_path: Path,
) -> None:
    """Our job (entrypoint.py, `workload-identity`) sends its CI token with the device
    request; the maintainer follows the PR comment's link and reads, on the provider's own
    confirmation page, the claims the provider verified."""
    wi = {"CI_SHARK_CLIENT_ID": WI_CLIENT_ID, "CI_SHARK_WORKLOAD_IDENTITY": "true"}
    with github_step(provider, tmp_path, **wi, **ci_issuer.environment()) as (job, files, api):
        link, code, _ = link_from_pr_comment(api, job)
        maintainer.open_link(link, code)
        verified = maintainer.page.inner_text("section.verified")
        assert "Verified by this server from the CI\u2019s OIDC token" in verified
        for fact in ("octo/app", "refs/heads/main", "repo:octo/app:ref:refs/heads/main"):
            assert fact in verified
        assert "eyJ" not in maintainer.page.content()  # the token itself is never on the page
        maintainer.approve(link, code)
        rc = job.wait(60)
        assert rc == 0, job.transcript()
        assert files.outputs()["token-type"] == "DPoP"


def test_the_docs_screenshot_regenerates(tmp_path: Path, browser: Any) -> None:
    """scripts/approving_screenshot.py makes docs/approving-sandbox.png: 900 px wide, small."""
    out = tmp_path / "approving.png"
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "approving_screenshot.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for png in (out, REPO_ROOT / "docs" / "approving-sandbox.png"):
        width, height = png_size(png)
        assert width == 900
        assert 800 < height < 1400
        assert png.stat().st_size < 200_000
