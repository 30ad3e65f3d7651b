"""The generic platform on a terminal: a countdown redrawn in place, NO_COLOR respected."""

from __future__ import annotations

from support.clock import FakeClock

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
