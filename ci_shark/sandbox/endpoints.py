"""What every group of endpoints is given: the state and the DPoP verifier."""

from __future__ import annotations

from ci_shark.sandbox.proofs import ProofVerifier
from ci_shark.sandbox.state import SandboxState
from ci_shark.sandbox.wire import Routes


class EndpointGroup:
    def __init__(self, state: SandboxState, proofs: ProofVerifier) -> None:
        self._state = state
        self._options = state.options
        self._proofs = proofs
        self._issuer = state.issuer

    def routes(self) -> Routes:
        """Path -> method (or ANY_METHOD) -> endpoint."""
        raise NotImplementedError
