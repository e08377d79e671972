"""Shared test setup: make `python-lib` (the plugin's library) and the repo root importable."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for path in (ROOT / "python-lib", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

pytest_plugins = ["testenv.pytest_plugin", "tests.dss.fixtures"]
