"""A headless maintainer on glewlwyd: the HTTP calls its login app makes in a browser.

glewlwyd's pages are a JavaScript app (``login.html``) over its REST API, so this helper
makes the app's calls, in the app's order, with one cookie jar:

1. ``GET verification_uri_complete`` (``…//api/glwd/device?code=ABCD-1234``) -> 302 to
   ``login.html?client_id=…&scope=…&callback_url=<the link>``. From ``verification_uri``
   (no code) it is 302 to ``login.html?prompt=device&callback_url=<…/device>``, where the
   app asks for the code and goes to ``callback_url?code=<code>``: the redirect above.
2. Sign in: ``POST {api}/auth/`` ``{"username", "password"}`` -> 200 and a session cookie.
3. Consent: ``GET {api}/auth/grant/{client_id}/{scope}`` shows the client and each scope;
   the maintainer grants them: ``PUT {api}/auth/grant/{client_id}`` ``{"scope": "openid ci"}``.
   This must come before step 4: a scope not granted yet is silently left out of the token.
4. **Continue**: ``GET callback_url&g_continue`` -> 302 to ``login.html?prompt=deviceComplete``
   (the code is approved), ``deviceCodeError`` (unknown, used or expired code) or
   ``deviceServerError``.

glewlwyd 2.7.5 has no way to *refuse* a device code on these pages: a maintainer who does
not continue leaves the code to expire. See test_glewlwyd_chain.py for the one path that
turns a live code into ``access_denied``.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx

REQUEST_TIMEOUT_S = 10.0


class GlewlwydApprovalError(AssertionError):
    """glewlwyd's API did not go the way its login app expects."""


@dataclass
class Approval:
    prompt: str  # where the app lands: deviceComplete, deviceCodeError, deviceServerError
    client_id: str
    granted: list[str] = field(default_factory=list)

    @property
    def approved(self) -> bool:
        return self.prompt == "deviceComplete"


def _query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def _normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


class GlewlwydMaintainer:
    """One maintainer's browser session on glewlwyd's login app."""

    def __init__(self, api_url: str, *, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.api_url = api_url
        self.client = httpx.Client(timeout=timeout_s, follow_redirects=False)
        self.trail: list[str] = []

    def __enter__(self) -> GlewlwydMaintainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def fail(self, message: str) -> GlewlwydApprovalError:
        steps = "\n".join(f"  {step}" for step in self.trail)
        return GlewlwydApprovalError(f"{message}\nsteps:\n{steps}")

    def _send(self, method: str, url: str, **kwargs: object) -> httpx.Response:
        response = self.client.request(method, url, **kwargs)  # type: ignore[arg-type]
        where = response.headers.get("location", response.text[:200])
        self.trail.append(
            f"{method} {urllib.parse.urlsplit(url).path} -> {response.status_code} {where}"
        )
        return response

    def _redirect(self, url: str) -> str:
        response = self._send("GET", url)
        if response.status_code != 302 or "location" not in response.headers:
            raise self.fail(f"expected a redirect to the login app from {url}")
        return str(response.headers["location"])

    def open_link(self, link: str, user_code: str) -> dict[str, str]:
        """Open the link, typing the code when the link has none; return the app's params."""
        params = _query(self._redirect(link))
        if params.get("prompt") == "device":  # verification_uri: the code input page
            callback = params.get("callback_url", "")
            separator = "&" if "?" in callback else "?"
            params = _query(self._redirect(f"{callback}{separator}code={quote(user_code)}"))
        callback = params.get("callback_url", "")
        shown = _query(callback).get("code", "")
        if not params.get("client_id") or _normalise_code(shown) != _normalise_code(user_code):
            raise self.fail(f"the login app was not asked to approve {user_code}: {params}")
        return params

    def sign_in(self, account: str, password: str) -> None:
        response = self._send(
            "POST", f"{self.api_url}/auth/", json={"username": account, "password": password}
        )
        if response.status_code != 200:
            raise self.fail(f"signing in as {account} failed")

    def grant(self, client_id: str, scope: str) -> list[str]:
        """Consent to every scope the client asks for that this account may give."""
        path = f"{self.api_url}/auth/grant/{quote(client_id, safe='')}/{quote(scope, safe='')}"
        shown = self._send("GET", path)
        if shown.status_code != 200:
            raise self.fail("the consent screen did not load")
        offered = shown.json()
        if offered.get("client", {}).get("client_id") != client_id:
            raise self.fail(f"the consent screen names another client: {offered.get('client')}")
        names = [str(item["name"]) for item in offered.get("scope", [])]
        response = self._send(
            "PUT",
            f"{self.api_url}/auth/grant/{quote(client_id, safe='')}",
            json={"scope": " ".join(names)},
        )
        if response.status_code != 200:
            raise self.fail("granting the scopes failed")
        return names

    def continue_(self, params: dict[str, str]) -> str:
        callback = params["callback_url"]
        separator = "&" if "?" in callback else "?"
        return _query(self._redirect(f"{callback}{separator}g_continue")).get("prompt", "")


def approve(link: str, user_code: str, *, api_url: str, account: str, password: str) -> Approval:
    """Open the link, sign in as ``account``, consent, continue. Raises unless approved."""
    with GlewlwydMaintainer(api_url) as maintainer:
        params = maintainer.open_link(link, user_code)
        maintainer.sign_in(account, password)
        granted = maintainer.grant(params["client_id"], params.get("scope", ""))
        approval = Approval(maintainer.continue_(params), params["client_id"], granted)
        if not approval.approved:
            raise maintainer.fail(f"the login app ended on prompt={approval.prompt!r}")
        return approval
