"""The approval page with workload identity: what the server verified apart from what the
client sent, decisions only through the page's own form, and the sandbox's options for it."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.ci_tokens import JWT_BEARER, CiKeys
from support.clock import FakeClock
from support.sandbox_client import CLIENT_ID, Client, error_of, page_token_of
from support.seen import LOOK_ALIKES_OF_MAIN, MAIN, as_seen

from ci_shark.sandbox import ClaimRule, SandboxServer

VERIFIED = "Verified by this server from the CI\u2019s OIDC token"
SENT = "Sent by the client, not verified"


@pytest.fixture
def trusting(clock: FakeClock) -> Iterator[SandboxServer]:
    hostile = {"workflow": '<img src=x onerror="alert(1)">', "actor": "o'brien & co"}
    with SandboxServer(clock=clock, fake_ci_issuer=True, fake_ci_claims=hostile.items()) as server:
        yield server


SAFE_TAGS = {
    *("html", "head", "meta", "title", "style", "body", "main", "p", "h1", "h2", "div"),
    *("section", "table", "tr", "th", "td", "details", "summary", "form", "input", "button"),
}


class Tags(HTMLParser):
    """Every start tag of a page, with its attributes, as a browser would parse them."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def start(server: SandboxServer, http: httpx.Client, **extra: str) -> tuple[dict[str, Any], str]:
    """A device request authenticated by a fresh token from the fake issuer."""
    token = server.fake_ci_issuer.mint(server.url)
    data = {"client_id": CLIENT_ID, "client_assertion_type": JWT_BEARER, "client_assertion": token}
    response = http.post(f"{server.url}/oauth/device", data={**data, **extra})
    assert response.status_code == 200, response.text
    return dict(response.json()), token


def sections(page: str) -> dict[str, str]:
    """Each section's heading -> its text (tags stripped)."""
    found = re.findall(r'<section class="(\w+)"><h2>(.*?)</h2>(.*?)</section>', page, re.S)
    return {heading: re.sub(r"<[^>]+>", " ", body) for _, heading, body in found}


def test_the_page_shows_verified_claims_apart_from_what_the_client_sent(
    trusting: SandboxServer, http: httpx.Client
) -> None:
    device, token = start(trusting, http, scope="deploy", binding_message="ship v1.2")
    page = http.get(device["verification_uri_complete"])
    assert page.status_code == 200
    assert trusting.grants[0].status == "pending"  # opening the link never approves
    parts = sections(page.text)
    verified = parts["\u2713 " + VERIFIED]
    assert "octo/app" in verified
    assert "refs/heads/main (branch)" in verified
    assert "repo:octo/app:ref:refs/heads/main" in verified
    assert trusting.fake_ci_issuer.url in verified
    sent = parts[SENT]
    assert "ship v1.2" in sent
    assert "deploy" in sent
    assert "ship v1.2" not in verified
    assert token not in page.text
    assert f'<div class="code" id="user-code">{device["user_code"]}</div>' in page.text
    assert 'value="approve"' in page.text
    assert 'value="deny"' in page.text


def test_every_value_is_escaped_and_nothing_is_loaded(
    trusting: SandboxServer, http: httpx.Client
) -> None:
    device, _ = start(trusting, http, binding_message="</td><script>alert(2)</script>")
    page = http.get(device["verification_uri_complete"]).text
    assert "<img" not in page
    assert "<script" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "o&#x27;brien &amp; co" in page
    tags = Tags()
    tags.feed(page)
    assert {tag for tag, _ in tags.found} <= SAFE_TAGS
    assert not [name for _, attrs in tags.found for name, _ in attrs if name in ("src", "href")]
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert "@import" not in style
    assert "url(" not in style


def test_a_strict_policy_allows_only_the_inline_stylesheet(
    trusting: SandboxServer, http: httpx.Client
) -> None:
    device, _ = start(trusting, http)
    response = http.get(device["verification_uri_complete"])
    (style,) = re.findall(r"<style>(.*?)</style>", response.text, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert response.headers["Content-Security-Policy"] == (
        f"default-src 'none'; style-src 'sha256-{digest}'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"


def test_without_a_ci_token_the_page_says_nothing_is_verified(
    server: SandboxServer, client: Client, http: httpx.Client
) -> None:
    device = client.device()
    parts = sections(http.get(device["verification_uri_complete"]).text)
    assert "Nothing on this page is verified" in parts
    assert CLIENT_ID in parts[SENT]
    assert not any("Verified by this server" in heading for heading in parts)


def test_a_decision_needs_a_fresh_form_token_of_that_code(
    trusting: SandboxServer, http: httpx.Client
) -> None:
    device, _ = start(trusting, http)
    other, _ = start(trusting, http)
    url = f"{trusting.url}/device"
    token = page_token_of(http.get(device["verification_uri_complete"]).text)
    other_token = page_token_of(http.get(other["verification_uri_complete"]).text)
    code = device["user_code"]
    for forged in ({}, {"page_token": "guess"}, {"page_token": other_token}):
        refused = http.post(url, data={"user_code": code, "action": "approve", **forged})
        assert refused.status_code == 403
        assert "Open the link again" in refused.text
    assert [grant.status for grant in trusting.grants] == ["pending", "pending"]
    approved = http.post(url, data={"user_code": code, "action": "approve", "page_token": token})
    assert approved.status_code == 200
    assert "Approved" in approved.text
    assert 'name="page_token"' not in approved.text  # decided: no more buttons
    again = http.post(url, data={"user_code": code, "action": "deny", "page_token": token})
    assert again.status_code == 403
    assert [grant.status for grant in trusting.grants] == ["approved", "pending"]


def test_the_approval_api_and_the_timer_still_decide(http: httpx.Client, clock: FakeClock) -> None:
    """Tests and the demo approve without a browser: server.approve(), or --approve-after
    (a timer someone chose); only opening the link has no effect with a trusted issuer."""
    with SandboxServer(clock=clock, fake_ci_issuer=True, approve_after_s=3) as server:
        first, _ = start(server, http)
        http.get(first["verification_uri_complete"])
        assert server.grants[0].status == "pending"
        clock.advance(3)
        assert server.grants[0].status == "approved"
        second, _ = start(server, http)
        server.deny(second["user_code"])
        assert server.grants[1].status == "denied"


def test_the_grant_keeps_verified_claims_and_never_the_token(
    trusting: SandboxServer, http: httpx.Client
) -> None:
    _, token = start(trusting, http, binding_message="hello")
    (grant,) = trusting.grants
    assert grant.extra_params == {"binding_message": "hello"}
    assert grant.ci_claims is not None
    assert grant.ci_claims["repository"] == "octo/app"
    assert token not in repr(grant)


def test_metadata_names_jwt_client_authentication_only_when_trusting(
    trusting: SandboxServer, server: SandboxServer, http: httpx.Client
) -> None:
    path = "/.well-known/oauth-authorization-server"
    with_trust = http.get(trusting.url + path).json()
    assert "private_key_jwt" in with_trust["token_endpoint_auth_methods_supported"]
    assert with_trust["token_endpoint_auth_signing_alg_values_supported"] == ["RS256", "ES256"]
    without = http.get(server.url + path).json()
    assert "private_key_jwt" not in without["token_endpoint_auth_methods_supported"]
    assert "token_endpoint_auth_signing_alg_values_supported" not in without


def test_a_ci_token_to_a_server_that_trusts_none_is_refused(
    server: SandboxServer, http: httpx.Client
) -> None:
    keys = CiKeys()
    data = {
        "client_id": CLIENT_ID,
        "client_assertion_type": JWT_BEARER,
        "client_assertion": keys.token(server.url),
    }
    response = http.post(f"{server.url}/oauth/device", data=data)
    assert response.status_code == 401
    assert error_of(response) == "invalid_client"
    assert "trusts no CI issuer" in response.json()["error_description"]


def test_a_secret_and_an_assertion_together_are_refused(
    trusting: SandboxServer, http: httpx.Client
) -> None:
    data = {
        "client_id": CLIENT_ID,
        "client_secret": "s",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": trusting.fake_ci_issuer.mint(trusting.url),
    }
    response = http.post(f"{trusting.url}/oauth/device", data=data)
    assert error_of(response) == "invalid_request"
    assert "one client authentication method" in response.json()["error_description"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"trust_ci_issuer": "jwks.json"}, "needs --ci-issuer ISS"),
        ({"trust_ci_issuer": "jwks.json", "ci_issuer": "https://ci"}, "needs at least one"),
        ({"ci_issuer": "https://ci"}, "--ci-issuer without a CI issuer to trust"),
        ({"ci_allow": [ClaimRule.parse("a:b=c")]}, "--ci-allow without a CI issuer"),
        ({"ci_token_reuse": True}, "--ci-token-reuse without"),
        ({"fake_ci_claims": [("ref", "x")]}, "--fake-ci-claim without"),
        ({"fake_ci_issuer": True, "trust_ci_issuer": "x"}, "choose one issuer"),
        (
            {
                "fake_ci_issuer": True,
                "ci_allow": [ClaimRule.parse("*:repository=octo/app")],
                "client_secrets": {"confidential": "s"},
            },
            "client 'confidential' has a secret and the rule",
        ),
    ],
)
def test_options_that_cannot_work_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        SandboxServer(**options)


def test_a_jwks_that_cannot_be_read_stops_the_server_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the JWKS file"):
        SandboxServer(
            trust_ci_issuer=str(tmp_path / "nope.json"),
            ci_issuer="https://ci",
            ci_allow=[ClaimRule.parse("ci-shark:repository=octo/app")],
        )


@pytest.mark.parametrize(
    "branch",
    [*LOOK_ALIKES_OF_MAIN.values(), "refs/heads/\u202eniam"],
    ids=[*LOOK_ALIKES_OF_MAIN.keys(), "right-to-left-override"],
)
def test_a_branch_that_only_looks_like_main_never_reads_as_main(
    clock: FakeClock, http: httpx.Client, branch: str
) -> None:
    """The verified claims are what an approver trusts: a branch that is `main` plus an
    invisible character, or `niam` turned around by a bidi override, is another branch,
    and the page must not show it as `main`."""
    claims = {"ref": branch, "sub": f"repo:octo/app:ref:{branch}"}
    with SandboxServer(clock=clock, fake_ci_issuer=True, fake_ci_claims=claims.items()) as server:
        device, _ = start(server, http)
        page = http.get(device["verification_uri_complete"]).text
    verified = html.unescape(sections(page)["\u2713 " + VERIFIED])
    assert not re.search("[\u202a-\u202e\u2066-\u2069]", verified), "a bidi control is live"
    cells = {as_seen(cell) for cell in re.split(r" {2,}", verified)}
    assert not cells & {MAIN, f"{MAIN} (branch)", f"repo:octo/app:ref:{MAIN}"}, cells
