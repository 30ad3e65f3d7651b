"""One login, top to bottom, and every product rule of ci_shark.

Reading order is execution order: :func:`run` names its steps, each a function below it.
The rules, each in one place here (the modules below decide protocol, not product):

1. Everything that can be checked is checked before a device code exists: the inputs,
   what the provider needs, the fork policy, the DPoP key, where the outputs go; with
   `workload-identity`, a token from the CI (workload.py has that feature's rules).
2. A pull/merge request from a fork asks for nothing unless `allow-fork`: anyone can open
   one whose job asks a maintainer to hand it a credential. One whose source the CI
   cannot tell counts as a fork, and the refusal says why (``RunContext.fork_doubt``). A
   public repository that names no approvers is warned: anyone reading the log can open
   the link.
3. Finding the server has a bound of its own before the link (``REACH_BUDGET_S``, never
   past `timeout`), and each failed attempt is one log line: no silent minutes.
4. Every secret is masked before it is used or written: the secret inputs first, the
   device code as soon as it exists.
5. With `renew`, an expired code is replaced, paced and capped: a server that hands out
   one-second codes does not get a request storm.
6. With `allowed-approvers`, an approval counts only from a listed approver, compared on
   the claims exactly as the server sent them. A bare entry names the preset's unique
   username (GitHub's `login`); with a preset that has none it is refused before a
   device code: it would match a name the server does not keep unique.
7. After approval, any failure — the approver refused, an unusable answer, outputs that
   cannot be written, a cancellation — revokes what was issued, the grant first, within
   a budget of its own. Tokens are never live and lost (`refresh` keeps the same rule
   through :func:`revoke_after_failure`).
8. Outputs are written all or none; a cancellation waits for them to finish.
9. Every way out goes through ``platform.finish``, so the comment, the summary and the
   ``status`` output always tell what happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from urllib.parse import urlsplit

import httpx

from ci_shark import cancel
from ci_shark.config import Settings
from ci_shark.errors import CiSharkError, ConfigError, ExpiredToken, PolicyRefused
from ci_shark.input_values import approver_entry
from ci_shark.oauth.device import DeviceAuthorization, DeviceFlow
from ci_shark.oauth.dpop import DPoPKey
from ci_shark.oauth.http import OAuthHttp
from ci_shark.oauth.identity import Identity, identify
from ci_shark.oauth.providers import Provider, resolve
from ci_shark.oauth.tokens import TokenSet, revoke_each
from ci_shark.outputs import Credentials
from ci_shark.platforms.base import Platform
from ci_shark.render import ApprovalRequest, Outcome, RunContext
from ci_shark.render.facts import FactGroup
from ci_shark.safe_text import untrusted
from ci_shark.secret import Secret
from ci_shark.workload import CiAssertions, prove

# Rule 3: finding the server (metadata, device code) before the link is shown.
REACH_BUDGET_S = 60.0
# Rule 5: a renewed code is only worth asking for with time left to approve it, no sooner
# than this after the previous one, and at most this many times.
MIN_RENEWAL_WINDOW_S = 10.0
RENEWAL_GAP_S = 10.0
MAX_RENEWALS = 100
# Rule 7: once the token is in, learning who approved and undoing a refused grant get
# their own short budget: the outputs must not wait until the approval deadline.
AFTER_APPROVAL_BUDGET_S = 15.0


@dataclass(frozen=True)
class Plan:
    """What rule 1 settled before any device code exists."""

    auth_url: str
    client_id: str
    provider: Provider
    context: RunContext
    dpop_key: DPoPKey | None
    workload: CiAssertions | None = None  # `workload-identity`: the client's assertions


def run(
    settings: Settings,
    platform: Platform,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    transport: httpx.BaseTransport | None = None,
) -> Credentials:
    """Get an approved, exported credential, or raise the CiSharkError that says why not."""
    progress = _Progress()
    with finished(platform, progress):  # rule 9
        deadline = clock() + settings.timeout
        plan = prepare(settings, platform)  # rules 1, 2
        with (
            closing(plan.workload) if plan.workload else nullcontext(),
            OAuthHttp(
                ca_bundle=settings.ca_bundle,
                transport=transport,
                clock=clock,
                sleep=sleep,
                report=platform.report,  # rule 3
            ) as http,
        ):
            flow = device_flow(settings, plan, http, clock, sleep)
            with undone_on_failure(flow, progress):  # rule 7
                tokens = wait_for_approval(flow, settings, plan, platform, progress, deadline)
                progress.issued = tokens.issued()
                identity = who_approved(flow, tokens, plan)
                progress.approver = identity.display if identity else None
                enforce_allowed_approvers(identity, settings.allowed_approvers)  # rule 6
                credentials = export(plan, tokens, flow, progress, platform)  # rule 8
    if cancel.deferred() is not None:
        platform.log("ci_shark: cancelled while writing the outputs; they were written whole")
    return credentials


@contextmanager
def finished(platform: Platform, progress: _Progress) -> Iterator[None]:
    """Rule 9: whichever way the run ends, the platform says so (comment, summary, status)."""
    try:
        yield
    except CiSharkError as failure:
        outcome = Outcome(failure.status, failure.message, progress.approver)
        platform.finish(outcome, progress.request)
        raise
    except Exception:
        outcome = Outcome("error", "ci_shark failed unexpectedly", progress.approver)
        platform.finish(outcome, progress.request)
        raise


@dataclass
class _Progress:
    """What the outcome message needs whichever way the run ends."""

    request: ApprovalRequest | None = None
    approver: str | None = None
    issued: list[tuple[Secret, str]] = field(default_factory=list)  # live until exported


# -- 1, 2: before a device code exists -----------------------------------------------------


def prepare(settings: Settings, platform: Platform) -> Plan:
    auth_url, client_id = settings.required("auth_url"), settings.required("client_id")
    provider = resolve(
        settings.provider, auth_url, has_client_secret=settings.client_secret is not None
    )
    check_allowed_approvers(settings.allowed_approvers, provider)  # rule 6, up front
    # Rule 4: every secret input, before anything uses it. One from the CI's secret store
    # may be masked already; a literal typed into the pipeline is not.
    inputs = (getattr(settings, name) for name in type(settings).model_fields)
    platform.mask([value for value in inputs if isinstance(value, Secret)])
    context = platform.context()
    enforce_run_policy(context, settings, platform.warn)
    dpop_key = load_dpop_key(settings)
    platform.check_outputs()
    workload = (
        CiAssertions.of(platform, settings.workload_identity_audience)
        if settings.workload_identity
        else None
    )
    return Plan(auth_url, client_id, provider, context, dpop_key, workload)


def enforce_run_policy(
    context: RunContext, settings: Settings, warn: Callable[[str], None]
) -> None:
    """Rule 2, from the facts the platform found."""
    if context.public and not settings.allowed_approvers:
        warn(
            "this repository is public: anyone who reads the log can open the link and "
            "approve first. Set `allowed-approvers` so only your maintainers' approvals count"
        )
    if not context.is_fork or settings.allow_fork:
        return
    what = context.change_request or "this change"
    if context.fork_source:
        origin = f"{what} comes from a fork: {untrusted(context.fork_source, 100)}"
    else:
        doubt = untrusted(context.fork_doubt or "deleted or unreadable", 300)
        origin = (
            f"{what} comes from a repository the CI could not name ({doubt}), so it counts "
            "as a fork"
        )
    raise PolicyRefused(
        f"refusing to ask for approval: {origin}. Anyone can open a pull or merge request "
        "whose job asks a maintainer to hand it a credential, so ci_shark requests no device "
        "code for it",
        hint="run the job from a branch of this repository, or set `allow-fork` to true "
        "only if approvers are told to refuse runs they did not expect",
    )


def check_allowed_approvers(allowed: tuple[str, ...], provider: Provider) -> None:
    """Rule 6, before a device code: a bare entry matches the preset's unique username.
    A preset without one would compare it with `preferred_username`, which OpenID Connect
    says is not unique and many servers let users set: anyone could take the name."""
    bare = [name for kind, name in map(approver_entry, allowed) if kind is None]
    if not bare or provider.unique_username_claim is not None:
        return
    listed = ", ".join(f"`{name}`" for name in bare)
    raise ConfigError(
        f"`allowed-approvers` has the bare entry {listed}: with the {provider.name} provider "
        "a bare name would match a username the server does not keep unique (anyone who "
        "sets theirs to it could approve)",
        hint="name the claim: sub:<subject> (unique, never reassigned), email:<address> "
        "(verified addresses only), or user:<username> if this server's usernames are unique "
        "and users cannot change them; a bare name is a GitHub login (provider github). "
        "See docs/compatibility.md",
    )


def load_dpop_key(settings: Settings) -> DPoPKey | None:
    if not settings.dpop:
        return None
    if settings.dpop_private_key is not None:
        return DPoPKey.load(settings.dpop_private_key.reveal())
    return DPoPKey.generate()


# -- 3, 4, 5: the device code and the wait -------------------------------------------------


def device_flow(
    settings: Settings,
    plan: Plan,
    http: OAuthHttp,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> DeviceFlow:
    return DeviceFlow(
        plan.auth_url,
        plan.client_id,
        settings.scope,
        client_secret=settings.client_secret,
        client_assertion=plan.workload,
        dpop_prover=plan.dpop_key,
        resource=settings.resource,
        extra_params=settings.extra_params,
        device_authorization_endpoint=settings.device_authorization_endpoint,
        token_endpoint=settings.token_endpoint,
        provider=plan.provider,
        http=http,
        clock=clock,
        sleep=sleep,
    )


def wait_for_approval(  # noqa: PLR0917 (the run's named parts, in its order)
    flow: DeviceFlow,
    settings: Settings,
    plan: Plan,
    platform: Platform,
    progress: _Progress,
    deadline: float,
) -> TokenSet:
    """Ask for a code, show it, poll; with `renew`, again when it expires (rule 5)."""
    clock = flow.clock
    vouched: tuple[FactGroup, ...] = ()
    if plan.workload is not None:  # rule 1: the CI's token, checked before a device code
        reach = min(deadline, clock() + REACH_BUDGET_S)
        vouched = prove(flow, plan.workload, platform.log, deadline=reach)
    for renewal in range(MAX_RENEWALS + 1):
        asked_at = clock()
        authorization = flow.begin(deadline=min(deadline, asked_at + REACH_BUDGET_S))
        platform.mask([authorization.device_code])
        if authorization.link_warning:
            platform.warn(authorization.link_warning)
        progress.request = approval_request(authorization, flow.issuer, settings, plan, vouched)
        platform.announce(progress.request)  # a renewal edits the same comment in place
        try:
            return flow.poll(deadline - clock(), on_wait=platform.waiting)
        except ExpiredToken:
            renew_at = asked_at + RENEWAL_GAP_S
            if (
                not settings.renew
                or renewal == MAX_RENEWALS
                or deadline - max(clock(), renew_at) < MIN_RENEWAL_WINDOW_S
            ):
                raise
            flow.sleep(max(0.0, renew_at - clock()))
            platform.log("ci_shark: the code expired; asking for a new one (renew)")
    raise AssertionError("unreachable: the last renewal re-raises")


def approval_request(
    authorization: DeviceAuthorization,
    issuer: str,
    settings: Settings,
    plan: Plan,
    vouched: tuple[FactGroup, ...] = (),
) -> ApprovalRequest:
    return ApprovalRequest(
        link=authorization.link,
        verification_uri=authorization.verification_uri,
        user_code=authorization.user_code,
        expires_at=datetime.now(timezone.utc) + timedelta(seconds=authorization.expires_in),
        scope=settings.scope,
        resource=settings.resource,
        dpop_jkt=plan.dpop_key.jkt if plan.dpop_key else None,
        context=plan.context,
        server_host=urlsplit(issuer).hostname,
        vouched=vouched,
    )


# -- 6, 7: after approval ------------------------------------------------------------------


def who_approved(flow: DeviceFlow, tokens: TokenSet, plan: Plan) -> Identity | None:
    budget = flow.clock() + AFTER_APPROVAL_BUDGET_S
    return identify(
        tokens,
        client_id=plan.client_id,
        issuer=flow.issuer,
        http=flow.http,
        find_userinfo=partial(flow.userinfo_endpoint, deadline=budget),
        dpop=plan.dpop_key,
        deadline=budget,
        provider=plan.provider,
    )


def enforce_allowed_approvers(identity: Identity | None, allowed: tuple[str, ...]) -> None:
    """Rule 6. Anyone signed in can approve any code (device-code phishing): when the
    workflow names its approvers, an approval from anyone else is refused (and, by rule 7,
    revoked)."""
    if not allowed or (identity is not None and is_allowed(identity, allowed)):
        return
    who = identity.display if identity else "someone the server did not identify"
    usernames = {name for kind, name in map(approver_entry, allowed) if kind != "sub"}
    near = (
        f"; `{identity.subject}` is listed as a username: to allow this subject, "
        f"write sub:{identity.subject}"
        if identity is not None and identity.subject in usernames
        else ""
    )
    raise PolicyRefused(
        f"approved by {who}, who is not in `allowed-approvers`{near}",
        hint="approve as one of the allowed approvers, or change `allowed-approvers`; the "
        "server must tell who approved (an id_token or userinfo)",
    )


def is_allowed(identity: Identity, allowed: tuple[str, ...]) -> bool:
    """Each entry names one claim: ``sub:…`` the subject (exactly), ``user:…`` the
    username, ``email:…`` a verified email, a bare entry the preset's unique username
    (GitHub's ``login``; :func:`check_allowed_approvers` refused it for other presets).
    Names ignore ASCII case, and only ASCII case: a Unicode look-alike is another name.
    Values are the server's, unsanitised: ``john$doe`` is not ``john_doe``."""
    claims = {
        "sub": identity.subject,
        "user": identity.username,
        "email": identity.email,
        None: identity.unique_username,
    }
    for entry in allowed:
        kind, name = approver_entry(entry)
        value = claims[kind]
        if value is None:
            continue
        if value == name if kind == "sub" else _ascii_folded(value) == _ascii_folded(name):
            return True
    return False


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_folded(text: str) -> str:
    return text.translate(_ASCII_LOWER)


@contextmanager
def undone_on_failure(flow: DeviceFlow, progress: _Progress) -> Iterator[None]:
    """Rule 7: revoke what the server issued and nobody received (the grant first)."""
    try:
        yield
    except BaseException as failure:
        issued, progress.issued = progress.issued or issued_before(failure), []
        revoke_after_failure(
            failure,
            issued,
            lambda tokens: revoke_quietly(
                flow, tokens, deadline=flow.clock() + AFTER_APPROVAL_BUDGET_S
            ),
        )
        raise


def issued_before(failure: BaseException) -> list[tuple[Secret, str]]:
    """What the server may have issued before ``failure`` (an unusable token response)."""
    return failure.issued if isinstance(failure, CiSharkError) else []


def revoke_after_failure(
    failure: BaseException,
    issued: list[tuple[Secret, str]],
    revoke: Callable[[list[tuple[Secret, str]]], bool],
) -> None:
    """Rule 7, for every grant (a login's, a refresh's): tokens issued and then lost to a
    failure are revoked (``revoke`` says whether all went), and the failure says so."""
    if not issued:
        return
    revoked = revoke(issued)
    if isinstance(failure, CiSharkError):
        failure.message += (
            "; the tokens it issued were revoked"
            if revoked
            else "; the tokens it issued could not be revoked (they expire on their own)"
        )


def revoke_quietly(
    flow: DeviceFlow,
    issued: list[tuple[Secret, str]],
    *,
    deadline: float,
) -> bool:
    """Revoke each issued token; True when every one went."""
    try:
        endpoints = flow.endpoints_after_approval(deadline=deadline)
    except CiSharkError:
        return False
    if endpoints.revocation is None:
        return False
    # The login's client, authenticating as it did (a fresh CI token too).
    results = revoke_each(
        flow.http, endpoints.revocation, issued, flow.client(), dpop=flow.dpop, deadline=deadline
    )
    return not any(results.values())


# -- 8: outputs ----------------------------------------------------------------------------


def export(
    plan: Plan, tokens: TokenSet, flow: DeviceFlow, progress: _Progress, platform: Platform
) -> Credentials:
    if plan.dpop_key is not None and not tokens.is_dpop_bound:
        platform.warn(
            f"DPoP was requested but the server issued a {tokens.token_type} token: it is "
            "not sender-constrained; `token-type` says so"
        )
    endpoints = flow.endpoints()
    credentials = Credentials(
        tokens=tokens,
        dpop_key=plan.dpop_key,
        approver=progress.approver,
        auth_url=plan.auth_url,
        client_id=plan.client_id,
        token_endpoint=endpoints.token,
        revocation_endpoint=endpoints.revocation,
        client_auth=flow.client().method,  # later steps authenticate the same way
        workload_identity_audience=plan.workload.audience if plan.workload else None,
    )
    with cancel.shielded():  # a cancellation now waits: all outputs, or none
        platform.mask(credentials.secrets())  # before anything is written anywhere
        credentials = platform.export(credentials)
        progress.issued = []  # delivered: from here on they are the job's to revoke
        outcome = Outcome("approved", "credentials exported", progress.approver)
        platform.finish(outcome, progress.request)
    return credentials
