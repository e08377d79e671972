"""Follow a running training job: stream its logs, drive the progress bar, enforce the deadline.

The job prints `DKU_RAY_EVENT {json}` lines (see `dku_ray_job.events`); they are parsed here,
deduplicated by id (Ray Train V2 may print a worker's line twice) and timestamped with this
client's clock, which is what the timings of the result use.
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable

from dku_ray.errors import JobError
from dku_ray.progress import RoundProgress
from dku_ray.ray_jobs import TERMINAL, RayJobs

EVENT_PREFIX = "DKU_RAY_EVENT "
# Ray Train's own per-report lines: correct but noisy next to the progress bar.
_NOISE = ("Reporting training result", "Checkpoint successfully created", "Training finished iteration")


class DeadlineExceeded(JobError):
    """The job ran past its timeout; the caller stops it."""


def parse_event(line: str) -> dict[str, Any] | None:
    at = line.find(EVENT_PREFIX)
    if at < 0:
        return None
    try:
        event = json.loads(line[at + len(EVENT_PREFIX):].strip())
    except ValueError:
        return None
    return event if isinstance(event, dict) and "kind" in event else None


class JobEvents:
    """The events of one job, deduplicated, with the client time each was first seen."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._ids: set[str] = set()
        self.first_seen: dict[str, float] = {}  # kind -> time.time() of the first event of that kind

    def add(self, event: dict[str, Any]) -> bool:
        key = str(event.get("id") or json.dumps(event, sort_keys=True))
        if key in self._ids:
            return False
        self._ids.add(key)
        self.events.append(event)
        self.first_seen.setdefault(str(event["kind"]), time.time())
        return True

    def feed_text(self, text: str) -> None:
        for line in text.splitlines():
            event = parse_event(line)
            if event is not None:
                self.add(event)

    def last(self, kind: str) -> dict[str, Any] | None:
        for event in reversed(self.events):
            if event["kind"] == kind:
                return event
        return None

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]


def _describe(event: dict[str, Any]) -> str | None:
    kind = event["kind"]
    if kind == "plan":
        return (f"[dku_ray] data: {event.get('train_files')} file(s), {event.get('features')} feature(s) "
                f"({len(event.get('categorical') or [])} categorical), task {event.get('task')} ({event.get('objective')})")
    if kind == "data_loaded" and event.get("rank") == 0:
        return (f"[dku_ray] data loaded by every worker in {event.get('max_read_s', 0):.1f} s read + "
                f"{event.get('max_encode_s', 0) + event.get('max_dmatrix_s', 0):.1f} s preparation")
    if kind == "checkpoint":
        return f"[dku_ray] checkpoint at round {event.get('round')} ({event.get('name')})"
    if kind == "finished":
        return f"[dku_ray] finished: {event.get('rounds')} rounds, model at {event.get('model')}"
    if kind == "failed":
        return f"[dku_ray] failed: {event.get('message')}"
    return None


def follow(jobs: RayJobs, job_id: str, events: JobEvents, progress: RoundProgress, stream_logs: bool,
           deadline: float | None, on_line: Callable[[str], None] | None = None) -> str:
    """Stream until the job is terminal; returns its status. Raises DeadlineExceeded past `deadline`
    (time.time()); KeyboardInterrupt goes to the caller, which stops the job."""
    partial = ""
    for chunk in jobs.tail(job_id):
        if deadline is not None and time.time() > deadline:
            raise DeadlineExceeded(f"Job {job_id} ran past its timeout.", job_id=job_id, status="RUNNING")
        if chunk is None:
            continue
        partial += chunk
        lines = partial.split("\n")
        partial = lines.pop()
        for line in lines:
            _handle_line(line, events, progress, stream_logs, on_line)
    if partial:
        _handle_line(partial, events, progress, stream_logs, on_line)
    while True:  # the websocket ended: the job is terminal, or the tail broke and we poll
        status = jobs.status(job_id)
        if status in TERMINAL:
            break
        if deadline is not None and time.time() > deadline:
            raise DeadlineExceeded(f"Job {job_id} ran past its timeout.", job_id=job_id, status=status)
        time.sleep(1.0)
    try:  # catch events the stream may have missed (dedup keeps this idempotent)
        before = len(events.events)
        events.feed_text(jobs.logs(job_id))
        for event in events.events[before:]:
            _show_event(event, progress)
    except JobError:
        pass
    return status


def _handle_line(line: str, events: JobEvents, progress: RoundProgress, stream_logs: bool,
                 on_line: Callable[[str], None] | None) -> None:
    event = parse_event(line)
    if event is None:
        if on_line is not None:
            on_line(line)
        if stream_logs and line.strip() and not any(n in line for n in _NOISE):
            progress.write(line)
        return
    if events.add(event):
        _show_event(event, progress)


def _show_event(event: dict[str, Any], progress: RoundProgress) -> None:
    kind = event["kind"]
    if kind == "train_started":
        progress.start(int(event.get("total") or 0), int(event.get("start_round") or 0))
    elif kind == "round":
        if not progress.total:
            progress.start(int(event.get("total") or 0))
        progress.update(int(event.get("round") or 0), event.get("metrics") or {})
    text = _describe(event)
    if text:
        progress.write(text)
