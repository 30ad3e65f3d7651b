"""`ci-shark demo`: the whole flow on this machine, against the built-in sandbox server.

Its rules:

- It reads none of the caller's ``CI_SHARK_*`` variables (``ExplicitSettings``) and runs
  as a plain terminal (the base ``Platform``, whatever CI this is): a demo inside a job
  must not post comments or export anything to the job.
- Its files (the DPoP key, the credentials) go to a fresh private folder, removed at the
  end unless ``--keep``; its last line says which, and where.
- It shows what a CI job would now have, every secret as ``***``.

A variant of the demo is a :class:`Demo` subclass that overrides what differs (the sandbox
it starts, the login's settings, the platform, the opening line): :func:`run` keeps the
folder, the listing and the clean-up. :class:`WorkloadIdentityDemo` is the job proving which
run asks with a CI's OIDC token, from a fake GitHub-shaped token service on loopback.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ci_shark import flow
from ci_shark.config import ExplicitSettings, Settings
from ci_shark.outputs import Credentials
from ci_shark.platforms.base import Platform
from ci_shark.sandbox import SandboxServer

CLIENT_ID = "ci-shark-demo"


@dataclass(frozen=True)
class Demo:
    """A person approves (or the sandbox does, after ``approve_after_s``)."""

    approve_after_s: float = 5.0
    keep: bool = False

    def sandbox(self) -> SandboxServer:
        return SandboxServer(interval_s=2, approve_after_s=self.approve_after_s)

    def settings(self, server: SandboxServer, folder: Path) -> Settings:
        return ExplicitSettings(
            auth_url=server.url,
            client_id=CLIENT_ID,
            scope="openid deploy:write",
            output_format="dotenv",
            output_file=str(folder / "ci-shark.env"),
            notify=("log",),
            timeout=120,
        )

    def platform(self, server: SandboxServer, settings: Settings) -> Platform:
        return Platform(settings, {})

    def intro(self, server: SandboxServer) -> str:
        return (
            f"ci_shark demo: sandbox authorization server at {server.url}; it approves by "
            f"itself in {self.approve_after_s:g}s, or open the link below."
        )


class _FakeCiTerminal(Platform):
    """A terminal whose CI token service is the sandbox's fake one, in GitHub's shape."""

    ci_identity: ClassVar[str | None] = "github"


@dataclass(frozen=True)
class WorkloadIdentityDemo(Demo):
    """The job authenticates with a CI's OIDC token (a fresh one per request); the sandbox
    verifies it, shows its claims on the approval page, and asks: opening the link never
    approves by itself there."""

    def sandbox(self) -> SandboxServer:
        return SandboxServer(
            interval_s=2, approve_after_s=self.approve_after_s, fake_ci_issuer=True
        )

    def settings(self, server: SandboxServer, folder: Path) -> Settings:
        return super().settings(server, folder).model_copy(update={"workload_identity": True})

    def platform(self, server: SandboxServer, settings: Settings) -> Platform:
        return _FakeCiTerminal(settings, server.fake_ci_issuer.environment())

    def intro(self, server: SandboxServer) -> str:
        ci = server.fake_ci_issuer
        return (
            f"ci_shark demo, workload identity: sandbox authorization server at {server.url}, "
            f"trusting a fake CI OIDC token service at {ci.url} (GitHub's shape; its tokens "
            f"say repository {ci.claims['repository']}, ref {ci.claims['ref']}). Every request "
            "the job sends carries a fresh token from it. Open the link below: the page shows "
            "what the server verified from the token and asks you to Approve or Deny; it "
            f"approves by itself in {self.approve_after_s:g}s."
        )


def run(demo: Demo) -> None:
    """Log in against a fresh sandbox, show the result, then remove (or keep) its files."""
    folder = Path(tempfile.mkdtemp(prefix="ci-shark-demo-"))  # 0700
    try:
        with demo.sandbox() as server:
            settings = demo.settings(server, folder)
            print(demo.intro(server), file=sys.stderr)
            credentials = flow.run(settings, demo.platform(server, settings))
        print(listing(credentials, folder))
    finally:
        if demo.keep:
            print(f"\nKept {folder} (a private key and tokens: remove it when done).")
        else:
            shutil.rmtree(folder, ignore_errors=True)
            print(f"\nRemoved {folder} (the key and the tokens): pass --keep to keep it.")


def listing(credentials: Credentials, folder: Path) -> str:
    """What a CI job would now have: each output, a secret as ``***``."""
    lines = [f"\nWhat a CI job would now have (in {folder}):"]
    for name, value in credentials.named().items():
        shown = "*** (secret, masked)" if value and not isinstance(value, str) else value
        lines.append(f"  {name}={shown}")
    lines.append(
        "\nLater steps call APIs with `ci-shark request URL` (the proof, the nonce and a "
        "refresh are done for you). Try every command by hand against a sandbox that stays "
        "up: `python -I -m ci_shark.sandbox` (see the README)."
    )
    return "\n".join(lines)
