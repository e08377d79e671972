"""A progress bar over boosting rounds for notebooks and terminals.

Uses tqdm (its notebook widget via tqdm.auto) when installed; otherwise prints a short status
line at most every few seconds, which reads fine in a DSS notebook and in a job log alike.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Mapping, TextIO


def _metrics_text(metrics: Mapping[str, Any]) -> str:
    shown = [(k, v) for k, v in metrics.items() if k.startswith("valid-")] or list(metrics.items())
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown[:3])


class RoundProgress:
    """Shows `round / total` and the latest validation metrics; `write()` prints a log line above it."""

    def __init__(self, enabled: bool = True, stream: TextIO | None = None, min_interval_s: float = 2.0) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.min_interval_s = min_interval_s
        self.total = 0
        self.current = 0
        self._bar: Any = None
        self._last_print = 0.0
        self._tqdm: Any = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self._tqdm = tqdm
            except ImportError:
                self._tqdm = None

    def start(self, total: int, initial: int = 0) -> None:
        self.total, self.current = total, initial
        if not self.enabled:
            return
        if self._tqdm is not None and self._bar is None:
            self._bar = self._tqdm(total=total, initial=initial, desc="boosting rounds", unit="round")
        elif self._tqdm is None:
            self._print(f"boosting rounds: {initial}/{total}")

    def update(self, current: int, metrics: Mapping[str, Any]) -> None:
        if current <= self.current and self.current:
            return
        delta, self.current = current - self.current, current
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(delta)
            self._bar.set_postfix_str(_metrics_text(metrics), refresh=False)
        elif time.monotonic() - self._last_print >= self.min_interval_s or current >= self.total:
            pct = 100.0 * current / self.total if self.total else 0.0
            self._print(f"boosting rounds: {current}/{self.total} ({pct:.0f}%) {_metrics_text(metrics)}")

    def write(self, line: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(line.rstrip("\n"), file=self.stream)
        else:
            self.stream.write(line if line.endswith("\n") else line + "\n")
            self.stream.flush()

    def _print(self, text: str) -> None:
        self._last_print = time.monotonic()
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
