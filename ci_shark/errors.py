"""Every way a run can end other than success, each with its exit code and its status output.

Messages here are written for the person reading the CI log: what happened, the likely
cause, the fix. Server-provided text is untrusted, so it only ever enters a message
through :func:`untrusted`, which strips control characters and bounds its length.
"""

from __future__ import annotations

import re
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    CONFIG = 2
    DENIED = 3
    EXPIRED = 4
    PROTOCOL = 5
    REFUSED = 6
    SIGINT = 130
    SIGTERM = 143


# C0/C1 controls, DEL, and the Unicode bidi/zero-width overrides used to disguise text.
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def untrusted(text: object, limit: int = 200) -> str:
    """Server text made safe to put on one log line: no controls, no newlines, bounded.

    ``##`` is split because CI runners act on ``##[command]`` (GitHub) and ``##vso[``
    (Azure) anywhere in a line; ``::command::`` needs a line start, which this text never has.
    """
    flat = _UNSAFE_CHARS.sub(" ", str(text))
    # A lookahead, not str.replace: "###[" would become "# ##[", still a command.
    flat = re.sub("#(?=#)", "# ", " ".join(flat.split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


_NOT_INERT = re.compile(r"[^A-Za-z0-9 ._:/+@=,%~-]")


def inert(text: object, limit: int = 200) -> str:
    """Server text for an output value: :func:`untrusted`, and no character a shell, a
    dotenv reader or a workflow expression gives a meaning to (``$ ` ( ) ; | & < > ' "``
    and the like become ``_``). For names and scopes, which never need them."""
    return _NOT_INERT.sub("_", untrusted(text, limit))


class CiSharkError(Exception):
    """Base of every error ci_shark raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILURE
    status: str = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """The message and the fix, as printed by the CLI."""
        return self.message if not self.hint else f"{self.message}\n  fix: {self.hint}"


class ConfigError(CiSharkError):
    """Bad configuration or usage; the message names the input and the fix."""

    exit_code = ExitCode.CONFIG


class TransportError(CiSharkError):
    """The server could not be reached, or kept failing, until the deadline."""


class ProtocolError(CiSharkError):
    """The server answered outside the protocol (or does not offer it)."""

    exit_code = ExitCode.PROTOCOL


class DeviceFlowUnsupported(ProtocolError):
    """The authorization server does not offer the device authorization grant."""


class OAuthError(CiSharkError):
    """An RFC 6749 error response. ``error_description`` is sanitised server text."""

    def __init__(
        self,
        error: str,
        error_description: str | None = None,
        *,
        status_code: int | None = None,
        endpoint: str = "the authorization server",
        hint: str | None = None,
        message: str | None = None,
    ) -> None:
        self.error = untrusted(error, 80)
        self.error_description = (
            untrusted(error_description) if error_description is not None else None
        )
        self.status_code = status_code
        detail = f": {self.error_description}" if self.error_description else ""
        super().__init__(message or f"{endpoint} answered {self.error}{detail}", hint=hint)


class DeviceFlowError(OAuthError):
    """The device flow ended without a token (the SharkAuth SDK's name for it)."""


class AccessDenied(DeviceFlowError):
    exit_code = ExitCode.DENIED
    status = "denied"


class ExpiredToken(DeviceFlowError):
    exit_code = ExitCode.EXPIRED
    status = "expired"


class TimedOut(DeviceFlowError):
    """Our own deadline (the ``timeout`` input) passed before approval."""

    exit_code = ExitCode.EXPIRED
    status = "timeout"


class PolicyRefused(CiSharkError):
    """Refused by policy: a fork PR, or an approver who is not allowed."""

    exit_code = ExitCode.REFUSED
    status = "refused"


class Cancelled(CiSharkError):
    """The job was cancelled (SIGINT or SIGTERM) while we waited."""

    status = "cancelled"

    def __init__(self, signal_name: str, exit_code: ExitCode) -> None:
        super().__init__(f"cancelled by {signal_name}; no credentials were written")
        self.exit_code = exit_code
