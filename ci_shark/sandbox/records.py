"""What the sandbox tells its tests: every request it answered, every device grant it holds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from ci_shark.sandbox.wire import TOKEN_PATH

_POLL_OUTCOMES: Final = frozenset(
    {"authorization_pending", "slow_down", "access_denied", "expired_token", "granted"}
)


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request as the server saw it."""

    method: str
    path: str  # without the query string
    arrived_at: float  # the server's clock when the request line was read
    connection_id: int  # same number = same TCP connection (keep-alive reuse)
    outcome: str  # e.g. "authorization_pending", "use_dpop_nonce", "granted", "fault:500"
    detail: str = (
        ""  # extra context: the reason of an error, the real outcome behind "fault:slow:…"
    )


@dataclass(frozen=True)
class SandboxStats:
    """A consistent snapshot of everything the server has answered so far."""

    requests: tuple[RequestRecord, ...] = ()

    @property
    def polls(self) -> int:
        """Token requests judged as device-code polls (faults and DPoP rejections excluded)."""
        return sum(1 for r in self.requests if r.path == TOKEN_PATH and r.outcome in _POLL_OUTCOMES)

    @property
    def slow_downs(self) -> int:
        return sum(1 for r in self.requests if r.outcome == "slow_down")

    @property
    def connections(self) -> int:
        return len({r.connection_id for r in self.requests})

    @property
    def nonce_challenges(self) -> int:
        return sum(1 for r in self.requests if r.outcome == "use_dpop_nonce")

    def outcomes(self, path: str | None = None) -> list[str]:
        """Outcomes in arrival order, optionally only for one path."""
        return [r.outcome for r in self.requests if path is None or r.path == path]


@dataclass(frozen=True)
class GrantInfo:
    """A snapshot of one device authorization request, as the client sent it."""

    user_code: str
    client_id: str
    scope: str
    resources: tuple[str, ...]
    extra_params: Mapping[str, str]
    status: str  # "pending" | "approved" | "denied" | "expired" | "redeemed"
    interval_s: int  # the current interval: grows by 5 with every slow_down
    jkt: str | None  # the DPoP key thumbprint the polls are bound to
    # The claims of the CI token that authenticated the request (None: no workload identity).
    ci_claims: Mapping[str, Any] | None = None
