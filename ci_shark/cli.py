"""The command line: argv becomes a command, and a command's error an exit code and a message.

``ci-shark`` (or ``python -m ci_shark``) runs ``login``; ``request``, ``proxy``,
``refresh``, ``revoke`` and ``proof`` use what it issued (with settings that do not load
pydantic: ``later_settings.py``); ``demo`` shows the whole flow. A command is
a handler here, the function that adds its options (``cli_options.py``, with its help and
examples), and one entry in :data:`COMMANDS`; the handler hands the work to the module that
does it. What argparse alone gets wrong (a default command, values that start with "-",
``exit N`` for ``eval``) is ``cli_args.py``.

Rules:

- Only here do errors become exit codes: a :class:`CiSharkError` prints its message and
  its fix; anything else prints its type and place only (its text may quote a secret).
- Each command's ``--help`` lists the exit codes that command can end with.
- Start-up stays fast: a handler imports what it needs when it runs, and only the command
  that runs gets its options (the login's come from config.py, which loads pydantic), so
  ``--version``, ``--help`` and the path to the approval link pay for nothing else.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ci_shark import cancel, cli_args, cli_options
from ci_shark.cli_args import Command
from ci_shark.errors import CiSharkError, ConfigError, ExitCode

if TYPE_CHECKING:
    from ci_shark.later_settings import LaterSettings, PlatformSettings
    from ci_shark.platforms.base import Platform

# Exit codes by what a command does: any may fail or be misused; one that talks to a server
# may also meet a server outside the protocol, or a cancellation; a wait for a person, 3 and 4.
_LOCAL = (ExitCode.OK, ExitCode.FAILURE, ExitCode.CONFIG)
_ONLINE = (*_LOCAL, ExitCode.PROTOCOL, ExitCode.SIGINT)
_APPROVAL = (*_LOCAL, ExitCode.DENIED, ExitCode.EXPIRED)
# -- argv -> a command ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `eval "$(ci-shark --output-format shell)"` ignores our exit code: on failure, hand
    # the eval an `exit N` so the job stops instead of going on without credentials.
    shell = cli_args.wants_shell(argv, COMMANDS)
    try:
        args = cli_args.parse_args(argv, COMMANDS)
    except SystemExit as usage_error:
        if usage_error.code not in (0, None) and shell:
            print(f"exit {usage_error.code}", flush=True)
        raise
    code = _run(COMMANDS[args.command], args)
    if code != ExitCode.OK and shell:
        print(f"exit {code}", flush=True)
    return code


# -- a command's failure -> an exit code and a message -------------------------------------


def _run(command: Command, args: argparse.Namespace) -> int:
    try:
        status = command.run(args)
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
    return int(ExitCode.OK if status is None else status)


def _where(error: BaseException) -> str:
    """file:line where it was raised: enough for a bug report, and nothing it could leak."""
    import traceback  # only a bug pays for it

    frames = traceback.extract_tb(error.__traceback__)
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"


def _print_error(message: str) -> None:
    from ci_shark.platforms.log import neutralise

    if "`" in message:  # names an input: spelled out by config.py (which loads pydantic)
        from ci_shark.config import spell_inputs

        message = spell_inputs(message)
    for line in message.splitlines():
        print(neutralise(f"ci_shark: error: {line}"), file=sys.stderr, flush=True)


# -- login ---------------------------------------------------------------------------------


def _login(args: argparse.Namespace) -> None:
    cancel.install()
    from ci_shark.oauth.tls import preload_default_context

    preload_default_context()  # on a thread: the CA bundle loads while the imports run
    with _lasting_imports():
        from ci_shark.config import ExplicitSettings, load_settings
        from ci_shark.flow import run
        from ci_shark.render import Outcome

    try:
        settings = load_settings(cli_args.settings_given(args))
    except ConfigError as bad_input:
        # No settings, but the platform still writes the `status` output and the summary.
        _platform(ExplicitSettings()).finish(Outcome(bad_input.status, bad_input.message), None)
        raise
    run(settings, _platform(settings))


@contextmanager
def _lasting_imports() -> Iterator[None]:
    """A command's imports create ~10^5 objects that live as long as the process:
    collecting while they load only walks them again and again, and so would the first
    collection after them unless they are set apart (freeze). docs/perf.md has the figures."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def _platform(settings: PlatformSettings, *, stdout_is_free: bool = True) -> Platform:
    from ci_shark.platforms import detect

    return detect(os.environ)(settings, os.environ, stdout_is_free=stdout_is_free)


# -- using the login's credentials ---------------------------------------------------------


def _using(args: argparse.Namespace) -> tuple[LaterSettings, Platform]:
    """The settings of a later command (its flags over CI_SHARK_*; not the login's
    configuration library) and the platform; its stdout belongs to the command (a body, a
    proof, exports)."""
    from ci_shark.later_settings import load_later_settings

    flags = {field: getattr(args, field, None) for field in ("auth_url", "client_id", "ca_bundle")}
    settings = load_later_settings(os.environ, flags)
    return settings, _platform(settings, stdout_is_free=False)


def _preload_trust(args: argparse.Namespace) -> None:
    """The system's CA store loads on a thread while the command imports (as the login's
    does), unless `ca-bundle` replaces it."""
    if not (getattr(args, "ca_bundle", None) or os.environ.get("CI_SHARK_CA_BUNDLE", "").strip()):
        from ci_shark.oauth.tls import preload_default_context

        preload_default_context()


def _request(args: argparse.Namespace) -> None:
    cancel.install()
    _preload_trust(args)
    with _lasting_imports():
        from ci_shark import request
        from ci_shark.issued import load_issued

    settings, platform = _using(args)
    issued = load_issued(args.credentials, platform)
    call = request.build_call(
        args.url,
        method=args.method,
        headers=args.header,
        data=args.data,
        json_data=args.json,
        output=args.output,
        max_time_s=args.max_time,
        stdin=sys.stdin.buffer,
    )
    try:
        request.request(call, issued, settings, platform)
    finally:
        if args.output is not None:
            call.output.close()


def _refresh(args: argparse.Namespace) -> None:
    cancel.install()
    from ci_shark import commands

    settings, platform = _using(args)
    issued = commands.load_issued(args.credentials, platform)
    commands.refresh(issued, settings, platform, print_exports=args.output_format == "shell")


def _revoke(args: argparse.Namespace) -> None:
    from ci_shark import revocation
    from ci_shark.issued import load_issued

    settings, platform = _using(args)
    try:
        issued = load_issued(args.credentials, platform)
    except ConfigError:
        if args.credentials is not None:
            raise
        platform.log("ci_shark: nothing to revoke (no login's credentials in this job)")
        return
    revocation.revoke(
        issued,
        settings,
        platform,
        credentials_flag=args.credentials is not None,
        max_time_s=args.max_time,
    )


def _proof(args: argparse.Namespace) -> None:
    from ci_shark import commands

    settings, platform = _using(args)
    proof = commands.proof(
        commands.ProofFor(args.method, args.url, args.nonce, args.access_token),
        settings,
        platform,
        key_file=args.key_file,
        credentials=args.credentials,
        with_access_token=args.with_access_token,
    )
    print(proof)  # a signed, single-use proof: only the token's hash (ath) is in it


def _proxy(args: argparse.Namespace) -> int:
    cancel.install()
    from ci_shark.issued import load_issued
    from ci_shark.proxy import forms
    from ci_shark.proxy.upstreams import parse_upstreams

    settings, platform = _using(args)
    upstreams = parse_upstreams(args.upstream)  # a bad one is said before anything else
    issued = load_issued(args.credentials, platform)
    options = forms.ProxyOptions(
        upstreams=upstreams,
        listen=args.listen,
        export=args.export,
        command=tuple(args.wrapped),
        max_time_s=args.max_time,
    )
    return forms.run(options, issued, settings, platform)


# -- demo ----------------------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> None:
    cancel.install()
    from ci_shark import demo

    kind = demo.WorkloadIdentityDemo if args.workload_identity else demo.Demo
    demo.run(kind(approve_after_s=args.approve_after, keep=args.keep))


COMMANDS: dict[str, Command] = {
    "login": Command(
        summary="ask a maintainer to approve, then export the credentials (the default)",
        description="Ask for a device code, show the maintainer where to approve (log, PR "
        "comment, MR note, job summary, webhook), wait, and export the approved, DPoP-bound "
        "tokens.",
        run=_login,
        options=cli_args.add_settings_flags,
        exits=(*_APPROVAL, ExitCode.PROTOCOL, ExitCode.REFUSED, ExitCode.SIGINT),
        examples=cli_options.LOGIN_EXAMPLES,
    ),
    "request": Command(
        summary="call an API with the token (DPoP proof, nonce, refresh): curl for the "
        "login's token",
        description="Send one HTTP request with the login's token: a fresh DPoP proof (or "
        "Bearer), one retry when the API demands a nonce, a refresh before the token "
        "expires. The body goes to stdout or -o; an HTTP error exits 22 with the status on "
        "stderr.",
        run=_request,
        options=cli_options.request_options,
        exits=(*_ONLINE, ExitCode.HTTP_ERROR),
        examples=cli_options.USE_EXAMPLES,
    ),
    "refresh": Command(
        summary="refresh the tokens (DPoP-bound) and re-export them where they were",
        description="The refresh-token grant (RFC 6749 §6) with a proof from the login's key "
        "(RFC 9449 §5); the new tokens replace the old ones wherever they were read from.",
        run=_refresh,
        options=cli_options.refresh_options,
        exits=_ONLINE,
        examples=cli_options.USE_EXAMPLES,
    ),
    "revoke": Command(
        summary="revoke the access and refresh tokens (RFC 7009), e.g. in an always-run last step",
        description="Revoke the login's refresh token (the grant) and access token, then "
        "remove ci_shark's own key file and default credentials file. A server that names "
        "no revocation endpoint (GitHub, Entra ID) gets a warning saying until when the "
        "tokens stay valid, and exit 0.",
        run=_revoke,
        options=cli_options.revoke_options,
        exits=_ONLINE,
        examples=cli_options.USE_EXAMPLES,
    ),
    "proof": Command(
        summary="print a DPoP proof for a request made with another client",
        description="Print a DPoP proof JWT (RFC 9449) for one request, signed with the "
        "login's key; for curl and the like. `ci-shark request` does this (and the nonce) "
        "for you.",
        run=_proof,
        options=cli_options.proof_options,
        exits=_LOCAL,
        examples=cli_options.USE_EXAMPLES,
    ),
    "proxy": Command(
        summary="a loopback proxy that adds the token (DPoP proof, nonce, refresh) for any "
        "HTTP client",
        description="Forward requests from any HTTP client (curl, Terraform, Node) to the "
        "upstream with the login's token and a fresh DPoP proof: the nonce answered, the "
        "token refreshed before it expires, bodies streamed. It listens on loopback only, "
        "under a random capability path (SHARK_PROXY_URL). With -- COMMAND it runs the "
        "command and exits with its status; with --export (GitHub) later steps use it.",
        run=_proxy,
        options=cli_options.proxy_options,
        exits=_ONLINE,
        examples=cli_options.PROXY_EXAMPLES,
    ),
    "demo": Command(
        summary="the whole flow against a built-in sandbox server, on this machine",
        description="Start a loopback authorization server, log in against it (it approves "
        "by itself, or open the link), and show what a CI job would then have. Nothing is "
        "kept unless --keep.",
        run=_demo,
        options=cli_options.demo_options,
        exits=(*_APPROVAL, ExitCode.SIGINT),
    ),
}
