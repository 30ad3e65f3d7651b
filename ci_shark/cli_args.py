"""argv as argparse reads it: the parser made from the table of commands, plus the three
things argparse alone gets wrong for us.

- A bare ``ci-shark --flags`` (or nothing at all) is a login: ``login`` goes in front when
  argv names no command (:func:`with_default_command`). ``--help``, ``--version`` and a
  mistyped command stay as they are: argparse answers them, and :class:`Parser` names the
  closest command or option ("did you mean").
- Opaque values may start with "-": a base64url nonce or a client id does one time in 64,
  and argparse takes ``--nonce -x1`` for a missing value and an unknown option.
  :func:`glue_opaque_values` writes it ``--nonce=-x1``, unless the word is an option of
  the command (``--client-id --no-dpop`` with an empty variable stays an error).
- ``eval "$(ci-shark --output-format shell)"`` must get ``exit N`` even when parsing is
  what fails, so :func:`wants_shell` reads the raw argv (and the variable) the way
  argparse would: the last flag wins, abbreviations count.

Only the command that runs gets its options (:func:`parse_args`): the login's come from
config.py's ``Input`` metadata (:func:`add_settings_flags`), and config.py loads pydantic,
which ``--version``, ``proof`` or ``request --help`` must not pay for.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ci_shark import __version__
from ci_shark.errors import ExitCode
from ci_shark.units import duration

# Flags whose values are opaque server or secret strings (see the module's docstring).
OPAQUE_VALUE_FLAGS = frozenset({"--nonce", "--access-token", "--client-id", "--client-secret"})
_MEANINGS = {
    ExitCode.OK: "0        success",
    ExitCode.FAILURE: "1        unexpected failure, or a server unreachable until the deadline",
    ExitCode.CONFIG: "2        bad configuration or usage",
    ExitCode.DENIED: "3        the approver denied",
    ExitCode.EXPIRED: "4        not approved in time",
    ExitCode.PROTOCOL: "5        the server does not offer or follow the protocol",
    ExitCode.REFUSED: "6        refused by policy (a fork; an approver not allowed)",
    ExitCode.HTTP_ERROR: "22       the API answered an HTTP error",
    ExitCode.SIGINT: "130/143  cancelled (SIGINT/SIGTERM)",  # stands for SIGTERM's too
}
# What a bare --help or --version means: the whole program's, not the login's.
_PROGRAM_FLAGS = ("-h", "--help", "--version")
_QUOTED = re.compile(r"'([^']*)'")


@dataclass(frozen=True)
class Command:
    """One command: its help, its options, its handler (which returns, returns the exit
    status of a command it ran, or raises the CiSharkError that says why not), and every
    exit code it can end with."""

    summary: str
    description: str
    run: Callable[[argparse.Namespace], int | None]
    options: Callable[[argparse.ArgumentParser], None] | None
    exits: tuple[ExitCode, ...]
    examples: str = ""

    def epilog(self) -> str:
        codes = "".join(f"\n  {_MEANINGS[code]}" for code in sorted(self.exits))
        return f"{self.examples}\n\nexit codes:{codes}".lstrip()


def parse_args(argv: Sequence[str], commands: Mapping[str, Command]) -> argparse.Namespace:
    """argv as a command (login when it names none) and that command's options."""
    argv = with_default_command(argv, commands)
    parser = Parser(
        prog="ci-shark",
        description="Human-approved, DPoP-bound OAuth credentials for CI jobs: the device "
        "flow (RFC 8628) from inside the job, then the token in one line.",
        epilog="Without a command, ci-shark runs login. Each command's --help lists its "
        "options, examples and exit codes.",
    )
    _add_version(parser)
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="{" + ",".join(commands) + "}"
    )
    options: list[str] = []
    for name, command in commands.items():
        chosen = subparsers.add_parser(
            name,
            help=command.summary,
            description=command.description,
            epilog=command.epilog(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_version(chosen)
        if argv[:1] == [name] and command.options is not None:
            command.options(chosen)  # only the command that runs pays for its options
            # argparse's table of the command's option strings (its groups' included)
            options = list(chosen._option_string_actions)
    parser.known_words = [*commands, *options]
    return parser.parse_args(glue_opaque_values(argv, options))


def _add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"ci_shark {__version__}")


class Parser(argparse.ArgumentParser):
    """argparse that says "did you mean" for a mistyped option or command, among
    ``known_words`` (set on the program's parser, which reports both mistakes)."""

    known_words: Sequence[str] = ()

    def error(self, message: str) -> NoReturn:
        import difflib  # only a usage error pays for it

        typo = _typo(message)
        close = difflib.get_close_matches(typo, self.known_words, n=1, cutoff=0.6) if typo else []
        super().error(message + (f" (did you mean {close[0]}?)" if close else ""))


def _typo(message: str) -> str | None:
    """The word a usage error is about: an unknown long option, or an unknown command."""
    if message.startswith("unrecognized arguments:"):
        unknown = [word for word in message.split(":", 1)[1].split() if word.startswith("--")]
        return unknown[0].split("=", 1)[0] if unknown else None
    if "invalid choice:" in message:
        quoted = _QUOTED.search(message.split("invalid choice:", 1)[1])
        return quoted[1] if quoted else None
    return None


def with_default_command(argv: Sequence[str], commands: Collection[str]) -> list[str]:
    """``argv`` with ``login`` in front when it names no command (flags only, or nothing)."""
    if argv and (argv[0] in commands or argv[0] in _PROGRAM_FLAGS or argv[0][:1] != "-"):
        return list(argv)
    return ["login", *argv]


def glue_opaque_values(argv: Sequence[str], options: Collection[str]) -> list[str]:
    """``--nonce -abc`` as ``--nonce=-abc``, for the flags of :data:`OPAQUE_VALUE_FLAGS`,
    when ``-abc`` is not one of the command's ``options`` (or an abbreviation of one:
    argparse accepts those). Nothing after ``--`` changes."""

    def is_option(arg: str) -> bool:
        name = arg.split("=", 1)[0]
        return name in options or (name[:2] == "--" and any(o.startswith(name) for o in options))

    glued: list[str] = []
    for at, arg in enumerate(argv):
        if arg == "--":  # the rest is positional (a command to run): never rewritten
            return glued + list(argv[at:])
        if glued and glued[-1] in OPAQUE_VALUE_FLAGS and arg[:1] == "-" and not is_option(arg):
            glued[-1] = f"{glued[-1]}={arg}"
        else:
            glued.append(arg)
    return glued


def wants_shell(argv: Sequence[str], commands: Collection[str]) -> bool:
    """Whether this is a login or a refresh asked for ``--output-format shell`` (a login also
    by ``CI_SHARK_OUTPUT_FORMAT``, which the flag overrides). Decided before parsing, which
    may be what fails."""
    if argv and argv[0] in commands and argv[0] not in ("login", "refresh"):
        return False
    chosen = None if argv[:1] == ["refresh"] else os.environ.get("CI_SHARK_OUTPUT_FORMAT")
    for at, arg in enumerate(argv):
        name, equals, value = arg.partition("=")
        if len(name) > len("--output-") and "--output-format".startswith(name):
            chosen = value if equals else (argv[at + 1] if at + 1 < len(argv) else None)
    return chosen == "shell"


# -- the login's flags, one per input of config.py -----------------------------------------


def add_settings_flags(login: argparse.ArgumentParser) -> None:
    """One flag per input that has one, with its help, its variable and its default."""
    from ci_shark.config import Settings, dashed, flag, spec
    from ci_shark.input_values import ENV_PREFIX

    required = login.add_argument_group("required (flag or variable)")
    optional = login.add_argument_group("login options")
    for field, info in Settings.model_fields.items():
        meta, cli = spec(field), flag(field)
        if cli is None:
            continue
        shown = _shown(info.default)
        env = f"{ENV_PREFIX}{field.upper()}"
        text = f"{meta.help} [{env}" + (f"; default: {shown}" if shown else "") + "]"
        group = required if meta.required else optional
        how: dict[str, Any] = {"dest": field, "help": text}
        if info.annotation is bool:  # --dpop/--no-dpop; None: not given, the variable decides
            how.update(action=argparse.BooleanOptionalAction, default=None)
            cli = f"--{dashed(field)}"
        else:
            how.update(metavar=meta.metavar)
        if field == "dpop_private_key":  # the flag names a file; the variable is the key
            text = f"{meta.help} [{env} holds the key itself, not a path]"
            how.update(dest="dpop_private_key_file", type=Path, help=text)
        elif field == "extra_params":
            how.update(action="append")
        group.add_argument(cli, **how)


def settings_given(args: argparse.Namespace) -> dict[str, Any]:
    """The login's flags that were given, as config.load_settings takes them."""
    from ci_shark.config import Settings

    given = {field: getattr(args, field, None) for field in Settings.model_fields}
    if args.extra_params:
        given["extra_params"] = "\n".join(args.extra_params)
    if args.dpop_private_key_file is not None:
        from ci_shark.issued import read_key_file

        given["dpop_private_key"] = read_key_file(args.dpop_private_key_file)
    return {name: value for name, value in given.items() if value is not None}


def _shown(default: object) -> str:
    if default in (None, (), {}, ""):
        return ""
    if isinstance(default, tuple):
        return ",".join(str(item) for item in default)
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, float):
        return duration(default)
    return str(default)
