"""The one log writer: a command for the runner always starts a line of its own."""

from __future__ import annotations

import io

import pytest

from ci_shark.platforms import detect
from ci_shark.platforms.log import LogWriter
from ci_shark.secret import Secret

from .platform_fakes import Streams, settings

SECRET = "tok-7e1c9d2a5b3f4e6d"
# Each CI as its runner sees it, with a terminal (nektos act, Buildkite's PTY).
PLATFORMS = {
    "github": {"GITHUB_ACTIONS": "true", "TERM": "xterm"},
    "gitlab": {"GITLAB_CI": "true", "TERM": "xterm"},
    "buildkite": {"BUILDKITE": "true", "TERM": "xterm"},
    "azure": {"TF_BUILD": "True", "TERM": "xterm"},
    "generic": {"TERM": "xterm"},
}


def test_a_command_after_a_countdown_starts_a_new_line() -> None:
    stream = io.StringIO()
    writer = LogWriter(stream, live=True)
    writer.countdown("ci_shark: waiting for approval, 4:59 left")
    writer.command(f"::add-mask::{SECRET}")
    lines = stream.getvalue().split("\n")
    assert lines[1] == f"::add-mask::{SECRET}"
    assert lines[0].endswith("4:59 left")


@pytest.mark.parametrize("name", PLATFORMS)
def test_every_platform_keeps_commands_at_the_start_of_a_line(name: str) -> None:
    streams = Streams(tty=True)
    platform = detect(PLATFORMS[name])(settings(), PLATFORMS[name], **streams.kwargs())
    platform.waiting(300)
    platform.mask([Secret(SECRET)])
    platform.warn("something to say")
    platform.waiting(290)
    platform.log("a line of ours")
    for stream in (streams.stdout.getvalue(), streams.stderr.getvalue()):
        for line in stream.split("\n"):
            for command in ("::add-mask::", "::warning", "##vso[", "a line of ours"):
                if command in line:
                    assert line.startswith(command), repr(line)
