"""Provider presets and quirks, against recorded shapes of what each server sends
(as its own documentation shows them), over httpx.MockTransport with a fake clock."""

from __future__ import annotations

import json
from collections.abc import Callable
from urllib.parse import parse_qs

import httpx
import pytest
from support.clock import FakeClock

from ci_shark.errors import AccessDenied, ConfigError, DeviceFlowUnsupported, ExpiredToken
from ci_shark.oauth.device import DeviceFlow
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import OAuthHttp
from ci_shark.oauth.providers import PROVIDERS, recognise, resolve

Handler = Callable[[httpx.Request], httpx.Response]


def make_flow(
    handler: Handler, auth_url: str, provider: str, clock: FakeClock, **options: object
) -> DeviceFlow:
    http = OAuthHttp(transport=httpx.MockTransport(handler), clock=clock, sleep=clock.sleep)
    return DeviceFlow(
        auth_url,
        "client-123",
        "openid",
        provider=PROVIDERS[provider],
        http=http,
        clock=clock,
        sleep=clock.sleep,
        **options,  # type: ignore[arg-type]
    )


def form_of(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://github.com", "github"),
        ("https://octo-corp.ghe.com", "github"),  # GitHub Enterprise Cloud, data residency
        ("https://oauth2.googleapis.com", "google"),
        ("https://login.microsoftonline.com/contoso.onmicrosoft.com", "entra"),
        ("https://acme.eu.auth0.com", "auth0"),
        ("https://acme.okta.com/oauth2/default", "okta"),
        ("https://sso.example.com/realms/ci", "keycloak"),
        ("https://auth.example.com", "shark"),
    ],
)
def test_auto_recognises_the_provider_from_the_url(url: str, name: str) -> None:
    assert recognise(url).name == name


def test_github_no_metadata_errors_with_200_and_lowercase_bearer() -> None:
    clock = FakeClock()
    seen: list[tuple[str, float]] = []
    token_answers = [
        {"error": "authorization_pending", "error_description": "pending"},
        {"error": "slow_down", "error_description": "too fast", "interval": 10},
        {
            "access_token": "gho_16C7e42F292c6912E7710c838347Ae178B4a",
            "token_type": "bearer",
            "scope": "repo",
        },
    ]

    def github(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.path, clock.now))
        assert request.headers["accept"] == "application/json"  # else GitHub answers a form
        if request.url.path == "/login/device/code":
            return httpx.Response(
                200,
                json={
                    "device_code": "3584d83530557fdd1f46af8289938c8ef79f9dc5",
                    "user_code": "WDJB-MJHT",
                    "verification_uri": "https://github.com/login/device",
                    "expires_in": 900,
                    "interval": 5,
                },
            )
        assert request.url.path == "/login/oauth/access_token"
        return httpx.Response(200, json=token_answers.pop(0))  # GitHub: errors with HTTP 200

    flow = make_flow(github, "https://github.com", "github", clock)
    init = flow.begin()
    assert init.link == "https://github.com/login/device"  # no verification_uri_complete
    token = flow.wait_for_approval(timeout_s=600)

    assert token.token_type == "Bearer"
    assert [path for path, _ in seen] == [
        "/login/device/code",
        *["/login/oauth/access_token"] * 3,
    ]  # no metadata requests: GitHub publishes none
    poll_times = [at for path, at in seen if path.endswith("access_token")]
    assert poll_times[1] - poll_times[0] == pytest.approx(5.1)
    assert poll_times[2] - poll_times[1] == pytest.approx(10.1)  # the interval GitHub named


def test_google_verification_url_and_client_secret_in_the_form() -> None:
    clock = FakeClock()
    token_forms: list[dict[str, list[str]]] = []

    def google(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/.well-known"):
            return httpx.Response(404)
        if request.url.path == "/device/code":
            return httpx.Response(
                200,
                json={
                    "device_code": "AH-1Ng2JgsnzZmHGJxPx",
                    "user_code": "GQVQ-JKEC",
                    "verification_url": "https://www.google.com/device",
                    "expires_in": 1800,
                    "interval": 5,
                },
            )
        token_forms.append(form_of(request))
        return httpx.Response(
            200,
            json={
                "access_token": "ya29.a0AfH6SM",
                "token_type": "Bearer",
                "expires_in": 3599,
                "scope": "openid",
            },
        )

    with pytest.raises(ConfigError, match="client-secret"):
        resolve("google", "https://oauth2.googleapis.com", has_client_secret=False)
    flow = make_flow(
        google, "https://oauth2.googleapis.com", "google", clock, client_secret="GOCSPX-s3cret"
    )
    assert flow.begin().verification_uri == "https://www.google.com/device"
    flow.wait_for_approval(timeout_s=60)
    assert token_forms[0]["client_secret"] == ["GOCSPX-s3cret"]
    assert token_forms[0]["grant_type"] == ["urn:ietf:params:oauth:grant-type:device_code"]


def test_entra_authorization_declined_is_a_denial() -> None:
    clock = FakeClock()

    def entra(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/.well-known/openid-configuration") or (
            ".well-known" in request.url.path
        ):
            return httpx.Response(404)
        if request.url.path.endswith("/devicecode"):
            return httpx.Response(
                200,
                json={
                    "device_code": "GmRhmhcxhwAzkoEqiMEg_DnyEysNkuNhszIySk9eS",
                    "user_code": "FBQVCCM79",
                    "verification_uri": "https://microsoft.com/devicelogin",
                    "expires_in": "900",  # Entra has sent numbers as strings
                    "interval": "5",
                    "message": "To sign in, use a web browser to open the page ...",
                },
            )
        return httpx.Response(
            400,
            json={
                "error": "authorization_declined",
                "error_description": "AADSTS70000: The user declined.",
            },
        )

    flow = make_flow(entra, "https://login.microsoftonline.com/contoso", "entra", clock)
    assert flow.begin().expires_in == 900
    with pytest.raises(AccessDenied) as denied:
        flow.wait_for_approval(timeout_s=60)
    assert denied.value.exit_code == 3


def test_auth0_expired_token_ends_the_wait_before_invalid_grant() -> None:
    clock = FakeClock()
    answers = [
        httpx.Response(403, json={"error": "expired_token", "error_description": "expired"}),
        httpx.Response(403, json={"error": "invalid_grant", "error_description": "gone"}),
    ]

    def auth0(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/.well-known/oauth-authorization-server":
            return httpx.Response(404)
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": "https://acme.auth0.com/",
                    "device_authorization_endpoint": "https://acme.auth0.com/oauth/device/code",
                    "token_endpoint": "https://acme.auth0.com/oauth/token",
                    "revocation_endpoint": "https://acme.auth0.com/oauth/revoke",
                },
            )
        if request.url.path == "/oauth/device/code":
            assert form_of(request)["audience"] == ["https://api.example.com"]
            return httpx.Response(
                200,
                json={
                    "device_code": "Ag_EE...ko1p",
                    "user_code": "QTZL-MCBW",
                    "verification_uri": "https://acme.auth0.com/activate",
                    "verification_uri_complete": "https://acme.auth0.com/activate?user_code=QTZL-MCBW",
                    "expires_in": 900,
                    "interval": 5,
                },
            )
        return answers.pop(0)

    flow = make_flow(
        auth0,
        "https://acme.auth0.com",
        "auth0",
        clock,
        extra_params={"audience": "https://api.example.com"},
    )
    flow.begin()
    with pytest.raises(ExpiredToken):
        flow.wait_for_approval(timeout_s=600)
    assert len(answers) == 1  # stopped at expired_token, never saw invalid_grant


def test_okta_nonce_on_the_first_token_request_with_lowercase_header() -> None:
    clock = FakeClock()
    proofs: list[dict[str, object]] = []

    def okta(request: httpx.Request) -> httpx.Response:
        if ".well-known" in request.url.path:
            return httpx.Response(404)
        if request.url.path.endswith("/v1/device/authorize"):
            return httpx.Response(
                200,
                json={
                    "device_code": "4ebdb4de-2170-4c4a-9f4f",
                    "user_code": "MHXFJQBK",
                    "verification_uri": "https://acme.okta.com/activate",
                    "expires_in": 600,
                    "interval": 5,
                },
            )
        payload = request.headers["dpop"].split(".")[1]
        claims = json.loads(__import__("base64").urlsafe_b64decode(payload + "=="))
        proofs.append(claims)
        if "nonce" not in claims:
            return httpx.Response(
                400,
                headers={"dpop-nonce": "okta-nonce-1"},
                json={
                    "error": "use_dpop_nonce",
                    "error_description": "Authorization server requires nonce in DPoP proof.",
                },
            )
        return httpx.Response(
            200,
            json={
                "access_token": "eyJraWQiOi",
                "token_type": "DPoP",
                "expires_in": 3600,
            },
        )

    flow = make_flow(
        okta,
        "https://acme.okta.com/oauth2/default",
        "okta",
        clock,
        dpop_prover=DPoPKey.generate(),
    )
    flow.begin()
    token = flow.wait_for_approval(timeout_s=60)
    assert token.token_type == "DPoP"
    assert [p.get("nonce") for p in proofs] == [None, "okta-nonce-1"]
    assert proofs[0]["jti"] != proofs[1]["jti"]


def test_keycloak_paths_without_metadata() -> None:
    clock = FakeClock()
    paths: list[str] = []

    def keycloak(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if ".well-known" in request.url.path:
            return httpx.Response(404)
        if request.url.path.endswith("/auth/device"):
            return httpx.Response(
                200,
                json={
                    "device_code": "e8f2",
                    "user_code": "ABCD-EFGH",
                    "verification_uri": "https://sso.example.com/realms/ci/device",
                    "expires_in": 600,
                    "interval": 5,
                },
            )
        return httpx.Response(200, json={"access_token": "eyJ", "token_type": "Bearer"})

    flow = make_flow(keycloak, "https://sso.example.com/realms/ci", "keycloak", clock)
    flow.begin()
    flow.wait_for_approval(timeout_s=60)
    assert paths[-2:] == [
        "/realms/ci/protocol/openid-connect/auth/device",
        "/realms/ci/protocol/openid-connect/token",
    ]


def test_generic_provider_without_metadata_says_what_to_set() -> None:
    clock = FakeClock()
    flow = make_flow(lambda _: httpx.Response(404), "https://as.example.com", "generic", clock)
    with pytest.raises(DeviceFlowUnsupported) as failure:
        flow.begin()
    assert failure.value.exit_code == 5
    assert "`device-authorization-endpoint`" in failure.value.diagnostics()


@pytest.mark.parametrize(
    ("auth_url", "user_api"),
    [
        ("https://github.com", "https://api.github.com/user"),
        ("https://octo.ghe.com", "https://api.octo.ghe.com/user"),
        ("https://github.example.com/", "https://github.example.com/api/v3/user"),  # GHES
    ],
)
def test_github_names_who_approved_through_its_rest_api(auth_url: str, user_api: str) -> None:
    github = PROVIDERS["github"]
    assert github.userinfo_url(auth_url) == user_api
    assert (github.subject_claim, github.unique_username_claim) == ("id", "login")


def test_only_github_has_a_username_a_bare_approver_entry_may_name() -> None:
    # docs/compatibility.md: the others do not document unique, fixed usernames.
    unique = {name for name, preset in PROVIDERS.items() if preset.unique_username_claim}
    assert unique == {"github"}
