"""The command line: the only place where errors become exit codes and messages.

``python -m ci_shark`` runs ``login``; ``proof``, ``revoke`` and ``demo`` are the others.
Heavy modules are imported inside the command that needs them, so ``--version`` and the
path to the approval link stay fast.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ci_shark import __version__, cancel
from ci_shark.errors import CiSharkError, ConfigError, ExitCode

if TYPE_CHECKING:
    from ci_shark.config import Settings
    from ci_shark.oauth.dpop import DPoPKey
    from ci_shark.platforms.base import Platform
    from ci_shark.secret import Secret

COMMANDS = ("login", "proof", "revoke", "demo")
EPILOG = (
    "Every option can also be set as a CI_SHARK_* environment variable (GitHub Action inputs "
    "arrive that way); flags win. Exit codes: 0 approved, 1 unexpected failure, 2 bad "
    "configuration, 3 denied, 4 not approved in time, 5 server does not offer the device "
    "flow, 6 refused by policy, 130/143 cancelled."
)
# Settings fields that login takes as flags, with the flag's spelling.
_LOGIN_FLAGS: dict[str, dict[str, Any]] = {
    "auth_url": {"help": "authorization server base URL (issuer)"},
    "client_id": {"help": "OAuth client id"},
    "client_secret": {
        "help": "client secret (prefer CI_SHARK_CLIENT_SECRET: argv is visible to other processes)"
    },
    "scope": {"help": "space-separated scopes to request"},
    "resource": {"help": "RFC 8707 resource indicator(s), space-separated"},
    "device_authorization_endpoint": {"help": "override the discovered endpoint"},
    "token_endpoint": {"help": "override the discovered endpoint"},
    "timeout": {"help": "how long to wait for approval: 300, 300s, 15m, 1h (default 10m)"},
    "notify": {"help": "comma list of log, summary, comment, none (default auto)"},
    "output_format": {"help": "auto, github, dotenv, shell, json"},
    "output_file": {"help": "where dotenv/json outputs go (default ci-shark.env / .json)"},
    "ca_bundle": {"help": "PEM file of CAs to trust instead of the system's"},
    "provider": {"help": "auto, shark, github, google, entra, auth0, okta, keycloak, generic"},
    "allowed_approvers": {"help": "comma list of subjects, usernames or emails"},
}


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"ci_shark {__version__}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ci-shark",
        description="Human-approved, DPoP-bound OAuth credentials for CI jobs (RFC 8628).",
        epilog=EPILOG,
    )
    _add_common(parser)
    commands = parser.add_subparsers(dest="command", metavar="{login,proof,revoke,demo}")

    login = commands.add_parser(
        "login", help="run the device flow and export the credentials (default)", epilog=EPILOG
    )
    _add_common(login)
    for field, options in _LOGIN_FLAGS.items():
        login.add_argument(f"--{field.replace('_', '-')}", dest=field, **options)
    login.add_argument(
        "--dpop", action=argparse.BooleanOptionalAction, default=None, help="default: --dpop"
    )
    login.add_argument("--dpop-private-key-file", type=Path, help="PEM or JWK file to use")
    for flag in ("allow-fork", "renew"):
        login.add_argument(f"--{flag}", action=argparse.BooleanOptionalAction, default=None)
    login.add_argument(
        "--extra-param", action="append", metavar="K=V", help="extra device request field"
    )

    proof = commands.add_parser("proof", help="print a DPoP proof for a later request")
    _add_common(proof)
    proof.add_argument("--method", required=True, help="HTTP method, e.g. GET")
    proof.add_argument("--url", required=True, help="the request URL (query is dropped)")
    token = proof.add_mutually_exclusive_group()
    token.add_argument("--access-token", help="bind the proof to this token (ath)")
    token.add_argument(
        "--with-access-token",
        action="store_true",
        help="bind the proof to $SHARK_ACCESS_TOKEN (keeps the token off argv)",
    )
    proof.add_argument("--nonce", help="the server's DPoP-Nonce")
    proof.add_argument("--key-file", type=Path, help="default: $SHARK_DPOP_KEY_FILE")

    revoke = commands.add_parser(
        "revoke", help="revoke $SHARK_ACCESS_TOKEN and $SHARK_REFRESH_TOKEN (RFC 7009)"
    )
    _add_common(revoke)
    for field in ("auth_url", "client_id", "ca_bundle"):
        revoke.add_argument(f"--{field.replace('_', '-')}", dest=field)

    demo = commands.add_parser("demo", help="the whole flow against a built-in sandbox server")
    _add_common(demo)
    demo.add_argument(
        "--approve-after", type=float, default=5.0, help="seconds until the sandbox approves"
    )
    return parser


# Flags whose values are opaque server or secret strings. base64url text starts with "-" one
# time in 64, and argparse takes "--nonce -x1" for a missing value plus an unknown option.
_OPAQUE_VALUE_FLAGS = frozenset({"--nonce", "--access-token", "--client-id", "--client-secret"})


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every option any command knows, so a missing value is still told from a value."""
    found: set[str] = set()
    for action in parser._actions:
        found.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                found |= _option_strings(command)
    return found


def _glue_opaque_values(argv: Sequence[str], options: set[str]) -> list[str]:
    """Rewrite ``--nonce -abc`` as ``--nonce=-abc`` so a leading dash stays part of the
    value; ``--client-id --no-dpop`` (an empty variable) still fails as a missing value."""

    def is_option(arg: str) -> bool:
        name = arg.split("=", 1)[0]
        # argparse accepts unambiguous abbreviations of long options too.
        return name in options or (
            name.startswith("--") and any(option.startswith(name) for option in options)
        )

    args: list[str] = []
    pending = False
    for arg in argv:
        if pending and arg.startswith("-") and not is_option(arg):
            args[-1] = f"{args[-1]}={arg}"
        else:
            args.append(arg)
        pending = arg in _OPAQUE_VALUE_FLAGS and not pending
    return args


def _with_default_command(
    argv: Sequence[str], parser: argparse.ArgumentParser | None = None
) -> list[str]:
    args = _glue_opaque_values(argv, _option_strings(parser or build_parser()))
    if args and (args[0] in COMMANDS or args[0] in ("-h", "--help", "--version")):
        return args
    return ["login", *args]


def _asks_for_shell(argv: Sequence[str]) -> bool:
    """Whether a login asked for `--output-format shell`, read from the raw command line as
    argparse would (the last flag wins, abbreviations count; else the env variable)."""
    if argv and argv[0] in COMMANDS and argv[0] != "login":
        return False
    chosen = os.environ.get("CI_SHARK_OUTPUT_FORMAT")
    for at, arg in enumerate(argv):
        name, equals, value = arg.partition("=")
        if len(name) > len("--output-") and "--output-format".startswith(name):
            chosen = value if equals else (argv[at + 1] if at + 1 < len(argv) else None)
    return chosen == "shell"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(_with_default_command(argv, parser))
    except SystemExit as usage_error:
        # A mistyped flag must stop `eval "$(python -m ci_shark --output-format shell)"`
        # too: argparse exits before _login could hand the eval its `exit N`.
        if usage_error.code not in (0, None) and _asks_for_shell(argv):
            print(f"exit {usage_error.code}", flush=True)
        raise
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "login": _login,
        "proof": _proof,
        "revoke": _revoke,
        "demo": _demo,
    }
    try:
        return handlers[args.command](args)
    except CiSharkError as failure:
        _print_error(failure.diagnostics())
        return int(failure.exit_code)
    except Exception as bug:  # the last line of defence
        # Only the type and where it happened: an exception's text may quote an input,
        # a server answer or a token, and a traceback shows the lines around it.
        _print_error(
            f"unexpected failure: {type(bug).__name__} at {_where(bug)}\n"
            "  this is a bug in ci_shark; please report it with this line"
        )
        return int(ExitCode.FAILURE)


def _where(error: BaseException) -> str:
    """file:line where it was raised: enough for a bug report, and nothing it could leak."""
    frames = traceback.extract_tb(error.__traceback__)
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"


def _print_error(message: str) -> None:
    for line in message.splitlines():
        print(f"ci_shark: error: {line}", file=sys.stderr, flush=True)


# -- login ---------------------------------------------------------------------------------


def _login_flags(args: argparse.Namespace) -> dict[str, Any]:
    flags = {field: getattr(args, field) for field in _LOGIN_FLAGS}
    flags.update(dpop=args.dpop, allow_fork=args.allow_fork, renew=args.renew)
    if args.extra_param:
        flags["extra_params"] = "\n".join(args.extra_param)
    if args.dpop_private_key_file is not None:
        flags["dpop_private_key"] = _read_key_file(args.dpop_private_key_file)
    return {name: value for name, value in flags.items() if value is not None}


def _read_key_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read the DPoP key file {path}: {exc.strerror}",
            hint="pass the path of a readable PEM or JWK file",
        ) from None


def _platform_for(settings: Settings) -> Platform:
    from ci_shark.platforms import detect

    return detect(os.environ)(settings, os.environ)


def _finish_without_settings(failure: CiSharkError) -> None:
    """An input was bad, so there are no settings; the platform still writes the `status`
    output and the summary (with defaults), as it does for every other outcome."""
    from ci_shark.config import ExplicitSettings
    from ci_shark.render import Outcome

    platform = _platform_for(ExplicitSettings())
    platform.finish(Outcome(failure.status, failure.message), None)


def _login(args: argparse.Namespace) -> int:
    cancel.install()
    from ci_shark.oauth.tls import preload_default_context

    preload_default_context()  # on a thread: the CA bundle loads while the imports run
    # The imports create ~10^5 objects that live as long as the process: collecting while
    # they load only walks them again and again, and so would the first collection after
    # them unless they are set apart (freeze). docs/perf.md has the figures.
    collecting = gc.isenabled()
    gc.disable()
    try:
        from ci_shark.config import load_settings
        from ci_shark.flow import run
    finally:
        gc.freeze()
        if collecting:
            gc.enable()

    # `eval "$(python -m ci_shark --output-format shell)"` ignores our exit code: on
    # failure, hand the eval an `exit N` so the job stops instead of going on without
    # credentials. Decided from the raw input because loading the settings may be what fails.
    wants_shell = (args.output_format or os.environ.get("CI_SHARK_OUTPUT_FORMAT")) == "shell"
    try:
        try:
            settings = load_settings(_login_flags(args))
        except ConfigError as bad_input:
            _finish_without_settings(bad_input)
            raise
        run(settings, _platform_for(settings))
    except Exception as failure:
        if wants_shell:
            code = failure.exit_code if isinstance(failure, CiSharkError) else ExitCode.FAILURE
            print(f"exit {int(code)}", flush=True)
        raise
    return int(ExitCode.OK)


# -- proof ---------------------------------------------------------------------------------


def _proof(args: argparse.Namespace) -> int:
    from ci_shark.config import load_issued_credentials, load_settings
    from ci_shark.oauth.dpop import DPoPKey
    from ci_shark.urls import url_problem

    problem = url_problem(args.url)
    if problem:
        raise ConfigError(f"--url {problem}", hint="pass the full https:// URL of the request")
    issued = load_issued_credentials()
    key_file = args.key_file or (Path(issued.dpop_key_file) if issued.dpop_key_file else None)
    if key_file is not None:
        key = DPoPKey.load(_read_key_file(key_file))
    else:
        configured = load_settings().dpop_private_key
        if configured is None:
            raise ConfigError(
                "no DPoP key: none of --key-file, SHARK_DPOP_KEY_FILE, CI_SHARK_DPOP_PRIVATE_KEY",
                hint="run `proof` in the job that ran login, or pass --key-file",
            )
        key = DPoPKey.load(configured.reveal())
    access_token: str | None = args.access_token
    if args.with_access_token:
        if issued.access_token is None:
            raise ConfigError("--with-access-token: SHARK_ACCESS_TOKEN is not set")
        access_token = issued.access_token.reveal()
    proof = key.proof(args.method, args.url, nonce=args.nonce, access_token=access_token)
    print(proof)  # a signed, single-use proof: only the token's hash (ath) is in it
    return int(ExitCode.OK)


# -- revoke --------------------------------------------------------------------------------


def _revoke(args: argparse.Namespace) -> int:
    from ci_shark.config import load_issued_credentials, load_settings
    from ci_shark.oauth.discovery import server_endpoints
    from ci_shark.oauth.http import OAuthHttp
    from ci_shark.oauth.providers import lookup
    from ci_shark.oauth.tokens import revoke_each

    flags = {f: getattr(args, f) for f in ("auth_url", "client_id", "ca_bundle")}
    settings = load_settings({k: v for k, v in flags.items() if v is not None})
    issued = load_issued_credentials()
    tokens = [
        (token, hint)
        for token, hint in (
            (issued.access_token, "access_token"),
            (issued.refresh_token, "refresh_token"),
        )
        if token is not None
    ]
    if not tokens:
        _note("nothing to revoke (SHARK_ACCESS_TOKEN and SHARK_REFRESH_TOKEN are unset)")
        return int(ExitCode.OK)
    auth_url, client_id = settings.required("auth_url"), settings.required("client_id")
    key = _issued_key(issued.dpop_key_file, issued.dpop_jwk)
    deadline = time.monotonic() + 60
    with OAuthHttp(ca_bundle=settings.ca_bundle) as http:
        provider = lookup(settings.provider, auth_url)
        endpoint = server_endpoints(http, auth_url, deadline=deadline, provider=provider).revocation
        if endpoint is None:
            raise ConfigError(
                "the authorization server names no revocation endpoint",
                hint="the server does not support RFC 7009 revocation; tokens expire on their own",
            )
        results = revoke_each(
            http,
            endpoint,
            tokens,
            client_id=client_id,
            client_secret=settings.client_secret,
            dpop=key,
            deadline=deadline,
        )
    for hint, failure in results.items():
        if failure is None:
            _note(f"revoked the {hint.replace('_', ' ')}")
    failures = [failure for failure in results.values() if failure is not None]
    if failures:
        raise failures[0]
    _remove_key_file(issued.dpop_key_file)
    return int(ExitCode.OK)


def _issued_key(key_file: str | None, jwk: Secret | None) -> DPoPKey | None:
    """The DPoP key of the login, for a proof on the revocation request. Revocation does not
    need one, so an unreadable key is a warning, not a reason to leave the tokens alive."""
    from ci_shark.oauth.dpop import DPoPKey

    try:
        if key_file:
            return DPoPKey.load(_read_key_file(Path(key_file)))
        if jwk is not None:
            return DPoPKey.from_jwk(jwk.reveal())
    except ConfigError as unreadable:
        _note(f"warning: revoking without a DPoP proof: {unreadable.message}")
    return None


def _remove_key_file(key_file: str | None) -> None:
    """The private key has no use once its tokens are revoked: remove our key file."""
    if key_file and Path(key_file).name.startswith("ci-shark-dpop-"):
        with suppress(OSError):
            Path(key_file).unlink()
            _note(f"removed the DPoP key file {key_file}")


def _note(message: str) -> None:
    print(f"ci_shark: {message}", file=sys.stderr, flush=True)


# -- demo ----------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    import tempfile

    from ci_shark.config import ExplicitSettings
    from ci_shark.flow import run
    from ci_shark.platforms.base import Platform
    from ci_shark.sandbox import SandboxServer

    cancel.install()
    workdir = Path(tempfile.mkdtemp(prefix="ci-shark-demo-"))
    with SandboxServer(interval_s=2, approve_after_s=args.approve_after) as server:
        # The demo must not pick up the caller's CI_SHARK_* variables.
        settings = ExplicitSettings(
            auth_url=server.url,
            client_id="ci-shark-demo",
            scope="openid deploy:write",
            output_format="dotenv",
            output_file=str(workdir / "ci-shark.env"),
            notify=("log",),
            timeout=120,
        )
        print(
            f"ci_shark demo: sandbox authorization server at {server.url}; it approves by "
            f"itself in {args.approve_after:g}s, or open the link below.",
            file=sys.stderr,
        )
        platform = Platform(settings, {})
        platform.key_directory = workdir
        credentials = run(settings, platform)
    print(f"\nWhat a CI job would now have (in {workdir}):")
    for name, value in credentials.named().items():
        shown = "*** (secret, masked)" if value and not isinstance(value, str) else value
        print(f"  {name}={shown}")
    print(
        "\nLater steps call APIs with `Authorization: DPoP $SHARK_ACCESS_TOKEN` and a proof "
        "from `python -m ci_shark proof --method GET --url URL --with-access-token`."
    )
    return int(ExitCode.OK)
