"""The notify channels: where the approval request is shown, and the outcome once the run
ends. A platform holds a list of them, built once from `notify`.

A channel is an object with ``announce(request)`` (called again with the new code on a
renewal), ``finish(outcome, request)`` (on every way out; ``request`` is None when the run
ended before a code existed) and ``close()``. Its rules, kept here for every channel:

1. The log is always the first channel, whatever `notify` says: a person watching the job
   can approve from it alone. The others follow in the order of
   :data:`ci_shark.config.NOTIFY_CHANNELS`.
2. A channel never raises into the flow. A failure is one warning, then the channel is
   left alone: the approval never depends on it. (A cancellation while announcing still
   ends the wait.)
3. ``finish`` never raises either, runs every channel's ``finish`` and then every
   ``close``: it runs on every way out and must not hide the error that ended the run.
4. A channel `notify` names that cannot work here (another CI's, a missing input) is an
   :class:`Unusable`: one warning on the first announce, nothing else.
5. A channel's credentials among the settings (`webhook-url`) are masked when the
   platform starts, whether or not `notify` names the channel (``Registered.secrets``).

A channel is registered by name: in :data:`EVERY_CI` when it is the same on every CI, in
its platform's ``own_channels`` when each CI has its own (``summary``, ``comment``). Its
module is imported only when `notify` names it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ci_shark.errors import Cancelled, CiSharkError
from ci_shark.platforms.log import LogWriter
from ci_shark.render import ApprovalRequest, Outcome, approval_log_lines
from ci_shark.secret import Secret

if TYPE_CHECKING:
    from ci_shark.later_settings import PlatformSettings
    from ci_shark.platforms.base import Platform


class Channel:
    """One place the approver hears about the request. The defaults do nothing."""

    def announce(self, request: ApprovalRequest) -> None:
        """Show the request: the link, the code, who asks."""

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        """Show how the run ended (the code and the link gone)."""

    def close(self) -> None:
        """Let go of connections; called once, after ``finish``."""


@dataclass(frozen=True)
class Registered:
    """Where a channel is built: ``module.builder(platform) -> Channel``."""

    module: str
    builder: str
    # Settings fields that are credentials of the channel: masked when the platform starts.
    secrets: tuple[str, ...] = ()

    def build(self, platform: Platform) -> Channel:
        builder: Callable[[Platform], Channel] = getattr(
            importlib.import_module(self.module), self.builder
        )
        return builder(platform)


# The channels that are the same on every CI. A CI's own are its platform's `own_channels`.
EVERY_CI: dict[str, Registered] = {
    "webhook": Registered("ci_shark.platforms.webhook", "webhook_channel", ("webhook_url",)),
}


def chosen(notify: tuple[str, ...], auto: tuple[str, ...]) -> tuple[str, ...]:
    """The channel names `notify` asks for: `none` is the log alone, `auto` is what the CI
    offers without configuration, plus whatever else is named (`auto,webhook`)."""
    if "none" in notify:
        return ()
    named = tuple(name for name in notify if name != "auto")
    return (*auto, *named) if "auto" in notify else named


def secret_settings(settings: PlatformSettings, registered: Iterable[Registered]) -> list[Secret]:
    """Rule 5: the credentials among the settings that these channels hold."""
    found = (getattr(settings, field) for entry in registered for field in entry.secrets)
    return [value for value in found if isinstance(value, Secret)]


class LogChannel(Channel):
    """Rule 1: the link, the code and what is asked, in the job log; the success line."""

    def __init__(self, writer: LogWriter, log: Callable[[str], None]) -> None:
        self._writer = writer
        self._log = log

    def announce(self, request: ApprovalRequest) -> None:
        for number, line in enumerate(approval_log_lines(request)):
            self._log(self._writer.styled(line, "1") if number == 0 else line)

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        # A failure is printed once, by the CLI, with its fix: only success is said here.
        if outcome.status == "approved":
            by = f" by {outcome.approver}" if outcome.approver else ""
            self._log(f"ci_shark: approved{by}; {outcome.message}")
        self._writer.end_line()


class Unusable(Channel):
    """Rule 4: a channel asked for that cannot work here, said once."""

    def __init__(self, reason: str, warn: Callable[[str], None]) -> None:
        self.reason = reason
        self._warn = warn
        self._said = False

    def announce(self, request: ApprovalRequest) -> None:
        if not self._said:
            self._said = True
            self._warn(self.reason)


class Channels:
    """A platform's channels, in order, each kept from breaking the flow (rules 2, 3)."""

    def __init__(self, named: list[tuple[str, Channel]], warn: Callable[[str], None]) -> None:
        self._named = named
        self._warn = warn
        self._broken: set[str] = set()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self._named)

    def get(self, name: str) -> Channel | None:
        return next((channel for known, channel in self._named if known == name), None)

    def announce(self, request: ApprovalRequest) -> None:
        for name, channel in self._working():
            try:
                channel.announce(request)
            except Cancelled:
                raise  # the job is being cancelled: the wait must end, not the channel
            except Exception as failure:  # rule 2: whatever it is, one warning
                self._failed(name, failure)

    def finish(self, outcome: Outcome, request: ApprovalRequest | None) -> None:
        try:
            for name, channel in self._working():
                try:
                    channel.finish(outcome, request)
                except Exception as failure:  # rule 3: the run's own error comes first
                    self._failed(name, failure)
        finally:
            for _, channel in self._named:
                with suppress(Exception):  # closing: nothing left to tell
                    channel.close()

    def _working(self) -> list[tuple[str, Channel]]:
        return [(name, channel) for name, channel in self._named if name not in self._broken]

    def _failed(self, name: str, failure: Exception) -> None:
        self._broken.add(name)
        # Our own errors carry our words; anything else may quote a URL or a secret.
        why = failure.message if isinstance(failure, CiSharkError) else type(failure).__name__
        self._warn(f"the {name} channel failed ({why}); the approval does not depend on it")


def build_channels(platform: Platform) -> Channels:
    """The log, then every channel `notify` names, in rule 1's order."""
    # Here, not at load: only a login builds channels, and config.py loads pydantic, which
    # the later commands must not (later_settings.py).
    from ci_shark.config import NOTIFY_CHANNELS  # noqa: PLC0415

    names = chosen(platform.settings.notify, platform.auto_channels)
    named: list[tuple[str, Channel]] = [("log", LogChannel(platform.writer, platform.log))]
    for name in NOTIFY_CHANNELS:
        if name in names and name != "log":
            named.append((name, _channel(platform, name)))
    return Channels(named, platform.warn)


def _channel(platform: Platform, name: str) -> Channel:
    """The channel called ``name`` on this platform; an :class:`Unusable` when it has none
    or it cannot be set up (rules 2 and 4: building never raises either)."""
    try:
        registered = platform.own_channels.get(name) or EVERY_CI.get(name)
        if registered is not None:
            return registered.build(platform)
        offered = [title for title, channels in _offered_by() if name in channels]
    except Exception as failure:  # rule 2
        why = f"could not be set up ({type(failure).__name__})"
        return Unusable(
            f"the {name} channel {why}; the approval does not depend on it", platform.warn
        )
    where = " and ".join([", ".join(offered[:-1]), offered[-1]] if len(offered) > 1 else offered)
    return Unusable(
        f"`notify: {name}` works on {where or 'no CI'} only; ignored on {platform.name}",
        platform.warn,
    )


def _offered_by() -> list[tuple[str, tuple[str, ...]]]:
    """Each known CI's title and the channels of its own (rule 4's message)."""
    from ci_shark.platforms import known_platforms  # noqa: PLC0415 (imports every CI: rare)

    return [(platform.title, tuple(platform.own_channels)) for platform in known_platforms()]
