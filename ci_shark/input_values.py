"""What an input is, and how its text becomes a value: the :class:`Input` metadata each
Settings field carries, the parsers config.py's field types are built from, and the checks
of the inputs a later command reads too (a URL, the audience, the CA bundle): one rule
each, for config.py and later_settings.py alike.

Plain Python, no pydantic: config.py wraps these in its field types and validators. A
parser raises ``ValueError`` with words for the person who set the input, never the value
itself (it may be a secret).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ci_shark.errors import ConfigError
from ci_shark.secret import Secret
from ci_shark.urls import url_problem

ENV_PREFIX = "CI_SHARK_"  # every input's variable: CI_SHARK_<FIELD>
APPROVER_KINDS = ("sub", "user", "email")


@dataclass(frozen=True)
class Input:
    """How users meet one input: its help, its flag (None: env/action input only, for
    secrets that must stay off argv), and the fix for a bad value."""

    help: str
    fix: str
    flag: str | None = ""  # "": --<input-name>
    metavar: str | None = None
    required: bool = False  # by login


def approver_entry(entry: str) -> tuple[str | None, str]:
    """An `allowed-approvers` entry as (claim kind, name): ``sub:248289761001`` is
    ("sub", "248289761001"); a bare entry, without a kind, is (None, entry). Whether a bare
    entry is allowed depends on the provider (flow.py)."""
    kind, sep, name = entry.strip().partition(":")
    return (kind, name) if sep and kind in APPROVER_KINDS else (None, entry.strip())


def to_secret(value: object) -> Secret | None:
    """A secret input: stripped, wrapped at once; empty is unset."""
    if value is None or isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return Secret(value.strip()) if value.strip() else None


def splitter(separators: str) -> Any:
    """A parser of a list given as one string, split at any run of ``separators``."""

    def split(value: object) -> object:
        if isinstance(value, str):
            return tuple(item for item in re.split(f"[{separators}]+", value) if item)
        return value

    return split


def key_values(value: object) -> object:
    """``K=V`` pairs, one per line or comma-separated (or a mapping from the CLI)."""
    if not isinstance(value, str):
        return value
    pairs: dict[str, str] = {}
    for item in re.split(r"[\n,]+", value):
        if not item.strip():
            continue
        key, sep, val = item.strip().partition("=")
        if not sep or not key.strip():
            raise ValueError("takes K=V pairs, one per line or separated by commas")
        pairs[key.strip()] = val.strip()
    return pairs


def safe_url(value: str) -> str:
    """A URL input, stripped, that the URL rule accepts (https, or plain http to loopback)."""
    value = value.strip()
    problem = url_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def audience(value: str) -> str:
    """`workload-identity-audience`: it goes into a URL's query (GitHub) and an argument
    (Buildkite), so one word of printable ASCII."""
    if not (0 < len(value) <= 1000 and all(" " < ch <= "~" for ch in value)):
        raise ValueError("must be one word of printable ASCII, e.g. the server's issuer URL")
    return value


def readable_file(value: str) -> str:
    """`ca-bundle`: a file that is there."""
    if not Path(value).is_file():
        raise ValueError("must be the path of a readable PEM file")
    return value


def one_client_authentication(*, workload_identity: bool, client_secret: bool) -> None:
    """A client authenticates one way: `client-secret` or `workload-identity`, never both
    (for the login and a later command alike: a later step must not pick one quietly)."""
    if workload_identity and client_secret:
        # ConfigError, not ValueError: it names two inputs, so it bypasses pydantic's list.
        raise ConfigError(
            "`client-secret` and `workload-identity` are both set: a client authenticates one way",
            hint="with workload identity the CI's OIDC token proves who asks: remove "
            "`client-secret` (and make the client one that takes the CI token), or turn "
            "`workload-identity` off",
        )
