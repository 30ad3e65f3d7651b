"""Hatchling metadata hook: README.md as the long description, fit for PyPI.

PyPI renders the README away from the repository, so its relative links (``docs/github.md``,
``SECURITY.md``) would lead nowhere there. This hook makes each one absolute, pointing at the
file in the repository named by ``[project.urls] Source``, at this version's tag
(``vX.Y.Z``), so the page of a release links to the docs of that release. Anchors
(``#usage``) and absolute URLs are left alone. No plugin to download: hatchling loads this
file itself (``[tool.hatch.metadata.hooks.custom]``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hatchling.metadata.plugin.interface import MetadataHookInterface

# `[text](target)` / `![alt](target)` and `[label]: target` definitions; a target with a
# scheme (`https:`, `mailto:`) or starting with `#` or `/` is not relative.
_INLINE = re.compile(r"(?P<bang>!?)\[(?P<text>[^\]\n]*)\]\((?P<target>[^)\s]+)\)")
_DEFINITION = re.compile(r"^(?P<label>\[[^\]\n]+\]:[ \t]*)(?P<target>\S+)", re.MULTILINE)
_NOT_RELATIVE = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:|#|/)")


def absolute_links(markdown: str, source_url: str, ref: str) -> str:
    """Rewrite the relative link targets of ``markdown`` to URLs under ``source_url``."""
    base = source_url.rstrip("/")

    def absolute(target: str, image: bool) -> str:
        if _NOT_RELATIVE.match(target):
            return target
        kind = "raw" if image else "blob"
        return f"{base}/{kind}/{ref}/{target.removeprefix('./')}"

    def inline(match: re.Match[str]) -> str:
        target = absolute(match["target"], image=bool(match["bang"]))
        return f"{match['bang']}[{match['text']}]({target})"

    def definition(match: re.Match[str]) -> str:
        return f"{match['label']}{absolute(match['target'], image=False)}"

    return _DEFINITION.sub(definition, _INLINE.sub(inline, markdown))


class CustomMetadataHook(MetadataHookInterface):
    def update(self, metadata: dict[str, Any]) -> None:
        source_url = metadata.get("urls", {}).get("Source")
        if not source_url:
            raise ValueError("pyproject.toml: [project.urls] needs Source, the repository URL")
        readme = Path(self.root, "README.md").read_text(encoding="utf-8")
        metadata["readme"] = {
            "content-type": "text/markdown",
            "text": absolute_links(readme, source_url, f"v{metadata['version']}"),
        }
