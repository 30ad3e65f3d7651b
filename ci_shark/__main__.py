"""``python -m ci_shark``."""

from ci_shark.cli import main

raise SystemExit(main())
