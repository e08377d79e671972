"""Thin adapter over Ray's Jobs API (`JobSubmissionClient`) and a few read-only dashboard endpoints.

Everything that talks HTTP to the Ray dashboard is here, with the endpoint's auth headers, so
the rest of dku_ray deals with plain values and DkuRayError messages. Log tailing runs the SDK's
async websocket in a thread of its own: a notebook already runs an event loop in the main thread,
where `asyncio.run` is not allowed, and the main thread must stay free to see Ctrl-C.
"""
from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from dku_ray.endpoint import RayEndpoint
from dku_ray.errors import DkuRayError, JobError

if TYPE_CHECKING:
    from ray.job_submission import JobDetails, JobSubmissionClient

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
_END = object()


class RayJobs:
    """Submit, watch and stop jobs on one cluster."""

    def __init__(self, endpoint: RayEndpoint, http_timeout: float = 30.0) -> None:
        self.endpoint = endpoint
        self.http_timeout = http_timeout
        self._client: "JobSubmissionClient | None" = None

    @property
    def client(self) -> "JobSubmissionClient":
        if self._client is None:
            from ray.job_submission import JobSubmissionClient

            try:
                self._client = JobSubmissionClient(self.endpoint.url, headers=dict(self.endpoint.headers))
            except Exception as exc:  # noqa: BLE001 - the SDK raises ConnectionError/RuntimeError/AuthenticationError
                raise DkuRayError(self._explain(exc, "Connecting to the Ray dashboard")) from None
        return self._client

    def _explain(self, exc: BaseException, what: str) -> str:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        low = text.lower()
        if "401" in text or "missing authentication token" in low or "authentication required" in low:
            hint = ("The cluster requires a Ray auth token: pass cluster=RayEndpoint.with_token(url, token) "
                    "or set RAY_AUTH_TOKEN.")
        elif "403" in text or "invalid authentication token" in low:
            hint = "The Ray auth token was refused: check that it is the token of this cluster."
        elif "connect" in low or "refused" in low or "timed out" in low:
            hint = "Check the URL, and that the dashboard tunnel (port-forward) is open."
        else:
            hint = ""
        return f"{what} at {self.endpoint.url} failed: {text}. {hint}".strip()

    # -- dashboard reads ---------------------------------------------------------------------
    def get_json(self, path: str) -> Any:
        req = urllib.request.Request(self.endpoint.url + path, headers=dict(self.endpoint.headers))
        try:
            with urllib.request.urlopen(req, timeout=self.http_timeout) as resp:
                return json.loads(resp.read().decode())
        except urllib.error.HTTPError as exc:
            raise DkuRayError(self._explain(RuntimeError(f"HTTP {exc.code} {exc.reason}"), f"GET {path}")) from None
        except (OSError, ValueError) as exc:
            raise DkuRayError(self._explain(exc, f"GET {path}")) from None

    def cluster_versions(self) -> dict[str, str | None]:
        """Ray and Python versions of the cluster (from its metadata; Ray's version endpoint as fallback)."""
        try:
            data = self.get_json("/api/v0/cluster_metadata").get("data") or {}
        except DkuRayError:
            data = {}
        ray_version = data.get("rayVersion")
        if not ray_version:
            ray_version = self.get_json("/api/version").get("ray_version")
        return {"ray": ray_version, "python": data.get("pythonVersion")}

    def node_resources(self, wait_s: float = 10.0) -> list[dict[str, tuple[float, float]]] | None:
        """Per alive node: {resource: (used, total)}.

        Usage comes from the autoscaler monitor's report, which a fresh head publishes only after a few
        seconds: wait for it up to `wait_s`, then fall back to the nodes' totals (nothing used), or None.
        """
        deadline = time.monotonic() + wait_s
        while True:
            status = (self.get_json("/api/cluster_status").get("data") or {}).get("clusterStatus") or {}
            by_node = (status.get("loadMetricsReport") or {}).get("usageByNode") or {}
            if by_node:
                return [{k: (float(v[0]), float(v[1])) for k, v in usage.items()} for usage in by_node.values()]
            if time.monotonic() > deadline:
                break
            time.sleep(1.0)
        summary = (self.get_json("/nodes?view=summary").get("data") or {}).get("summary") or []
        nodes = [(n.get("raylet") or {}) for n in summary]
        totals = [n.get("resourcesTotal") or {} for n in nodes if n.get("state") == "ALIVE"]
        if not totals:
            return None
        return [{k: (0.0, float(v)) for k, v in t.items()} for t in totals]

    # -- jobs ----------------------------------------------------------------------------------
    def submit(self, entrypoint: str, runtime_env: Mapping[str, Any], submission_id: str,
               metadata: Mapping[str, str] | None = None, retry_s: float = 30.0) -> str:
        """Submit; retry while a fresh head says "No available agent" (its job agent is registering)."""
        deadline = time.monotonic() + retry_s
        while True:
            try:
                return self.client.submit_job(entrypoint=entrypoint, runtime_env=dict(runtime_env),
                                              submission_id=submission_id, metadata=dict(metadata or {}),
                                              entrypoint_num_cpus=0)
            except RuntimeError as exc:
                if "No available agent" in str(exc) and time.monotonic() < deadline:
                    time.sleep(1.0)
                    continue
                raise JobError(self._explain(exc, "Submitting the training job"), job_id=submission_id) from None

    def status(self, job_id: str) -> str:
        try:
            return str(self.client.get_job_status(job_id).value)
        except Exception as exc:  # noqa: BLE001
            raise JobError(self._explain(exc, f"Reading the status of job {job_id}"), job_id=job_id) from None

    def info(self, job_id: str) -> "JobDetails":
        try:
            return self.client.get_job_info(job_id)
        except Exception as exc:  # noqa: BLE001
            raise JobError(self._explain(exc, f"Reading job {job_id}"), job_id=job_id) from None

    def logs(self, job_id: str) -> str:
        try:
            return self.client.get_job_logs(job_id)
        except Exception as exc:  # noqa: BLE001
            raise JobError(self._explain(exc, f"Reading the logs of job {job_id}"), job_id=job_id) from None

    def stop(self, job_id: str) -> bool:
        """Ask Ray to stop the job (SIGTERM to the driver, SIGKILL after RAY_JOB_STOP_WAIT_TIME_S)."""
        try:
            return bool(self.client.stop_job(job_id))
        except Exception as exc:  # noqa: BLE001
            raise JobError(self._explain(exc, f"Stopping job {job_id}"), job_id=job_id) from None

    def tail(self, job_id: str, idle_s: float = 0.5) -> Iterator[str | None]:
        """Yield log chunks as they arrive, and None every `idle_s` without news (to check deadlines).

        Ends when the job ends (Ray closes the websocket). Abandoning the iterator leaves a daemon thread
        that ends with the job.
        """
        chunks: "queue.Queue[Any]" = queue.Queue()
        client = self.client

        async def pump() -> None:
            async for chunk in client.tail_job_logs(job_id):
                chunks.put(chunk)

        def run() -> None:
            try:
                asyncio.run(pump())
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                chunks.put(exc)
            finally:
                chunks.put(_END)

        threading.Thread(target=run, name=f"dku-ray-tail-{job_id}", daemon=True).start()
        while True:
            try:
                item = chunks.get(timeout=idle_s)
            except queue.Empty:
                yield None
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                return  # the websocket failed: the caller falls back to polling the status
            yield item
