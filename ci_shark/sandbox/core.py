"""The sandbox without sockets: a request goes in, a reply comes out, the log remembers it.

The HTTP adapter (``httpd.py``) only parses and writes; everything the server decides is
here and in the endpoint modules, so a test or a tool can drive it without a port.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ci_shark.sandbox.authorization import AuthorizationEndpoints
from ci_shark.sandbox.ci_trust import CiTrust
from ci_shark.sandbox.faults import FaultQueues, fault_reply, slow_fault_delay_s
from ci_shark.sandbox.options import SandboxOptions
from ci_shark.sandbox.pages import VerificationPages
from ci_shark.sandbox.proofs import ProofVerifier
from ci_shark.sandbox.resource import ResourceEndpoints
from ci_shark.sandbox.state import SandboxState
from ci_shark.sandbox.wire import (
    ANY_METHOD,
    DEVICE_PATH,
    METADATA_PATHS,
    Endpoint,
    OAuthError,
    Reply,
    Request,
    Routes,
    not_found,
    text_reply,
)


class SandboxCore:
    """Routes, faults and state. ``issuer`` gives the base URL once the port is known;
    ``pause`` waits out a "slow" fault (and returns early when the server stops);
    ``ci_trust`` is the CI issuer whose tokens may authenticate clients (None: none)."""

    def __init__(
        self,
        options: SandboxOptions,
        *,
        issuer: Callable[[], str],
        pause: Callable[[float], object],
        ci_trust: CiTrust | None = None,
    ) -> None:
        self.options = options
        self.state = SandboxState(options, issuer, ci_trust)
        self.proofs = ProofVerifier(
            require_nonce=options.require_nonce,
            nonce_ttl_s=options.nonce_ttl_s,
            clock=options.clock,
        )
        self._faults = FaultQueues(
            token_faults=options.token_faults, device_faults=options.device_faults
        )
        self._pause = pause
        self._routes: Routes = {}
        for group in (AuthorizationEndpoints, VerificationPages, ResourceEndpoints):
            self._routes |= group(self.state, self.proofs).routes()

    def handle(self, req: Request) -> Reply:
        """The reply to one request (recorded by the caller, once it is final)."""
        route = self._route(req.path)
        if route is None:
            return not_found()
        endpoint = route.get(req.method) or route.get(ANY_METHOD)
        if endpoint is None:
            reply = text_reply(405, "405 method not allowed\n", "method_not_allowed")
            reply.headers.append(("Allow", ", ".join(sorted(route))))
            return reply
        fault = self._faults.take(req.path) if req.method == "POST" else None
        if fault is None or fault == "ok":
            return self._call(endpoint, req)
        delay_s = slow_fault_delay_s(fault)
        if delay_s is not None:
            self._pause(delay_s)
            reply = self._call(endpoint, dataclasses.replace(req, counts_as_poll=False))
            reply.detail = reply.outcome
        else:
            reply = fault_reply(fault)
        reply.outcome = f"fault:{fault}"
        return reply

    def record(self, req: Request, reply: Reply) -> None:
        self.state.record(req, reply)

    def _route(self, path: str) -> dict[str, Endpoint] | None:
        if path in METADATA_PATHS and not self.options.metadata:
            return None
        if path == DEVICE_PATH and self.options.device_flow == "missing":
            return None
        return self._routes.get(path)

    @staticmethod
    def _call(endpoint: Endpoint, req: Request) -> Reply:
        try:
            return endpoint(req)
        except OAuthError as error:
            return error.reply()
