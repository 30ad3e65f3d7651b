"""The generic platform on a terminal: a countdown redrawn in place, NO_COLOR respected, and
one folder per user for the login's files (a CI job gets one per job)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from support.clock import FakeClock

from ci_shark.errors import ConfigError
from ci_shark.platforms.base import Platform
from ci_shark.render import Outcome, RunContext

from .platform_fakes import Streams, request, settings


def test_terminal_countdown_redraws_one_line_and_ends_it_before_the_next_log_line() -> None:
    streams = Streams(tty=True)
    generic = Platform(settings(), {"TERM": "xterm"}, **streams.kwargs())
    generic.waiting(125.4)
    generic.waiting(120.0)
    generic.finish(Outcome("approved", "ok"), None)
    text = streams.stderr.getvalue()
    assert "2:05 left" in text
    assert "2:00 left" in text
    # Redrawn in place, then ended: the next line starts a line of its own.
    countdown, approved, end = text.split("\n")
    assert countdown.count("\r\x1b[2K") == 2
    assert approved == "ci_shark: approved; ok"
    assert end == ""
    assert "\x1b[2m" in text  # dim countdown: color allowed


def test_a_ci_never_gets_a_countdown_even_on_a_terminal() -> None:
    # nektos act and Buildkite give steps a terminal; their logs are still read per line.
    streams = Streams(tty=True)
    in_ci = Platform(settings(), {"TERM": "xterm", "CI": "true"}, **streams.kwargs())
    in_ci.waiting(125.4)
    in_ci.waiting(120.0)
    assert "\r" not in streams.stderr.getvalue()
    assert "\x1b" not in streams.stderr.getvalue()


def test_no_color_means_no_sgr_codes() -> None:
    streams = Streams(tty=True)
    generic = Platform(settings(), {"NO_COLOR": "1", "TERM": "xterm"}, **streams.kwargs())
    generic.announce(request(RunContext()))
    generic.waiting(60)
    text = streams.stderr.getvalue()
    assert "1:00 left" in text
    assert "\x1b[" not in text.replace("\x1b[2K", "")  # only the erase-line control


def test_ci_log_gets_progress_lines_not_a_countdown() -> None:
    streams = Streams(tty=False)
    clock = FakeClock(0.0)
    generic = Platform(settings(), {}, clock=clock, **streams.kwargs())
    generic.waiting(600)
    clock.advance(31)
    generic.waiting(569)
    generic.announce(request(RunContext()))
    text = streams.stderr.getvalue()
    assert "still waiting for approval (569s left)" in text
    assert "\x1b" not in text
    assert "\r" not in text


# -- where a login's files go -------------------------------------------------------------


def test_outside_ci_the_files_go_to_one_folder_per_user_whatever_the_session(
    tmp_path: Path,
) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    folder = Platform(settings(), env).state_directory()
    assert folder == tmp_path / "state" / "ci-shark"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700  # made, per XDG


def test_a_relative_xdg_state_home_is_ignored_as_the_spec_says(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": "state", "HOME": str(tmp_path)}
    folder = Platform(settings(), env).state_directory()
    assert folder == tmp_path / ".local" / "state" / "ci-shark"


@pytest.mark.parametrize(
    "env",
    [
        {"CI": "true"},
        {"CI": "woodpecker"},
        {"BUILD_TAG": "jenkins-app-12"},
        {"TEAMCITY_VERSION": "2024.12"},
    ],
    ids=["CI=true", "CI=woodpecker", "jenkins", "teamcity"],
)
def test_a_ci_job_keeps_a_folder_of_its_own_in_the_temp_dir(
    tmp_path: Path, env: dict[str, str]
) -> None:
    folder = Platform(settings(), {**env, "XDG_STATE_HOME": str(tmp_path)}).state_directory()
    assert folder.parent == Path(tempfile.gettempdir()) / f"ci-shark-{os.getuid()}"
    assert folder.name == env.get("BUILD_TAG", f"session-{os.getsid(0)}")
    assert not (tmp_path / "ci-shark").exists()


def test_an_unusable_state_folder_names_the_variable_and_the_fix(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError) as raised:
        Platform(settings(), {"XDG_STATE_HOME": str(blocker / "state")}).state_directory()
    assert str(blocker / "state") in raised.value.message
    assert "XDG_STATE_HOME" in (raised.value.hint or "")
