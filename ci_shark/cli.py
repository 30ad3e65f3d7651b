"""The command line: the only place where errors become exit codes and messages.

``ci-shark`` (or ``python -m ci_shark``) runs ``login``; ``request``, ``refresh``,
``revoke`` and ``proof`` use what it issued; ``demo`` shows the whole flow. Every login
flag comes from the one description of the inputs in ``config.py``. Heavy modules are
imported inside the command that needs them, so ``--version`` and the path to the
approval link stay fast.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ci_shark import __version__, cancel
from ci_shark.errors import CiSharkError, ConfigError, ExitCode

if TYPE_CHECKING:
    from ci_shark.config import Settings
    from ci_shark.platforms.base import Platform

EXIT_CODES = (
    "exit codes: 0 approved, 1 unexpected failure, 2 bad configuration or usage, 3 denied, "
    "4 not approved in time, 5 the server does not offer the device flow or answered "
    "outside the protocol, 6 refused by policy, 22 (request) the API answered an HTTP "
    "error, 130/143 cancelled"
)
LOGIN_EXAMPLES = """examples:
  ci-shark --auth-url https://auth.example.com --client-id ci-deploy --scope deploy:write
  eval "$(ci-shark --output-format shell)"      # SHARK_* in this shell (CI_SHARK_* set)
  python -m ci_shark demo                        # the whole flow against a local sandbox

Every option is also a CI_SHARK_* variable (GitHub Action inputs arrive that way); a flag
wins over its variable. Secrets (github-token, gitlab-token, webhook-url) have no flag:
argv is visible to other processes."""
USE_EXAMPLES = """examples:
  ci-shark request https://api.example.com/deploy
  ci-shark request -X POST --json '{"ref":"v1.2"}' https://api.example.com/deploy
  ci-shark request -d @payload.txt -H 'Content-Type: text/plain' -o reply.json URL
  curl -H "DPoP: $(ci-shark proof --method GET --url URL --with-access-token)" ...

The credentials come from --credentials FILE; else the SHARK_* variables holding a token
(unless the login's default file holds the same grant, refreshed); else the newest file a
login left by default: the job's private folder ($RUNNER_TEMP/ci-shark.json on GitHub),
or, outside CI, ~/.local/state/ci-shark ($XDG_STATE_HOME). One line says which."""
# Flags whose values are opaque server or secret strings. base64url text starts with "-" one
# time in 64, and argparse takes "--nonce -x1" for a missing value plus an unknown option.
_OPAQUE_VALUE_FLAGS = frozenset({"--nonce", "--access-token", "--client-id", "--client-secret"})


class Parser(argparse.ArgumentParser):
    """argparse that says "did you mean" for a mistyped option or command."""

    def error(self, message: str) -> NoReturn:
        suggestion = _suggestion(self, message)
        super().error(message + (f" (did you mean {suggestion}?)" if suggestion else ""))


def _suggestion(parser: argparse.ArgumentParser, message: str) -> str | None:
    import difflib  # only a usage error pays for it

    if message.startswith("unrecognized arguments:"):
        for word in message.split(":", 1)[1].split():
            if word.startswith("--"):
                known = sorted(o for o in _option_strings(parser) if o.startswith("--"))
                close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.6)
                if close:
                    return close[0]
    if "invalid choice:" in message:
        quoted = message.split("invalid choice:", 1)[1].split("'")[1:2]
        close = difflib.get_close_matches(quoted[0] if quoted else "", COMMANDS, n=1, cutoff=0.5)
        if close:
            return close[0]
    return None


COMMANDS = ("login", "request", "refresh", "revoke", "proof", "demo")


def _add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"ci_shark {__version__}")


def _command(
    commands: Any, name: str, summary: str, description: str, epilog: str = EXIT_CODES
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_version(parser)
    return parser


def _add_login_flags(login: argparse.ArgumentParser) -> None:
    """One flag per input that has one, described by config.py's Input metadata."""
    from ci_shark.config import ENV_PREFIX, Settings, dashed, flag, spec

    required = login.add_argument_group("required (flag or variable)")
    optional = login.add_argument_group("login options")
    for field, info in Settings.model_fields.items():
        meta, cli = spec(field), flag(field)
        if cli is None:
            continue
        group = required if meta.required else optional
        shown = _default(info.default)
        env = f"{ENV_PREFIX}{field.upper()}"
        text = f"{meta.help} [{env}" + (f"; default: {shown}" if shown else "") + "]"
        if info.annotation is bool:
            group.add_argument(
                f"--{dashed(field)}",
                dest=field,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=text,
            )
        elif field == "dpop_private_key":
            group.add_argument(
                cli, dest="dpop_private_key_file", type=Path, metavar=meta.metavar, help=text
            )
        elif field == "extra_params":
            group.add_argument(cli, dest=field, action="append", metavar=meta.metavar, help=text)
        else:
            group.add_argument(cli, dest=field, metavar=meta.metavar, help=text)


def _default(value: object) -> str:
    if value in (None, (), {}, ""):
        return ""
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        from ci_shark.units import duration

        return duration(value)
    return str(value)


def build_parser(*, login_flags: bool = True) -> argparse.ArgumentParser:
    """The whole parser; without the login flags when argv is not a login: describing them
    (config.py) costs pydantic's import, and `--version`, `proof`, `request` stay fast."""
    parser = Parser(
        prog="ci-shark",
        description="Human-approved, DPoP-bound OAuth credentials for CI jobs: the device "
        "flow (RFC 8628) from inside the job, then the token in one line.",
        epilog=EXIT_CODES,
    )
    _add_version(parser)
    commands = parser.add_subparsers(
        dest="command", metavar="{" + ",".join(COMMANDS) + "}", parser_class=Parser
    )

    login = _command(
        commands,
        "login",
        "ask a maintainer to approve, then export the credentials (the default)",
        "Ask for a device code, show the maintainer where to approve (log, PR comment, MR "
        "note, job summary, webhook), wait, and export the approved, DPoP-bound tokens.",
        LOGIN_EXAMPLES + "\n\n" + EXIT_CODES,
    )
    if login_flags:
        _add_login_flags(login)

    _add_request(commands)
    _add_refresh(commands)
    _add_revoke(commands)
    _add_proof(commands)
    _add_demo(commands)
    return parser


def _add_request(commands: Any) -> None:
    """`request URL`: curl for the login's token."""
    request = _command(
        commands,
        "request",
        "call an API with the token (DPoP proof, nonce, refresh): curl for the login's token",
        "Send one HTTP request with the login's token: a fresh DPoP proof (or Bearer), one "
        "retry when the API demands a nonce, a refresh when the token has expired. The body "
        "goes to stdout or -o; an HTTP error exits 22 with the status on stderr.",
        USE_EXAMPLES + "\n\n" + EXIT_CODES,
    )
    request.add_argument("url", metavar="URL")
    request.add_argument(
        "-X", "--request", dest="method", metavar="METHOD", help="default: GET, or POST with a body"
    )
    request.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra header (repeatable)",
    )
    body = request.add_mutually_exclusive_group()
    body.add_argument(
        "-d",
        "--data",
        metavar="DATA",
        help="the body: text, @FILE, or @- for stdin (form-encoded unless -H Content-Type)",
    )
    body.add_argument(
        "--json",
        metavar="JSON",
        help="a JSON body (text, @FILE or @-): sets Content-Type and Accept",
    )
    request.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="write the body here (0600), not to stdout",
    )
    request.add_argument(
        "--max-time",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="give up after this long (default 300)",
    )
    _add_use_flags(request)


def _add_refresh(commands: Any) -> None:
    """`refresh`: new tokens where the old ones were."""
    refresh = _command(
        commands,
        "refresh",
        "refresh the tokens (DPoP-bound) and re-export them where they were",
        "The refresh-token grant (RFC 6749 §6) with a proof from the login's key (RFC 9449 "
        "§5); the new tokens replace the old ones wherever they were read from.",
        USE_EXAMPLES + "\n\n" + EXIT_CODES,
    )
    _add_use_flags(refresh)
    refresh.add_argument("--output-format", choices=("shell",), help="also print exports for eval")


def _add_revoke(commands: Any) -> None:
    """`revoke`: the always-run last step."""
    revoke = _command(
        commands,
        "revoke",
        "revoke the access and refresh tokens (RFC 7009), e.g. in an always-run last step",
        "Revoke the login's refresh token (the grant) and access token, then remove "
        "ci_shark's own key file and default credentials file.",
        USE_EXAMPLES + "\n\n" + EXIT_CODES,
    )
    revoke.add_argument(
        "--max-time",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="give up after this long, retries included (default 15)",
    )
    _add_use_flags(revoke)


def _add_proof(commands: Any) -> None:
    """`proof`: a DPoP proof for another client."""
    proof = _command(
        commands,
        "proof",
        "print a DPoP proof for a request made with another client",
        "Print a DPoP proof JWT (RFC 9449) for one request, signed with the login's key; "
        "for curl and the like. `ci-shark request` does this (and the nonce) for you.",
        USE_EXAMPLES + "\n\n" + EXIT_CODES,
    )
    proof.add_argument("--method", required=True, help="the HTTP method, e.g. GET")
    proof.add_argument(
        "--url", required=True, help="the request URL (query and fragment are dropped)"
    )
    token = proof.add_mutually_exclusive_group()
    token.add_argument(
        "--access-token", help="bind the proof to this token (ath); prefer --with-access-token"
    )
    token.add_argument(
        "--with-access-token",
        action="store_true",
        help="bind the proof to the login's access token (keeps the token off argv)",
    )
    proof.add_argument("--nonce", help="the server's DPoP-Nonce")
    proof.add_argument("--key-file", type=Path, help="the key (default: the login's)")
    proof.add_argument(
        "--credentials", type=Path, metavar="FILE", help="the login's dotenv/json file"
    )


def _add_demo(commands: Any) -> None:
    """`demo`: the whole flow against the built-in sandbox."""
    demo = _command(
        commands,
        "demo",
        "the whole flow against a built-in sandbox server, on this machine",
        "Start a loopback authorization server, log in against it (it approves by itself, "
        "or open the link), and show what a CI job would then have. Nothing is kept unless "
        "--keep.",
    )
    demo.add_argument(
        "--approve-after",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="when the sandbox approves (default 5)",
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the demo's files (key, env file) and say where"
    )


def _add_use_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--credentials",
        type=Path,
        metavar="FILE",
        help="the login's dotenv/json file (default: see below)",
    )
    parser.add_argument(
        "--auth-url", metavar="URL", help="default: the login's (or CI_SHARK_AUTH_URL)"
    )
    parser.add_argument(
        "--client-id", metavar="ID", help="default: the login's (or CI_SHARK_CLIENT_ID)"
    )
    parser.add_argument(
        "--ca-bundle", metavar="FILE", help="PEM file of CAs to trust instead of the system's"
    )


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
    """argv with `login` in front when it names no command (flags only, or nothing). A
    mistyped command stays: argparse names it, and the closest one."""
    args = _glue_opaque_values(argv, _option_strings(parser or build_parser()))
    return ["login", *args] if _command_of(args) == "login" and args[:1] != ["login"] else args


def _command_of(argv: Sequence[str]) -> str | None:
    """The command argv names (login when it names none); None when it asks for help or
    the version of the whole program, or is not a command at all."""
    if not argv or argv[0].startswith("-"):
        return None if argv and argv[0] in ("-h", "--help", "--version") else "login"
    return argv[0] if argv[0] in COMMANDS else None


def _wants_shell(argv: Sequence[str]) -> bool:
    """Whether this is a login or a refresh asked for `--output-format shell` (an `eval`
    reads its stdout), read from the raw command line as argparse would (the last flag
    wins, abbreviations count; for login, else the variable). Decided before parsing,
    because parsing (or loading the settings) may be what fails."""
    if argv and argv[0] in COMMANDS and argv[0] not in ("login", "refresh"):
        return False
    refreshing = bool(argv) and argv[0] == "refresh"
    chosen = None if refreshing else os.environ.get("CI_SHARK_OUTPUT_FORMAT")
    for at, arg in enumerate(argv):
        name, equals, value = arg.partition("=")
        if len(name) > len("--output-") and "--output-format".startswith(name):
            chosen = value if equals else (argv[at + 1] if at + 1 < len(argv) else None)
    return chosen == "shell"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `eval "$(ci-shark --output-format shell)"` ignores our exit code: on failure, hand
    # the eval an `exit N` so the job stops instead of going on without credentials.
    shell = _wants_shell(argv)
    parser = build_parser(login_flags=_command_of(argv) == "login")
    try:
        args = parser.parse_args(_with_default_command(argv, parser))
    except SystemExit as usage_error:
        if usage_error.code not in (0, None) and shell:
            print(f"exit {usage_error.code}", flush=True)
        raise
    if args.command is None:
        parser.print_help()
        return int(ExitCode.CONFIG)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "login": _login,
        "request": _request,
        "refresh": _refresh,
        "revoke": _revoke,
        "proof": _proof,
        "demo": _demo,
    }
    try:
        return handlers[args.command](args)
    except CiSharkError as failure:
        _print_error(failure.diagnostics())
        code = int(failure.exit_code)
    except Exception as bug:  # the last line of defence
        # Only the type and where it happened: an exception's text may quote an input,
        # a server answer or a token, and a traceback shows the lines around it.
        _print_error(
            f"unexpected failure: {type(bug).__name__} at {_where(bug)}\n"
            "  this is a bug in ci_shark; please report it with this line"
        )
        code = int(ExitCode.FAILURE)
    if shell:
        print(f"exit {code}", flush=True)
    return code


def _where(error: BaseException) -> str:
    """file:line where it was raised: enough for a bug report, and nothing it could leak."""
    frames = traceback.extract_tb(error.__traceback__)
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"


def _print_error(message: str) -> None:
    from ci_shark.config import spell_inputs
    from ci_shark.platforms.log import neutralise

    for line in spell_inputs(message).splitlines():
        print(neutralise(f"ci_shark: error: {line}"), file=sys.stderr, flush=True)


def _platform(settings: Settings, *, stdout_is_free: bool = True) -> Platform:
    from ci_shark.platforms import detect

    return detect(os.environ)(settings, os.environ, stdout_is_free=stdout_is_free)


# -- login ---------------------------------------------------------------------------------


def _login_flags(args: argparse.Namespace) -> dict[str, Any]:
    from ci_shark.config import Settings

    flags = {field: getattr(args, field, None) for field in Settings.model_fields}
    if args.extra_params:
        flags["extra_params"] = "\n".join(args.extra_params)
    if args.dpop_private_key_file is not None:
        from ci_shark.issued import read_key_file

        flags["dpop_private_key"] = read_key_file(args.dpop_private_key_file)
    return {name: value for name, value in flags.items() if value is not None}


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
        from ci_shark.config import ExplicitSettings, load_settings
        from ci_shark.flow import run
        from ci_shark.render import Outcome
    finally:
        gc.freeze()
        if collecting:
            gc.enable()

    try:
        settings = load_settings(_login_flags(args))
    except ConfigError as bad_input:
        # No settings, but the platform still writes the `status` output and the summary.
        _platform(ExplicitSettings()).finish(Outcome(bad_input.status, bad_input.message), None)
        raise
    run(settings, _platform(settings))
    return int(ExitCode.OK)


# -- using the credentials -----------------------------------------------------------------


def _use_settings(args: argparse.Namespace) -> Settings:
    from ci_shark.config import load_settings

    flags = {f: getattr(args, f, None) for f in ("auth_url", "client_id", "ca_bundle")}
    return load_settings({name: value for name, value in flags.items() if value is not None})


def _request(args: argparse.Namespace) -> int:
    cancel.install()
    from ci_shark import request
    from ci_shark.issued import load_issued

    settings = _use_settings(args)
    platform = _platform(settings, stdout_is_free=False)
    issued = load_issued(args.credentials, platform)
    headers = request.parse_headers(args.header)
    body = request.read_body(args.data, args.json, sys.stdin.buffer)
    names = {name.lower() for name, _ in headers}
    if args.json is not None:
        headers += [("Content-Type", "application/json")] * ("content-type" not in names)
        headers += [("Accept", "application/json")] * ("accept" not in names)
    elif body is not None and "content-type" not in names:
        headers.append(("Content-Type", "application/x-www-form-urlencoded"))
    method = (args.method or ("POST" if body is not None else "GET")).upper()
    output = request.open_output(args.output)
    try:
        call = request.Call(method, args.url, headers, body, output, args.max_time)
        request.request(call, issued, settings, platform)
    finally:
        if args.output is not None:
            output.close()
    return int(ExitCode.OK)


def _refresh(args: argparse.Namespace) -> int:
    cancel.install()
    from ci_shark import commands

    settings = _use_settings(args)
    shell = args.output_format == "shell"
    platform = _platform(settings, stdout_is_free=False)
    issued = commands.load_issued(args.credentials, platform)
    commands.refresh(issued, settings, platform, print_exports=shell)
    return int(ExitCode.OK)


def _revoke(args: argparse.Namespace) -> int:
    from ci_shark import commands

    settings = _use_settings(args)
    platform = _platform(settings, stdout_is_free=False)
    try:
        issued = commands.load_issued(args.credentials, platform)
    except ConfigError:
        if args.credentials is not None:
            raise
        platform.log("ci_shark: nothing to revoke (no login's credentials in this job)")
        return int(ExitCode.OK)
    commands.revoke(
        issued,
        settings,
        platform,
        credentials_flag=args.credentials is not None,
        max_time_s=args.max_time,
    )
    return int(ExitCode.OK)


def _proof(args: argparse.Namespace) -> int:
    from ci_shark import commands
    from ci_shark.config import load_settings

    settings = load_settings()
    proof = commands.proof(
        commands.ProofFor(args.method, args.url, args.nonce, args.access_token),
        settings,
        _platform(settings, stdout_is_free=False),
        key_file=args.key_file,
        credentials=args.credentials,
        with_access_token=args.with_access_token,
    )
    print(proof)  # a signed, single-use proof: only the token's hash (ath) is in it
    return int(ExitCode.OK)


# -- demo ----------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from ci_shark.config import ExplicitSettings
    from ci_shark.flow import run
    from ci_shark.platforms.base import Platform
    from ci_shark.sandbox import SandboxServer

    cancel.install()
    workdir = Path(tempfile.mkdtemp(prefix="ci-shark-demo-"))
    try:
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
                f"ci_shark demo: sandbox authorization server at {server.url}; it approves "
                f"by itself in {args.approve_after:g}s, or open the link below.",
                file=sys.stderr,
            )
            credentials = run(settings, Platform(settings, {}))
        print(f"\nWhat a CI job would now have (in {workdir}):")
        for name, value in credentials.named().items():
            shown = "*** (secret, masked)" if value and not isinstance(value, str) else value
            print(f"  {name}={shown}")
        print(
            "\nLater steps call APIs with `ci-shark request URL` (the proof, the nonce and a "
            "refresh are done for you). Try every command by hand against a sandbox that "
            "stays up: `python -m ci_shark.sandbox` (see the README)."
        )
    finally:
        if args.keep:
            print(f"\nKept {workdir} (a private key and tokens: remove it when done).")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            print(f"\nRemoved {workdir} (the key and the tokens): pass --keep to keep it.")
    return int(ExitCode.OK)
