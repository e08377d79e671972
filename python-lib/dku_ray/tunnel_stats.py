"""What the tunnel reports: a snapshot of its counters, and the formatting of sizes and durations."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TunnelStats:
    """A snapshot of the tunnel, for progress reports; never holds the token."""

    url: str
    state: str  # "open", "waiting for the head pod", "cluster gone", "closed"
    uptime_s: float
    connections: int
    active: int
    failed: int
    reconnections: int
    head_pod: str | None
    head_pod_changes: int
    bytes_up: int
    bytes_down: int
    spare_hits: int

    def summary(self) -> str:
        return (f"{self.url} {self.state}, up {format_duration(self.uptime_s)}, {self.connections} connection(s) "
                f"({self.active} open, {self.failed} failed), {self.reconnections} reconnection(s), "
                f"{format_size(self.bytes_up)} sent / {format_size(self.bytes_down)} received, head pod {self.head_pod or '-'}"
                + (f" ({self.head_pod_changes} change(s))" if self.head_pod_changes else ""))


def format_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"
