"""What `submit()` gives back: a `TrainingJob` handle while it runs, a `TrainingResult` at the end.

The handle owns the job from the client's side: on timeout, Ctrl-C or an error while waiting it
stops the Ray job, and if the job could not mark its run directory as failed (killed, or its
credentials were refused) the client writes `_FAILED` and `status.json` itself.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import time
from dataclasses import dataclass, field
from typing import Any

from dku_ray.errors import DkuRayError, JobError, StorageError
from dku_ray.job_monitor import DeadlineExceeded, JobEvents, follow
from dku_ray.locations import Location, child, list_names, read_bytes, write_bytes
from dku_ray.progress import RoundProgress
from dku_ray.ray_jobs import TERMINAL, RayJobs
from dku_ray.trained_model import TrainedModel

SUCCESS_MARKER, FAILED_MARKER, STATUS_FILE = "_SUCCESS", "_FAILED", "status.json"


@dataclass
class TrainingResult:
    job_id: str
    run_id: str
    status: str
    run_dir: str
    model_uri: str | None
    model_card_uri: str | None
    metrics_uri: str | None
    plot_uri: str | None
    checkpoint_uri: str | None
    rounds: int | None
    metrics_history: list[dict[str, Any]]
    final_metrics: dict[str, Any]
    timings: dict[str, float]
    message: str | None = None
    run_location: Location | None = field(default=None, repr=False)
    checkpoint_location: Location | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        shown = {k: round(v, 4) for k, v in self.final_metrics.items() if isinstance(v, float)}
        return (f"TrainingResult(status={self.status!r}, job_id={self.job_id!r}, rounds={self.rounds}, "
                f"run_dir={self.run_dir!r}, final_metrics={shown}, total_s={self.timings.get('total_s')})")

    def load_model(self) -> TrainedModel:
        if self.run_location is None or self.model_uri is None:
            raise DkuRayError(f"Run {self.run_id} has no model ({self.status}).")
        return TrainedModel.load(self.run_location)

    def model_card(self) -> dict[str, Any]:
        if self.run_location is None:
            raise DkuRayError(f"Run {self.run_id} has no run directory.")
        return json.loads(read_bytes(self.run_location, "model_card.json"))

    def metrics_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.metrics_history)


class TrainingFailed(JobError):
    """The training job failed, was stopped or timed out; `result` holds what is known (checkpoint, metrics)."""

    def __init__(self, message: str, job_id: str, status: str, result: TrainingResult | None) -> None:
        super().__init__(message, job_id=job_id, status=status)
        self.result = result


def _parse_csv(data: bytes) -> list[dict[str, Any]]:
    rows = []
    for row in csv.DictReader(io.StringIO(data.decode())):
        rows.append({k: (int(v) if k == "round" else float(v)) for k, v in row.items() if v not in ("", None)})
    return rows


class TrainingJob:
    """A submitted training job: `status()`, `logs()`, `wait()`, `stop()`."""

    def __init__(self, jobs: RayJobs, job_id: str, run_id: str, run_dir: Location, *, timeout_s: float | None,
                 timings: dict[str, float], t_start: float, resources: contextlib.ExitStack | None = None) -> None:
        self.jobs, self.job_id, self.run_id, self.run_dir = jobs, job_id, run_id, run_dir
        self.timeout_s = timeout_s
        self.timings = dict(timings)
        self.t_start = t_start  # time.time() when submit() was called
        self.events = JobEvents()
        self._resources = resources or contextlib.ExitStack()
        self._result: TrainingResult | None = None

    def __repr__(self) -> str:
        return f"TrainingJob({self.job_id!r}, run_dir={self.run_dir.uri!r})"

    def status(self) -> str:
        return self.jobs.status(self.job_id)

    def close(self) -> None:
        """Release the cluster connection (e.g. the dashboard tunnel) without stopping the job."""
        self._resources.close()

    def logs(self) -> str:
        return self.jobs.logs(self.job_id)

    def stop(self, reason: str = "stopped by the user", wait_s: float = 60.0) -> str:
        """Stop the Ray job, wait for it to end, make sure the run directory says it failed."""
        status = self.jobs.status(self.job_id)
        if status not in TERMINAL:
            self.jobs.stop(self.job_id)
            end = time.time() + wait_s
            while status not in TERMINAL and time.time() < end:
                time.sleep(0.5)
                status = self.jobs.status(self.job_id)
        self.ensure_marker(status, reason)
        return status

    def ensure_marker(self, status: str, message: str) -> bool:
        """Write `_FAILED` + status.json unless the job left a marker; False if storage refused."""
        try:
            names = list_names(self.run_dir)
            if SUCCESS_MARKER in names or FAILED_MARKER in names:
                return True
            body = {"state": "FAILED", "ray_status": status, "run_id": self.run_id, "job_id": self.job_id,
                    "message": message, "written_by": "client",
                    "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            write_bytes(self.run_dir, STATUS_FILE, json.dumps(body, indent=1).encode())
            write_bytes(self.run_dir, FAILED_MARKER, message.encode())
            return True
        except (StorageError, OSError):
            return False

    def wait(self, timeout_s: float | None = None, show_progress: bool = True, stream_logs: bool = True) -> TrainingResult:
        """Follow the job to its end. Raises TrainingFailed unless it succeeded; stops it on timeout or Ctrl-C."""
        if self._result is not None:
            return self._result
        limit = timeout_s if timeout_s is not None else self.timeout_s
        deadline = self.t_start + limit if limit else None
        progress = RoundProgress(enabled=show_progress)
        try:
            status = follow(self.jobs, self.job_id, self.events, progress, stream_logs, deadline)
        except KeyboardInterrupt:
            progress.close()
            self._abort("interrupted (KeyboardInterrupt) while waiting; the Ray job was stopped")
            raise
        except DeadlineExceeded:
            progress.close()
            message = f"Job {self.job_id} did not finish within {limit:.0f} s; it was stopped."
            status = self._abort(message)
            raise TrainingFailed(message, self.job_id, status, self._collect(status, message)) from None
        except Exception as exc:  # noqa: BLE001 - an unexpected client error: do not leave the job running
            progress.close()
            with contextlib.suppress(Exception):
                self._abort(f"the client failed while following the job ({type(exc).__name__}); it was stopped")
            raise
        finally:
            progress.close()
        try:
            result = self._collect(status, None)
        finally:
            self._resources.close()
        if status != "SUCCEEDED" or result.status != "SUCCEEDED":
            raise TrainingFailed(result.message or f"Job {self.job_id} ended with status {status}.",
                                 self.job_id, status, result)
        self._result = result
        return result

    def _abort(self, message: str) -> str:
        try:
            return self.stop(message)
        finally:
            self._resources.close()

    def _failure_message(self, status: str) -> str:
        failed = self.events.last("failed")
        if failed and failed.get("message"):
            return str(failed["message"])
        try:
            info = self.jobs.info(self.job_id)
            text = (info.message or "").strip()
        except JobError:
            text = ""
        tail = text.splitlines()[-1] if text else ""
        return (f"Job {self.job_id} ended with status {status}"
                + (f": {tail}" if tail else "") + f". See TrainingJob.logs() or the Ray dashboard for job {self.job_id}.")

    def _collect(self, status: str, message: str | None) -> TrainingResult:
        """Build the result from the run directory (authoritative) and the events."""
        state: dict[str, Any] = {}
        history: list[dict[str, Any]] = []
        names: list[str] = []
        with contextlib.suppress(StorageError, OSError, ValueError):
            names = list_names(self.run_dir)
            if STATUS_FILE in names:
                state = json.loads(read_bytes(self.run_dir, STATUS_FILE))
            if "metrics.csv" in names:
                history = _parse_csv(read_bytes(self.run_dir, "metrics.csv"))
        if status != "SUCCEEDED" or state.get("state") != "SUCCEEDED":
            message = message or state.get("message") or self._failure_message(status)
            self.ensure_marker(status, message)
        if not history:
            history = [{"round": e["round"], **(e.get("metrics") or {})} for e in self.events.all("round")]
        finished = self.events.last("finished") or {}
        job_timings = dict(finished.get("timings") or {})
        now = time.time()
        timings = dict(self.timings)
        timings.update({k: v for k, v in job_timings.items()})
        if "read_s" in job_timings:
            timings["data_load_s"] = round(sum(job_timings.get(k, 0.0)
                                               for k in ("connect_s", "read_s", "encode_s", "dmatrix_s")), 3)
        first_round = self.events.first_seen.get("round")
        if first_round:
            timings["to_first_round_s"] = round(first_round - self.t_start, 3)
        timings["total_s"] = round(now - self.t_start, 3)
        ckpt_uri = state.get("checkpoint") or finished.get("checkpoint")
        ckpt_loc = None
        if ckpt_uri:
            ckpt_loc = child(self.run_dir, ckpt_uri.rstrip("/").rsplit("/", 1)[-1])
        ok = state.get("state") == "SUCCEEDED"

        def uri_of(name: str) -> str | None:
            return child(self.run_dir, name).uri if name in names else None

        return TrainingResult(
            job_id=self.job_id, run_id=self.run_id, status="SUCCEEDED" if ok and status == "SUCCEEDED" else status,
            run_dir=self.run_dir.uri, model_uri=uri_of("model.ubj") if ok else None,
            model_card_uri=uri_of("model_card.json"), metrics_uri=uri_of("metrics.csv"),
            plot_uri=uri_of("learning_curve.png"), checkpoint_uri=ckpt_uri, rounds=state.get("rounds"),
            metrics_history=history,
            final_metrics={k: v for k, v in (state.get("metrics") or (history[-1] if history else {})).items()
                           if k not in ("round", "round_s")},
            timings=timings, message=message, run_location=self.run_dir, checkpoint_location=ckpt_loc)
