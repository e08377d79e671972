"""Credentials inside the job: read once from the private file, deleted at once, never printed.

Why a file and not env vars or arguments: `runtime_env.env_vars` and the entrypoint are returned
in clear by the dashboard's `GET /api/jobs/`. The file travels inside the job's working_dir zip,
which the dashboard only shows as a `gcs://_ray_pkg_<hash>.zip` URI. Every node that runs a
process of the job unpacks that zip, so every process of ours deletes the file where it runs,
and the driver sweeps all nodes at the end.
"""
from __future__ import annotations

import io
import json
import os
from typing import Any, Mapping, TextIO

from dku_ray_job.config import SECRETS_FILE


class SecretBox:
    """Credentials per store name; pickles to the workers, but prints as a placeholder.

    Ray Train shows `train_loop_config` on the dashboard with `str()`: this type keeps the values
    out of that view and out of any log line that formats the config.
    """

    def __init__(self, entries: Mapping[str, Mapping[str, Any]]) -> None:
        self._entries = {k: dict(v) for k, v in entries.items()}

    def get(self, store: str) -> dict[str, Any] | None:
        entry = self._entries.get(store)
        return dict(entry) if entry else None

    def values(self) -> list[str]:
        """Every secret string, for redaction."""
        out = []
        for entry in self._entries.values():
            for key in ("access_key", "secret_key", "session_token"):
                if entry.get(key):
                    out.append(str(entry[key]))
        return out

    def __repr__(self) -> str:
        return f"SecretBox(<{len(self._entries)} credential set(s) redacted>)"

    __str__ = __repr__


def take_secrets(path: str = SECRETS_FILE) -> SecretBox:
    """Read the credentials file and delete it before anything else can copy it."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
    except FileNotFoundError:
        return SecretBox({})
    finally:
        remove_secrets_file(path)
    return SecretBox(raw if isinstance(raw, dict) else {})


def remove_secrets_file(path: str = SECRETS_FILE) -> bool:
    """Delete the credentials file in this process's working dir, if it is there."""
    try:
        os.remove(path)
        return True
    except OSError:
        return False


class Redactor:
    """Replaces every known secret string with `***`."""

    def __init__(self, secrets: list[str]) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


class _RedactingStream(io.TextIOBase):
    """A text stream that redacts whole lines before passing them on."""

    def __init__(self, inner: TextIO, redact: Redactor) -> None:
        self._inner = inner
        self._redact = redact
        self._buffer = ""

    def write(self, text: str) -> int:
        self._buffer += text
        if "\n" in self._buffer:
            head, _, self._buffer = self._buffer.rpartition("\n")
            self._inner.write(self._redact(head + "\n"))
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            self._inner.write(self._redact(self._buffer))
            self._buffer = ""
        self._inner.flush()

    def fileno(self) -> int:
        return self._inner.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._inner, "encoding", "utf-8")


def install_redaction(redact: Redactor) -> None:
    """Redact secrets from everything this process prints (a second line of defence)."""
    import sys

    if not isinstance(sys.stdout, _RedactingStream):
        sys.stdout = _RedactingStream(sys.stdout, redact)
    if not isinstance(sys.stderr, _RedactingStream):
        sys.stderr = _RedactingStream(sys.stderr, redact)
