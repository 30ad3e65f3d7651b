"""Each command's options, their help and its examples: what ``--help`` shows. Only
argparse calls: the command's handler (``cli.py``) does the work, and only the command that
runs gets its options built (``cli_args.parse_args``).

Rules: a flag whose value is a secret does not exist (argv is visible to other processes:
those inputs are variables only); a flag whose value is an opaque string that may start
with "-" is listed in ``cli_args.OPAQUE_VALUE_FLAGS``; every default is said in its help.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ci_shark.units import parse_duration

LOGIN_EXAMPLES = """examples:
  ci-shark --auth-url https://auth.example.com --client-id ci-deploy --scope deploy:write
  eval "$(ci-shark --output-format shell)"      # SHARK_* in this shell (CI_SHARK_* set)
  ci-shark demo                                  # the whole flow against a local sandbox

Every option is also a CI_SHARK_* variable (GitHub Action inputs arrive that way); a flag
wins over its variable. Secrets (CI_SHARK_GITHUB_TOKEN, CI_SHARK_GITLAB_TOKEN,
CI_SHARK_WEBHOOK_URL) have no flag: argv is visible to other processes."""

USE_EXAMPLES = """examples:
  ci-shark request https://api.example.com/deploy
  ci-shark request -X POST --json '{"ref":"v1.2"}' https://api.example.com/deploy
  ci-shark request -d @payload.txt -H 'Content-Type: text/plain' -o reply.json URL
  curl -H "DPoP: $(ci-shark proof --method GET --url URL --with-access-token)" ...

The credentials come from --credentials FILE; else the SHARK_* variables holding a token
(unless the login's default file holds the same grant, refreshed); else the newest file a
login left by default: the job's private folder ($RUNNER_TEMP/ci-shark.json on GitHub),
or, outside CI, ~/.local/state/ci-shark ($XDG_STATE_HOME). One line says which."""

PROXY_EXAMPLES = """examples:
  ci-shark proxy --upstream https://api.example.com -- ./deploy.sh   # $SHARK_PROXY_URL
  ci-shark proxy --upstream https://api.example.com -- \\
      sh -c 'curl -fsS "$SHARK_PROXY_URL/v1/items"'
  ci-shark proxy --upstream https://api.example.com --export         # GitHub: later steps
  ci-shark proxy --upstream api=https://api.example.com --upstream files=https://files.example.com

With -- COMMAND the exit status is the command's. Without it or --export the proxy serves
in the foreground (stdout: one line, SHARK_PROXY_URL=...) until SIGTERM or SIGINT (exit 0).
The credentials are found as for request (--credentials FILE, SHARK_*, the job's file)."""


def request_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", metavar="URL")
    parser.add_argument(
        "-X", "--request", dest="method", metavar="METHOD", help="default: GET, or POST with a body"
    )
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra header (repeatable)",
    )
    body = parser.add_mutually_exclusive_group()
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
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="write the body here (0600), not to stdout",
    )
    max_time(parser, 300.0, "give up after this long")
    use_options(parser)


def refresh_options(parser: argparse.ArgumentParser) -> None:
    use_options(parser)
    parser.add_argument("--output-format", choices=("shell",), help="also print exports for eval")


def revoke_options(parser: argparse.ArgumentParser) -> None:
    max_time(parser, 15.0, "give up after this long, retries included")
    use_options(parser)


def proof_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, help="the HTTP method, e.g. GET")
    parser.add_argument(
        "--url",
        required=True,
        help="the request URL (named as it goes out: scheme and host lowercased, no default "
        "port, no query or fragment)",
    )
    token = parser.add_mutually_exclusive_group()
    token.add_argument(
        "--access-token", help="bind the proof to this token (ath); prefer --with-access-token"
    )
    token.add_argument(
        "--with-access-token",
        action="store_true",
        help="bind the proof to the login's access token (keeps the token off argv)",
    )
    parser.add_argument("--nonce", help="the server's DPoP-Nonce")
    parser.add_argument("--key-file", type=Path, help="the key (default: the login's)")
    parser.add_argument(
        "--credentials", type=Path, metavar="FILE", help="the login's dotenv/json file"
    )


def max_time(parser: argparse.ArgumentParser, default_s: float, bounds: str) -> None:
    """``--max-time SECONDS``: what it ``bounds``, and its default."""
    parser.add_argument(
        "--max-time",
        type=_duration,
        default=default_s,
        metavar="SECONDS",
        help=f"{bounds} (default {default_s:g})",
    )


def _duration(text: str) -> float:
    """A bound as `timeout` takes one (``15``, ``2m``): more than 0, at most a day. A plain
    float would take ``inf``, ``nan`` and ``-1``, which bound nothing."""
    try:
        return parse_duration(text)
    except ValueError as bad:
        raise argparse.ArgumentTypeError(f"{text!r} {bad}") from None


def use_options(parser: argparse.ArgumentParser) -> None:
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


def proxy_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="[NAME=]URL",
        help="the origin to forward to (https://api.example.com); repeat as NAME=URL for "
        "several, each under $SHARK_PROXY_URL/NAME/",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="a loopback address (default 127.0.0.1:0: a free port)",
    )
    parser.add_argument(
        "--export",
        action="store_true",
        help="GitHub: write SHARK_PROXY_URL to GITHUB_ENV and go on in the background for "
        "the later steps of the job",
    )
    max_time(parser, 3600.0, "the longest one forwarded exchange may take, bodies included")
    parser.add_argument(
        "wrapped",  # `command` is the name of the command that runs (argparse's dest)
        nargs="*",
        metavar="-- COMMAND",
        help="run this with SHARK_PROXY_URL set; its exit status is the proxy's",
    )
    use_options(parser)


def demo_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--approve-after",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="when the sandbox approves (default 5)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the demo's files (key, env file) and say where"
    )
    parser.add_argument(
        "--workload-identity",
        action="store_true",
        help="the job proves which run asks with a CI's OIDC token (a fake CI on loopback); "
        "the page shows what the server verified, and asks",
    )
