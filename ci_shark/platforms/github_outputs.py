"""GitHub Actions' workflow commands and file commands, as the runner reads them
(actions/runner, checked against its source).

- A workflow command (``::add-mask::``, ``::warning::``) is recognised at a line start
  after leading whitespace; its data escapes ``%``, CR and LF. The legacy form ``##[name]``
  is recognised anywhere in a line: our text never carries one.
- ``GITHUB_OUTPUT`` / ``GITHUB_ENV`` are read after the step exits: ``name=value`` lines or
  ``name<<DELIMITER`` heredocs ending at the first line equal to the delimiter. A random
  delimiter is used, a value containing it is refused rather than truncated (or worse,
  allowed to set other outputs), and several files are appended all or none.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from contextlib import suppress

from ci_shark.errors import CiSharkError, ConfigError
from ci_shark.outputs import Value, reveal

DELIMITER_PREFIX = "ghadelimiter_"
# Step output name -> the SHARK_* value it carries (README "Outputs"); `status` is
# written by the platform's finish() on every outcome, `dpop-private-key` comes from the
# key itself.
STEP_OUTPUTS = {
    "access-token": "SHARK_ACCESS_TOKEN",
    "token-type": "SHARK_TOKEN_TYPE",
    "expires-in": "SHARK_EXPIRES_IN",
    "expires-at": "SHARK_EXPIRES_AT",
    "scope": "SHARK_SCOPE",
    "refresh-token": "SHARK_REFRESH_TOKEN",
    "id-token": "SHARK_ID_TOKEN",
    "dpop-jkt": "SHARK_DPOP_JKT",
    "dpop-jwk": "SHARK_DPOP_JWK",
    "dpop-key-file": "SHARK_DPOP_KEY_FILE",
    "approver": "SHARK_APPROVER",
}

# The step's file commands: the runner reads each once the step has ended.
STEP_FILES = ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STATE", "GITHUB_STEP_SUMMARY")


def step_outputs(named: Mapping[str, Value]) -> dict[str, Value]:
    """The step's outputs (dashed names) from the ``SHARK_*`` values."""
    return {step: named.get(shark, "") for step, shark in STEP_OUTPUTS.items()}


def escape_command_data(value: str) -> str:
    """The escaping the runner undoes in a command's data (`%`, CR, LF)."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def command_text(message: str) -> str:
    """Our message as a command's data: escaped, and no legacy ``##[`` command in it."""
    return escape_command_data(message.replace("##[", "# #["))


def new_delimiter() -> str:
    return f"{DELIMITER_PREFIX}{uuid.uuid4()}"


def render_file_commands(values: Mapping[str, Value], delimiter: str | None = None) -> str:
    """``GITHUB_OUTPUT`` / ``GITHUB_ENV`` text: one heredoc per value, `\\n` newlines."""
    delimiter = delimiter or new_delimiter()
    parts = []
    for name, value in values.items():
        text = reveal(value)
        if delimiter in text or delimiter in name:
            raise CiSharkError(
                f"the value of {name} contains the output delimiter; nothing was written"
            )
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
            raise CiSharkError(f"{name!r} is not a valid output name")
        parts.append(f"{name}<<{delimiter}\n{text}\n{delimiter}\n")
    return "".join(parts)


def append_all(env: Mapping[str, str], texts: Mapping[str, str]) -> None:
    """Append each text whole to the file its variable names; on a failure, cut every file
    back to where it was."""
    done: list[tuple[str, int]] = []
    try:
        for variable, text in texts.items():
            path = env[variable]
            size = os.path.getsize(path) if os.path.exists(path) else 0
            done.append((path, size))
            append(path, text)
    except OSError as exc:
        for path, size in done:
            with suppress(OSError):
                os.truncate(path, size)
        raise ConfigError(
            f"could not write the step outputs: {exc.strerror}; nothing was written",
            hint="check that the runner's file-command files are writable",
        ) from None


def append(path: str, text: str) -> None:
    with open(path, "a", encoding="utf-8", newline="\n") as file:
        file.write(text)
        file.flush()
