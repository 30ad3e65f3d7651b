"""Every sandbox option, written once: the server's keywords and the standalone flags follow.

``--help`` shows each flag's default, read from the field (or the flag's ``default_text``
where a bare value would not say what it means), so the help cannot drift from the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Concatenate, Final, Literal, ParamSpec, TypeVar

from ci_shark.sandbox.ci_trust import ANY_CLIENT, RULE_SYNTAX, ClaimRule
from ci_shark.sandbox.faults import FAULT_NAMES, parse_fault
from ci_shark.sandbox.wire import is_loopback


@dataclass(frozen=True)
class Flag:
    """How an option appears on the ``python -m ci_shark.sandbox`` command line."""

    name: str
    help: str
    const: object = None  # a switch: giving the flag stores this value
    parse: Callable[[str], Any] = str  # a flag with a value: how to read it
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    repeatable: bool = False  # may be given again: the parsed lists are joined
    default_text: str | None = None  # the default in --help, when its value says too little


def _flag(name: str, help: str, **how: Any) -> dict[str, Flag]:
    return {"flag": Flag(name, help, **how)}


def _comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


_FAULTS_HELP = ", ".join(sorted(FAULT_NAMES)) + ", slow:<s>"


def _ci_rules(value: str) -> list[ClaimRule]:
    try:
        return [ClaimRule.parse(value)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _claim_pairs(value: str) -> list[tuple[str, str]]:
    claim, equals, text = value.partition("=")
    if not equals or not claim.strip():
        raise argparse.ArgumentTypeError(f"{value!r}: write CLAIM=VALUE, e.g. repository=octo/app")
    return [(claim.strip(), text)]


@dataclass(frozen=True, kw_only=True)
class SandboxOptions:
    """How the sandbox behaves. Validated on construction (ValueError)."""

    # No flag: no authentication protects approval, so it never listens beyond loopback.
    host: str = "127.0.0.1"
    port: int = field(
        default=0,
        metadata=_flag(
            "--port", "TCP port on 127.0.0.1", parse=int, default_text="0, any free port"
        ),
    )
    interval_s: int = field(
        default=1, metadata=_flag("--interval", "poll interval in seconds", parse=int)
    )
    expires_in_s: int = field(
        default=600, metadata=_flag("--expires-in", "device code lifetime in seconds", parse=int)
    )
    approve_after_s: float | None = field(
        default=None,
        metadata=_flag(
            "--approve-after",
            "decide automatically after N seconds",
            parse=float,
            default_text="none, the verification page decides",
        ),
    )
    approve_on_open: bool = field(
        default=True,
        metadata=_flag(
            "--no-approve-on-open",
            "opening the verification link only shows approve/deny buttons (always so "
            "when a CI issuer is trusted)",
            const=False,
        ),
    )
    decision: Literal["approve", "deny"] = field(
        default="approve", metadata=_flag("--deny", "automatic decisions deny", const="deny")
    )
    require_dpop: bool = field(
        default=True, metadata=_flag("--no-dpop", "DPoP optional (Bearer allowed)", const=False)
    )
    require_nonce: bool = field(
        default=True, metadata=_flag("--no-dpop-nonce", "do not demand DPoP nonces", const=False)
    )
    strict_interval: bool = field(
        default=True, metadata=_flag("--no-strict-interval", "never answer slow_down", const=False)
    )
    send_interval: bool = field(
        default=True,
        metadata=_flag("--no-send-interval", "omit interval (like oidc-provider)", const=False),
    )
    metadata: bool = field(
        default=True, metadata=_flag("--no-metadata", "/.well-known/* answer 404", const=False)
    )
    device_flow: Literal["enabled", "missing", "disabled"] = field(
        default="enabled",
        metadata=_flag(
            "--device-flow",
            "missing: no device endpoint (404); disabled: it answers 501 (SharkAuth today)",
            choices=("enabled", "missing", "disabled"),
        ),
    )
    token_faults: Sequence[str] = field(
        default=(),
        metadata=_flag(
            "--token-fault",
            f"fault(s) for successive token requests: {_FAULTS_HELP}",
            parse=_comma_list,
            metavar="FAULT[,FAULT]",
            repeatable=True,
        ),
    )
    device_faults: Sequence[str] = field(
        default=(),
        metadata=_flag(
            "--device-fault",
            "fault(s) for successive device authorization requests",
            parse=_comma_list,
            metavar="FAULT[,FAULT]",
            repeatable=True,
        ),
    )
    issue_refresh_token: bool = field(
        default=True, metadata=_flag("--no-refresh-token", "issue no refresh token", const=False)
    )
    refresh_reuse_revokes: bool = field(
        default=True,
        metadata=_flag(
            "--no-refresh-reuse-detection",
            "a rotated refresh token sent again is only refused; by default it revokes its "
            "whole grant (RFC 9700 §4.14.2 reuse detection)",
            const=False,
        ),
    )
    subject: str = field(
        default="octocat",
        metadata=_flag("--subject", "the approving user (sub and preferred_username)"),
    )
    # Empty: any client id is a public client, as on a server where everyone registered.
    client_ids: Sequence[str] = field(
        default=(),
        metadata=_flag(
            "--client-id",
            "accept only these client ids; any other gets invalid_client (HTTP 401), as an "
            "unregistered client would",
            parse=_comma_list,
            metavar="ID[,ID]",
            repeatable=True,
            default_text="any client id",
        ),
    )
    access_token_ttl_s: int = field(
        default=3600,
        metadata=_flag("--access-token-ttl", "access token lifetime in seconds", parse=int),
    )
    nonce_ttl_s: float = field(
        default=30.0,
        metadata=_flag(
            "--nonce-ttl", "seconds before the DPoP nonce rotates by itself", parse=float
        ),
    )
    bare_nonce_challenge: bool = field(
        default=False,
        metadata=_flag(
            "--bare-nonce-challenge",
            "resources answer a missing or stale DPoP nonce with a bare 401 and only a "
            "DPoP-Nonce header (glewlwyd style), not WWW-Authenticate: DPoP error=use_dpop_nonce",
            const=True,
        ),
    )
    # Workload identity: RFC 7523 client authentication with a CI's OIDC token.
    trust_ci_issuer: str | None = field(
        default=None,
        metadata=_flag(
            "--trust-ci-issuer",
            "trust CI OIDC tokens signed by the keys of this JWKS (a file, or an https URL) "
            "as client assertions; needs --ci-issuer and --ci-allow",
            metavar="JWKS_FILE_OR_URL",
        ),
    )
    ci_issuer: str | None = field(
        default=None,
        metadata=_flag(
            "--ci-issuer",
            "the iss those tokens carry, e.g. https://token.actions.githubusercontent.com",
            metavar="ISS",
        ),
    )
    ci_allow: Sequence[ClaimRule] = field(
        default=(),
        metadata=_flag(
            "--ci-allow",
            "a CI token may authenticate CLIENT (* = any) when its CLAIM matches GLOB; "
            "repeat to add rules (all must hold); a client a rule names must send one",
            parse=_ci_rules,
            metavar="CLIENT:CLAIM=GLOB",
            repeatable=True,
        ),
    )
    ci_token_reuse: bool = field(
        default=False,
        metadata=_flag(
            "--ci-token-reuse",
            "accept a CI token again until it expires (GitLab gives one per job); "
            "default: each jti once",
            const=True,
        ),
    )
    fake_ci_issuer: bool = field(
        default=False,
        metadata=_flag(
            "--fake-ci-issuer",
            "start a fake GitHub-shaped CI token service beside the sandbox and trust it "
            f"(rules: --ci-allow; default {ANY_CLIENT}:repository=<its repository>)",
            const=True,
        ),
    )
    fake_ci_claims: Sequence[tuple[str, str]] = field(
        default=(),
        metadata=_flag(
            "--fake-ci-claim",
            "a claim of the fake CI issuer's tokens (repeatable), e.g. ref=refs/heads/dev",
            parse=_claim_pairs,
            metavar="CLAIM=VALUE",
            repeatable=True,
        ),
    )
    # Confidential clients: their secret must come with every request (HTTP Basic or
    # client_secret), and only they may use client_credentials; any other client_id is a
    # public client, whose secret is not checked. No flag: a secret on argv is public.
    client_secrets: Mapping[str, str] = field(default_factory=dict)
    # No flag: where the standalone server writes one line per request (method, path,
    # status, outcome). None in process: the demo and the tests read ``stats`` instead.
    request_log: Callable[[str], None] | None = None
    # No flag: tests inject a fake to move time by hand (grants, nonces, token expiry).
    clock: Callable[[], float] = time.monotonic

    def knows_client(self, client_id: str) -> bool:
        """Whether the client is registered: any is, unless client ids are listed."""
        return not self.client_ids or client_id in (*self.client_ids, *self.client_secrets)

    def __post_init__(self) -> None:
        if not is_loopback(self.host):
            raise ValueError(f"the sandbox binds loopback only, not {self.host!r}")
        if self.decision not in ("approve", "deny"):
            raise ValueError(f"decision must be 'approve' or 'deny', not {self.decision!r}")
        if self.device_flow not in ("enabled", "missing", "disabled"):
            raise ValueError(
                f"device_flow must be enabled, missing or disabled: {self.device_flow!r}"
            )
        if self.interval_s < 0 or self.expires_in_s <= 0 or self.nonce_ttl_s <= 0:
            raise ValueError("interval_s must be >= 0, expires_in_s and nonce_ttl_s > 0")
        if self.access_token_ttl_s <= 0:
            raise ValueError("access_token_ttl_s must be > 0")
        if any(not client_id.strip() for client_id in self.client_ids):
            raise ValueError("client_ids must not hold an empty client id")
        for fault in (*self.token_faults, *self.device_faults):
            parse_fault(fault)
        self._check_workload_identity()

    @property
    def trusts_ci(self) -> bool:
        """A CI issuer is trusted: its tokens may authenticate clients."""
        return self.trust_ci_issuer is not None or self.fake_ci_issuer

    def _check_workload_identity(self) -> None:
        if self.trust_ci_issuer is not None and self.fake_ci_issuer:
            raise ValueError("--trust-ci-issuer and --fake-ci-issuer: choose one issuer to trust")
        if self.trust_ci_issuer is not None and not self.ci_issuer:
            raise ValueError(
                "--trust-ci-issuer needs --ci-issuer ISS: the iss its tokens carry "
                "(GitHub: https://token.actions.githubusercontent.com)"
            )
        if self.trust_ci_issuer is not None and not self.ci_allow:
            raise ValueError(
                f"--trust-ci-issuer needs at least one --ci-allow {RULE_SYNTAX}: without a "
                "rule, any repository on that CI could authenticate"
            )
        unused = [
            name
            for name, given in (
                ("--ci-issuer", bool(self.ci_issuer) and self.trust_ci_issuer is None),
                ("--ci-allow", bool(self.ci_allow) and not self.trusts_ci),
                ("--ci-token-reuse", self.ci_token_reuse and not self.trusts_ci),
                ("--fake-ci-claim", bool(self.fake_ci_claims) and not self.fake_ci_issuer),
            )
            if given
        ]
        if unused:
            raise ValueError(
                f"{', '.join(unused)} without a CI issuer to trust: add --trust-ci-issuer "
                "(or --fake-ci-issuer)"
            )
        for rule in self.ci_allow:
            both = [c for c in self.client_secrets if rule.applies_to(c)]
            if both:
                raise ValueError(
                    f"client {both[0]!r} has a secret and the rule {rule}: a client "
                    "authenticates one way"
                )


Params = ParamSpec("Params")
Self = TypeVar("Self")


def option_keywords(
    options_type: Callable[Params, SandboxOptions],
) -> Callable[[Callable[[Self, SandboxOptions], None]], Callable[Concatenate[Self, Params], None]]:
    """Give an ``__init__(self, options)`` the keyword signature of ``SandboxOptions``.

    The option list stays written once, yet callers keep writing
    ``SandboxServer(interval_s=2, approve_after_s=3)`` and mypy checks every keyword.
    """

    def decorate(
        init: Callable[[Self, SandboxOptions], None],
    ) -> Callable[Concatenate[Self, Params], None]:
        @functools.wraps(init)
        def init_from_keywords(self: Self, /, *args: Params.args, **kwargs: Params.kwargs) -> None:
            init(self, options_type(*args, **kwargs))

        # help() and inspect show the keywords, not the wrapped (self, options); setattr
        # because to mypy a Callable has no __signature__.
        keywords = inspect.signature(options_type).parameters.values()
        self_parameter = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
        signature = inspect.Signature([self_parameter, *keywords], return_annotation=None)
        setattr(init_from_keywords, "__signature__", signature)  # noqa: B010
        return init_from_keywords

    return decorate


def _metavar(flag: Flag) -> str | None:
    # argparse's own choice, had dest not been the field name: --expires-in -> EXPIRES_IN.
    return None if flag.choices else flag.name.removeprefix("--").upper().replace("-", "_")


_EPILOG: Final = """\
workload identity (RFC 7523 client authentication with the CI's OIDC token):
  A client that a --ci-allow rule names must send, with the device request, every poll,
  refresh and revoke:
    client_id=CLIENT
    client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer
    client_assertion=<a fresh CI token: iss ISS, aud this server's URL>
  Checked: the signature (RS256 or ES256, keys from the JWKS), iss, aud, exp/nbf/iat (60 s
  of skew), jti (once, unless --ci-token-reuse), then every rule for the client: CLAIM
  matches GLOB (fnmatch, case-sensitive; * spans /). Any failure: 401 invalid_client with
  the reason. Opening the link never approves: the page shows the claims this server
  verified and asks (Approve/Deny); --approve-after still decides on a timer.

    python -I -m ci_shark.sandbox \\
      --trust-ci-issuer https://token.actions.githubusercontent.com/.well-known/jwks \\
      --ci-issuer https://token.actions.githubusercontent.com \\
      --ci-allow 'ci-shark:repository=octo/app' --ci-allow 'ci-shark:ref=refs/heads/*'

fake CI issuer (--fake-ci-issuer):
  A GitHub-shaped OIDC token service on another loopback port, trusted by this sandbox.
  After the "listening on" line it prints ACTIONS_ID_TOKEN_REQUEST_URL=... and
  ACTIONS_ID_TOKEN_REQUEST_TOKEN=... lines, ready for a job's environment:
  GET "$ACTIONS_ID_TOKEN_REQUEST_URL&audience=AUD" with
  "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" answers {"value": "<jwt>"};
  a wrong or missing bearer gets 403. Its tokens say repository=octo/app, ref=refs/heads/main
  (change them with --fake-ci-claim).
"""
_LOG_NOTE: Final = """
Each request is logged to stderr as one line: time, method, path (never the query), status
and what the server decided. No token, code or secret is logged.
"""


def _default_text(option: dataclasses.Field[Any], flag: Flag) -> str:
    if flag.default_text is not None:
        return flag.default_text
    default = option.default
    if default in (None, (), ""):
        return "none"
    return str(default)


def argument_parser() -> argparse.ArgumentParser:
    # SUPPRESS: a flag not given stays out of the namespace, so the defaults live only above.
    parser = argparse.ArgumentParser(
        prog="python -I -m ci_shark.sandbox",
        description="Run the ci_shark loopback authorization server (RFC 8628 + DPoP).",
        epilog=_EPILOG + _LOG_NOTE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    for option in dataclasses.fields(SandboxOptions):
        flag: Flag | None = option.metadata.get("flag")
        if flag is None:
            continue
        common: dict[str, Any] = {"dest": option.name, "help": flag.help}
        if flag.const is None:
            common["help"] += f" (default: {_default_text(option, flag)})"
        if flag.const is not None:
            parser.add_argument(flag.name, action="store_const", const=flag.const, **common)
        else:
            action = "extend" if flag.repeatable else "store"
            parser.add_argument(
                flag.name,
                action=action,
                type=flag.parse,
                choices=flag.choices,
                metavar=flag.metavar or _metavar(flag),
                **common,
            )
    return parser


def keywords_from_argv(argv: Sequence[str] | None) -> dict[str, Any]:
    """The options given on the command line, as SandboxOptions keywords."""
    return vars(argument_parser().parse_args(argv))
