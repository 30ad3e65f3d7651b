"""Every way a run can end other than success, each with its exit code and its status output.

Messages here are written for the person reading the CI log: what happened, the likely
cause, the fix. Server-provided text is untrusted, so it only ever enters a message
through :func:`ci_shark.safe_text.untrusted`, which takes out every secret of the run,
strips control characters and bounds its length.

Hints name inputs by their action name in backticks (`` `client-id` ``); the CLI spells
each out once as the user can set it (``CI_SHARK_CLIENT_ID`` / ``--client-id``), so this
module and ``oauth/`` know no CI.

The RFC 6749 / RFC 8628 error codes are one table: each :class:`OAuthError` subclass
carries its wire names (``error`` values), and :func:`oauth_error` picks the class for an
answer from any endpoint.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar

from ci_shark.safe_text import untrusted
from ci_shark.secret import Secret


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    CONFIG = 2
    DENIED = 3
    EXPIRED = 4
    PROTOCOL = 5
    REFUSED = 6
    HTTP_ERROR = 22  # `request`: the API answered an HTTP error (curl's number for it)
    SIGINT = 130
    SIGTERM = 143


class CiSharkError(Exception):
    """Base of every error ci_shark raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILURE
    status: str = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # What the server may have issued before this failure, (token, RFC 7009 hint), in
        # revocation order (oauth.tokens.revocable): whoever catches it revokes them.
        self.issued: list[tuple[Secret, str]] = []

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


# -- OAuth error responses: one table for every endpoint ----------------------------------


class OAuthError(ProtocolError):
    """An RFC 6749 error response (the SharkAuth SDK's ``OAuthError``): ``error``,
    ``error_description`` (sanitised server text) and ``status_code``. A code this table
    does not know is the server answering outside the protocol: exit 5."""

    wire_names: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str | None] = None  # what the answer means, said before it
    default_hint: ClassVar[str | None] = None

    def __init__(
        self,
        error: str | None = None,
        error_description: str | None = None,
        *,
        status_code: int | None = None,
        endpoint: str = "the authorization server",
        hint: str | None = None,
        message: str | None = None,
    ) -> None:
        self.error = untrusted(error, 80) if error else ""
        self.error_description = (
            untrusted(error_description) if error_description is not None else None
        )
        self.status_code = status_code
        detail = f": {self.error_description}" if self.error_description else ""
        what = self.error or (f"HTTP {status_code}" if status_code else "an error")
        said = f"{endpoint} answered {what}{detail}"
        super().__init__(
            message or (f"{self.summary}: {said}" if self.summary else said),
            hint=hint or self.default_hint,
        )

    @classmethod
    def wrapping(cls, failure: CiSharkError) -> OAuthError:
        """``failure`` as this class, keeping its message, fix, exit code and status."""
        wrapped = cls(message=failure.message, hint=failure.hint)
        wrapped.exit_code = failure.exit_code
        wrapped.status = failure.status
        wrapped.issued = failure.issued
        return wrapped


class DeviceFlowError(OAuthError):
    """The device flow ended without a token (the SharkAuth SDK's name for it). Every
    failure of :class:`ci_shark.DeviceFlow` is one, whatever the server did."""


class DeviceFlowUnsupported(DeviceFlowError):
    """The authorization server does not offer the device authorization grant."""

    wire_names = ("unsupported_grant_type", "device_flow_disabled")
    summary = "the authorization server does not offer the device flow"
    default_hint = (
        "enable the device authorization grant (RFC 8628) for this server and client "
        "(SharkAuth's current release ships with it switched off)"
    )


class ClientRejected(DeviceFlowError):
    exit_code = ExitCode.CONFIG
    wire_names = ("invalid_client", "unauthorized_client")
    summary = "the authorization server refused the client"
    default_hint = (
        "check `client-id`, and that the client may use the device authorization grant; "
        "then `client-secret`, or with `workload-identity` the server's reason above (an "
        "audience it names goes in `workload-identity-audience`)"
    )


class ScopeRejected(DeviceFlowError):
    exit_code = ExitCode.CONFIG
    wire_names = ("invalid_scope",)
    default_hint = "request only scopes the client is allowed: check `scope`"


class ResourceRejected(DeviceFlowError):
    exit_code = ExitCode.CONFIG
    wire_names = ("invalid_target",)
    default_hint = "check `resource`: the server does not serve that resource to this client"


class InvalidGrant(DeviceFlowError):
    wire_names = ("invalid_grant",)
    default_hint = (
        "the grant is no longer valid; if an answer was lost in transit the server may have "
        "spent it on a token that never arrived: run the login again"
    )


class AccessDenied(DeviceFlowError):
    exit_code = ExitCode.DENIED
    status = "denied"
    wire_names = ("access_denied", "authorization_declined")


class ExpiredToken(DeviceFlowError):
    exit_code = ExitCode.EXPIRED
    status = "expired"
    wire_names = ("expired_token", "code_expired")
    default_hint = "re-run the job and approve before the code expires"


class TimedOut(DeviceFlowError):
    """Our own deadline (the ``timeout`` input) passed before approval."""

    exit_code = ExitCode.EXPIRED
    status = "timeout"


_BY_WIRE_NAME: dict[str, type[OAuthError]] = {
    name: kind
    for kind in (
        DeviceFlowUnsupported,
        ClientRejected,
        ScopeRejected,
        ResourceRejected,
        InvalidGrant,
        AccessDenied,
        ExpiredToken,
    )
    for name in kind.wire_names
}


def oauth_error(
    error: str | None,
    error_description: str | None,
    *,
    status_code: int | None,
    endpoint: str,
    unknown: type[OAuthError] = OAuthError,
) -> OAuthError:
    """The error class for ``error`` (``unknown`` when the table has no row for it)."""
    kind = _BY_WIRE_NAME.get(error or "", unknown)
    return kind(error, error_description, status_code=status_code, endpoint=endpoint)
