"""`ci-shark demo`: the whole flow on this machine, against the built-in sandbox server.

Its rules:

- It reads none of the caller's ``CI_SHARK_*`` variables (``ExplicitSettings``) and runs
  as a plain terminal (the base ``Platform``, whatever CI this is): a demo inside a job
  must not post comments or export anything to the job.
- Its files (the DPoP key, the credentials) go to a fresh private folder, removed at the
  end unless ``--keep``; its last line says which, and where.
- It shows what a CI job would now have, every secret as ``***``.

A variant of the demo (say, a CI workload identity in place of a person) is a
:class:`Demo` subclass that overrides what differs (the sandbox it starts, the login's
settings, the opening line): :func:`run` keeps the folder, the listing and the clean-up.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

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

    def intro(self, server: SandboxServer) -> str:
        return (
            f"ci_shark demo: sandbox authorization server at {server.url}; it approves by "
            f"itself in {self.approve_after_s:g}s, or open the link below."
        )


def run(demo: Demo) -> None:
    """Log in against a fresh sandbox, show the result, then remove (or keep) its files."""
    folder = Path(tempfile.mkdtemp(prefix="ci-shark-demo-"))  # 0700
    try:
        with demo.sandbox() as server:
            settings = demo.settings(server, folder)
            print(demo.intro(server), file=sys.stderr)
            credentials = flow.run(settings, Platform(settings, {}))
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
        "up: `python -m ci_shark.sandbox` (see the README)."
    )
    return "\n".join(lines)
