"""A headless maintainer: does on oidc-provider's own pages what a browser does.

The device flow's user side on node oidc-provider (devInteractions) is:

1. ``GET verification_uri_complete`` -> an auto-submitting ``form_post`` page
   (``xsrf`` + ``user_code``); or ``GET verification_uri`` -> the user-code
   input form (``xsrf`` + a text field ``user_code``);
2. ``POST /device`` -> the confirmation page: the code in ``<code>``, a form
   ``op.deviceConfirmForm`` (``xsrf``, ``user_code``, ``confirm=yes``) and an
   ``[ Abort ]`` button (``name=abort value=yes``) bound to that form;
3. ``POST /device`` with ``confirm`` -> 303 to ``/interaction/<uid>``: the login
   form (``prompt=login``, ``login``, ``password``) and a ``[ Cancel ]`` link to
   ``/interaction/<uid>/abort``;
4. ``POST /interaction/<uid>`` -> 303 through ``/device/<uid>`` back to
   ``/interaction/<uid>``: the consent form (``prompt=consent``) and the same
   ``[ Cancel ]`` link;
5. ``POST`` consent -> 303 to ``/device/<uid>`` -> "Sign-in Success".

Forms are read with the standard library's ``html.parser``; the cookie jar of an
``httpx.Client`` carries the session, as a browser's would. Every request has a
timeout and the number of steps is bounded.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from html.parser import HTMLParser
from typing import Literal

import httpx

DenyStep = Literal["confirm", "login", "consent"]

MAX_STEPS = 8
REQUEST_TIMEOUT_S = 10.0


class ApprovalError(AssertionError):
    """The provider's pages did not go the way a maintainer's would."""


@dataclasses.dataclass
class Form:
    action: str
    method: str
    form_id: str | None
    fields: dict[str, str]
    # (name, value) of submit buttons that belong to this form
    buttons: list[tuple[str, str]]


@dataclasses.dataclass
class Page:
    url: str
    status: int
    title: str
    text: str
    forms: list[Form]
    links: list[tuple[str, str]]  # (href, text)
    codes: list[str]  # text of <code> elements (the user code on the confirm page)

    def form(self, *, form_id: str | None = None, prompt: str | None = None) -> Form | None:
        for form in self.forms:
            if form_id is not None and form.form_id != form_id:
                continue
            if prompt is not None and form.fields.get("prompt") != prompt:
                continue
            return form
        return None

    def link(self, text_contains: str) -> str | None:
        for href, text in self.links:
            if text_contains.lower() in text.lower():
                return href
        return None

    @property
    def succeeded(self) -> bool:
        return "Success" in self.title

    @property
    def interrupted(self) -> bool:
        return "interrupted" in self.text

    def describe(self) -> str:
        shown = " ".join(self.text.split())[:400]
        return f"{self.status} {self.url} title={self.title!r} text={shown!r}"


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.text_parts: list[str] = []
        self.forms: list[Form] = []
        self.links: list[tuple[str, str]] = []
        self.codes: list[str] = []
        # buttons declared outside their form (HTML5 form="id")
        self._detached_buttons: list[tuple[str, str, str]] = []
        self._form: Form | None = None
        self._in: list[str] = []
        self._link_href: str | None = None
        self._link_text: list[str] = []
        self._code_text: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {key: (value or "") for key, value in attrs}
        if tag in ("title", "script", "style"):
            self._in.append(tag)
        elif tag == "form":
            self._form = Form(
                action=attr.get("action", ""),
                method=attr.get("method", "get").lower(),
                form_id=attr.get("id"),
                fields={},
                buttons=[],
            )
            self.forms.append(self._form)
        elif tag == "input":
            name = attr.get("name")
            if name and self._form is not None and attr.get("type", "text") != "submit":
                self._form.fields[name] = attr.get("value", "")
        elif tag == "button":
            name = attr.get("name")
            if name:
                owner = attr.get("form")
                if owner:
                    self._detached_buttons.append((owner, name, attr.get("value", "")))
                elif self._form is not None:
                    self._form.buttons.append((name, attr.get("value", "")))
        elif tag == "a" and "href" in attr:
            self._link_href = attr["href"]
            self._link_text = []
        elif tag == "code":
            self._code_text = []

    def handle_endtag(self, tag: str) -> None:
        if self._in and self._in[-1] == tag:
            self._in.pop()
        elif tag == "form":
            self._form = None
        elif tag == "a" and self._link_href is not None:
            self.links.append((self._link_href, "".join(self._link_text).strip()))
            self._link_href = None
        elif tag == "code" and self._code_text is not None:
            self.codes.append("".join(self._code_text).strip())
            self._code_text = None

    def handle_data(self, data: str) -> None:
        if "title" in self._in:
            self.title += data
            return
        if self._in:  # script / style
            return
        self.text_parts.append(data)
        if self._link_href is not None:
            self._link_text.append(data)
        if self._code_text is not None:
            self._code_text.append(data)

    def close(self) -> None:
        super().close()
        for owner, name, value in self._detached_buttons:
            for form in self.forms:
                if form.form_id == owner:
                    form.buttons.append((name, value))


def parse_page(response: httpx.Response) -> Page:
    parser = _PageParser()
    parser.feed(response.text)
    parser.close()
    base = str(response.url)
    for form in parser.forms:
        form.action = urllib.parse.urljoin(base, form.action or base)
    links = [(urllib.parse.urljoin(base, href), text) for href, text in parser.links]
    return Page(
        url=base,
        status=response.status_code,
        title=parser.title.strip(),
        text=" ".join(" ".join(parser.text_parts).split()),
        forms=parser.forms,
        links=links,
        codes=parser.codes,
    )


def _normalise_code(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


class Approver:
    """One maintainer's browser session (cookie jar) on the provider's pages."""

    def __init__(self, *, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.client = httpx.Client(follow_redirects=True, timeout=timeout_s)
        self.pages: list[Page] = []

    def __enter__(self) -> Approver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def _record(self, response: httpx.Response) -> Page:
        page = parse_page(response)
        self.pages.append(page)
        if len(self.pages) > 4 * MAX_STEPS:
            raise ApprovalError("too many pages; the provider is looping")
        return page

    def get(self, url: str) -> Page:
        return self._record(self.client.get(url))

    def submit(self, form: Form, extra: dict[str, str] | None = None) -> Page:
        data = dict(form.fields)
        data.update(extra or {})
        if form.method == "post":
            return self._record(self.client.post(form.action, data=data))
        return self._record(self.client.get(form.action, params=data))

    def trail(self) -> str:
        return "\n".join(f"  {page.describe()}" for page in self.pages)

    def fail(self, message: str) -> ApprovalError:
        return ApprovalError(f"{message}\npages seen:\n{self.trail()}")

    # -- the steps --------------------------------------------------------

    def open_code(self, url: str, user_code: str) -> Page:
        """Open the link; end on the confirmation page (code shown, not yet confirmed)."""
        page = self.get(url)
        for form in page.forms:
            # oidc-provider's CSRF defence: a per-session secret echoed by every form
            if form.method == "post" and "xsrf" not in form.fields:
                raise self.fail(f"a form without its xsrf field at {page.url}")
        code_field = page.form(form_id="op.deviceInputForm")
        if code_field is not None:
            # verification_uri without the code: type it in, as a person would.
            page = self.submit(code_field, {"user_code": user_code})
        elif page.forms and "user_code" in page.forms[0].fields:
            # verification_uri_complete answers with an auto-submitting form_post
            # page (JavaScript submits it in a browser).
            page = self.submit(page.forms[0])
        else:
            raise self.fail(f"no user-code form at {url}")
        if page.form(form_id="op.deviceConfirmForm") is None:
            raise self.fail("no confirmation form after submitting the user code")
        shown = [_normalise_code(code) for code in page.codes]
        if _normalise_code(user_code) not in shown:
            raise self.fail(f"confirmation page shows {page.codes}, expected {user_code}")
        return page

    def confirm(self, page: Page, *, abort: bool = False) -> Page:
        form = page.form(form_id="op.deviceConfirmForm")
        if form is None:
            raise self.fail("not on the confirmation page")
        if abort:
            buttons = dict(form.buttons)
            if "abort" not in buttons:
                raise self.fail("the confirmation page has no abort button")
            return self.submit(form, {"abort": buttons["abort"]})
        return self.submit(form)

    def cancel(self, page: Page) -> Page:
        href = page.link("Cancel")
        if href is None:
            raise self.fail("no [ Cancel ] link on this interaction page")
        return self.get(href)

    def login(self, page: Page, account: str, password: str) -> Page:
        form = page.form(prompt="login")
        if form is None:
            raise self.fail("not on the login page")
        return self.submit(form, {"login": account, "password": password})

    def consent(self, page: Page) -> Page:
        form = page.form(prompt="consent")
        if form is None:
            raise self.fail("not on the consent page")
        return self.submit(form)


def approve(
    url: str,
    user_code: str,
    account: str = "maintainer",
    *,
    password: str = "correct horse battery staple",
    approver: Approver | None = None,
) -> Page:
    """Open the link, confirm the code, sign in as ``account``, consent.

    Returns the final page ("Sign-in Success"); raises ApprovalError otherwise.
    """
    own = approver is None
    session = approver or Approver()
    try:
        page = session.confirm(session.open_code(url, user_code))
        for _ in range(MAX_STEPS):
            if page.succeeded:
                return page
            if page.form(prompt="login") is not None:
                page = session.login(page, account, password)
            elif page.form(prompt="consent") is not None:
                page = session.consent(page)
            else:
                break
        raise session.fail("the approval did not end on the success page")
    finally:
        if own:
            session.client.close()


def deny(
    url: str,
    user_code: str,
    account: str = "maintainer",
    *,
    at: DenyStep = "confirm",
    password: str = "correct horse battery staple",
    approver: Approver | None = None,
) -> Page:
    """Go as far as step ``at`` and abort there, as a maintainer who says no.

    ``confirm``: the [ Abort ] button beside the code; ``login``: [ Cancel ] on
    the sign-in page; ``consent``: [ Cancel ] on the consent page.
    Returns the final page (the provider's "interrupted" page).
    """
    own = approver is None
    session = approver or Approver()
    try:
        page = session.open_code(url, user_code)
        if at == "confirm":
            page = session.confirm(page, abort=True)
        else:
            page = session.confirm(page)
            if at == "consent":
                page = session.login(page, account, password)
                if page.form(prompt="consent") is None:
                    raise session.fail("expected the consent page after signing in")
            elif page.form(prompt="login") is None:
                raise session.fail("expected the sign-in page after confirming")
            page = session.cancel(page)
        if page.succeeded:
            raise session.fail(f"denying at {at} ended in success")
        return page
    finally:
        if own:
            session.client.close()
