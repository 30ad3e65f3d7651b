"""Import pydantic-settings without loading asyncio before the approval link.

pydantic-settings imports asyncio at module level for ``CliApp.run`` only, which ci_shark
never calls, and asyncio (with the modules it pulls in) is 50-100 ms of the link's
critical path on a busy 2-core runner. While pydantic_settings is being imported, its
``import asyncio`` gets a stand-in that imports the real asyncio on first attribute access;
the stand-in leaves ``sys.modules`` as soon as that import is over, so every other
``import asyncio`` in the process gets the real module as usual.

config.py imports this module first; nothing else should need it.
"""

from __future__ import annotations

import importlib
import sys
import types


class _ImportedOnFirstUse(types.ModuleType):
    """Forwards every attribute to the real module, importing it the first time."""

    def __getattr__(self, name: str) -> object:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def import_pydantic_settings() -> None:
    if "pydantic_settings" in sys.modules or "asyncio" in sys.modules:
        return
    stand_in = _ImportedOnFirstUse("asyncio")
    stand_in.__spec__ = None  # the import system reads it; None means "not initialising"
    sys.modules["asyncio"] = stand_in
    try:
        importlib.import_module("pydantic_settings")
    finally:
        if sys.modules.get("asyncio") is stand_in:
            del sys.modules["asyncio"]


import_pydantic_settings()
