"""config imports pydantic-settings without loading asyncio, and asyncio still works."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
import ci_shark.config
assert "asyncio" not in sys.modules, "asyncio was loaded with pydantic-settings"
import pydantic_settings.main
import asyncio
assert sys.modules["asyncio"] is asyncio and type(asyncio).__name__ == "module"
async def answer():
    return 42
assert asyncio.run(answer()) == 42
assert pydantic_settings.main.asyncio.run is asyncio.run  # the stand-in forwards
print("ok")
"""


def test_asyncio_is_loaded_on_first_use_only() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
