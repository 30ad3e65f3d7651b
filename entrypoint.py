"""The GitHub Action's entry point: action.yml `exec`s this file with the venv's python.

It puts its own folder on sys.path so the action runs the ci_shark checked out with it,
whatever else is installed, and hands over to the CLI (which reads CI_SHARK_* inputs).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ci_shark.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
