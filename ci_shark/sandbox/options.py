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
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

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
            "opening the verification link only shows approve/deny buttons",
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
        prog="python -m ci_shark.sandbox",
        description="Run the ci_shark loopback authorization server (RFC 8628 + DPoP).",
        epilog="Each request is logged to stderr as one line: time, method, path (never the "
        "query), status and what the server decided. No token, code or secret is logged.",
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
