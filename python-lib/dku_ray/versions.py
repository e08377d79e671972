"""Version strings of KubeRay ("v1.6.2") and Ray ("2.60.0") as comparable tuples."""
from __future__ import annotations

import re

_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+.].*)?$")


def parse_version(text: str) -> tuple[int, int, int] | None:
    """(major, minor, patch), or None when `text` is not a version; pre-release suffixes are ignored."""
    match = _VERSION.match(text.strip()) if isinstance(text, str) else None
    if not match:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def at_least(text: str, minimum: tuple[int, int, int]) -> bool:
    parsed = parse_version(text)
    return parsed is not None and parsed >= minimum
