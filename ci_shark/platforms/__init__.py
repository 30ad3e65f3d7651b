"""CI platforms. ``detect`` picks the one we run on; each module is imported only when used."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from ci_shark.platforms.base import Platform

# (environment variable, expected value, module, class): checked in order, first match wins.
_KNOWN = (
    ("GITHUB_ACTIONS", "true", "ci_shark.platforms.github", "GitHubPlatform"),
    ("GITLAB_CI", "true", "ci_shark.platforms.gitlab", "GitLabPlatform"),
    ("BUILDKITE", "true", "ci_shark.platforms.buildkite", "BuildkitePlatform"),
    ("TF_BUILD", "True", "ci_shark.platforms.azure", "AzurePlatform"),
)


def detect(env: Mapping[str, str]) -> type[Platform]:
    """The platform class for this environment; the generic one when none matches."""
    for variable, value, module_name, class_name in _KNOWN:
        if env.get(variable, "").lower() == value.lower():
            return _load(module_name, class_name)
    return Platform


def known_platforms() -> list[type[Platform]]:
    """Every CI of its own, in detection order (this imports each one's module)."""
    return [_load(module_name, class_name) for _, _, module_name, class_name in _KNOWN]


def _load(module_name: str, class_name: str) -> type[Platform]:
    platform: type[Platform] = getattr(importlib.import_module(module_name), class_name)
    return platform


__all__ = ["Platform", "detect", "known_platforms"]
