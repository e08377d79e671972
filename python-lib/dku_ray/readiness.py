"""Decide whether a RayCluster is really ready, and if not, say why in words a user can act on.

Pure functions over the RayCluster, its pods and events (plain dicts from the API). `state:
ready` alone is not trusted (it could be reported while pods were Pending, kuberay#2188):
we require the head to be ready, the status to describe the latest spec, and every desired
worker to be ready.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from .constants import LABEL_GROUP, LABEL_NODE_TYPE

_IMAGE_REASONS = {"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"}
_SCHEDULING_HINTS = {
    "Insufficient cpu": "ask for fewer CPUs per Ray pod, fewer workers, or add nodes",
    "Insufficient memory": "ask for less memory per Ray pod, fewer workers, or add nodes",
    "Insufficient nvidia.com/gpu": "ask for fewer GPUs, or add GPU nodes",
    "didn't match Pod's node affinity/selector": "check the nodeSelector against the labels of your nodes",
    "untolerated taint": "add a toleration for the nodes' taint, or target other nodes",
}


@dataclass(frozen=True)
class Readiness:
    ready: bool
    ready_pods: int
    desired_pods: int
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def summary(self) -> str:
        return f"{self.ready_pods}/{self.desired_pods} Ray pods ready"


def condition(obj: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == name:
            return cond
    return None


def desired_workers(raycluster: Mapping[str, Any]) -> int:
    """Desired worker pods from the spec (replicas clamped like KubeRay does, to report, not to hide)."""
    total = 0
    for group in (raycluster.get("spec") or {}).get("workerGroupSpecs") or []:
        if group.get("suspend"):
            continue
        replicas = group.get("replicas", group.get("minReplicas", 0)) or 0
        low, high = group.get("minReplicas", 0) or 0, group.get("maxReplicas", replicas)
        total += max(low, min(replicas, high if high is not None else replicas)) * (group.get("numOfHosts") or 1)
    return total


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    ready = condition(pod, "Ready")
    return (pod.get("status") or {}).get("phase") == "Running" and bool(ready and ready.get("status") == "True")


def evaluate(raycluster: Mapping[str, Any], pods: Iterable[Mapping[str, Any]],
             events: Iterable[Mapping[str, Any]] = ()) -> Readiness:
    """Ready or not, with the reasons when not."""
    pods = list(pods)
    status = raycluster.get("status") or {}
    metadata = raycluster.get("metadata") or {}
    head_pods = [p for p in pods if _labels(p).get(LABEL_NODE_TYPE) == "head"]
    worker_pods = [p for p in pods if _labels(p).get(LABEL_NODE_TYPE) == "worker"]
    wanted_workers = desired_workers(raycluster)
    ready_workers = sum(1 for p in worker_pods if pod_is_ready(p))
    head_ready = any(pod_is_ready(p) for p in head_pods)
    head_condition = condition(raycluster, "HeadPodReady")
    reasons: list[str] = []
    if head_condition is not None and head_condition.get("status") != "True" and head_ready:
        head_ready = False  # the operator has not seen it yet
    current = (status.get("observedGeneration") or 0) >= (metadata.get("generation") or 0)
    status_workers = status.get("readyWorkerReplicas")
    counted = status_workers is None or status_workers >= wanted_workers
    ready = head_ready and current and counted and ready_workers >= wanted_workers
    if not ready:
        reasons = diagnose(raycluster, pods, events)
        if not reasons:
            if not head_pods:
                reasons.append("the head pod has not been created yet")
            if not current:
                reasons.append("the operator has not processed the latest change yet")
    return Readiness(ready, int(head_ready) + min(ready_workers, wanted_workers), 1 + wanted_workers, tuple(reasons))


def diagnose(raycluster: Mapping[str, Any], pods: Iterable[Mapping[str, Any]],
             events: Iterable[Mapping[str, Any]] = ()) -> list[str]:
    """Why pods are not ready: scheduling, image pulls, crashes, quota and operator failures."""
    reasons: list[str] = []
    for pod in pods:
        reason = pod_problem(pod)
        if reason:
            reasons.append(f"{pod['metadata']['name']}: {reason}")
    failure = condition(raycluster, "ReplicaFailure")
    if failure and failure.get("status") == "True":
        reasons.append(f"KubeRay could not create pods: {failure.get('message') or failure.get('reason')}"
                       + _quota_hint(str(failure.get("message", ""))))
    seen = set(reasons)
    for event in sorted(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or "")):
        if event.get("type") != "Warning":
            continue
        message = (event.get("message") or "").strip()
        involved = (event.get("involvedObject") or {}).get("name", "")
        if event.get("reason") in ("FailedToCreateHeadPod", "FailedToCreateWorkerPod", "FailedCreate"):
            line = f"{involved}: {message}{_quota_hint(message)}"
        elif event.get("reason") == "FailedScheduling" and not any(involved in r for r in reasons):
            line = f"{involved}: cannot be scheduled: {message}{_scheduling_hint(message)}"
        else:
            continue
        if line not in seen:
            seen.add(line)
            reasons.append(line)
    return reasons


def pod_problem(pod: Mapping[str, Any]) -> str | None:
    """One line on what keeps this pod from being ready, or None if nothing is visibly wrong."""
    status = pod.get("status") or {}
    scheduled = condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        message = scheduled.get("message") or scheduled.get("reason") or "no node fits"
        return f"cannot be scheduled: {message}{_scheduling_hint(message)}"
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in _IMAGE_REASONS:
            return (f"cannot pull image {container.get('image')} ({reason}): {waiting.get('message', '')}".rstrip(": ")
                    + "; check the image repository and tag, and imagePullSecrets for a private registry")
        if reason == "CrashLoopBackOff":
            last = (container.get("lastState") or {}).get("terminated") or {}
            exit_info = f", last exit code {last.get('exitCode')} ({last.get('reason')})" if last else ""
            return (f"container {container.get('name')} keeps crashing ({container.get('restartCount', 0)} restarts"
                    f"{exit_info}); read its logs")
        if reason in ("CreateContainerConfigError", "CreateContainerError", "RunContainerError"):
            return f"container {container.get('name')} cannot start ({reason}): {waiting.get('message', '')}"
        terminated = (container.get("lastState") or {}).get("terminated") or {}
        if terminated.get("reason") == "OOMKilled" and not container.get("ready"):
            return f"container {container.get('name')} ran out of memory (OOMKilled); give the Ray pod more memory"
    if status.get("phase") == "Failed":
        return f"failed: {status.get('reason') or ''} {status.get('message') or ''}".strip()
    return None


def group_of(pod: Mapping[str, Any]) -> str:
    return _labels(pod).get(LABEL_GROUP) or _labels(pod).get(LABEL_NODE_TYPE) or "?"


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _scheduling_hint(message: str) -> str:
    hints = [hint for key, hint in _SCHEDULING_HINTS.items() if key in message]
    return f" ({'; '.join(hints)})" if hints else ""


def _quota_hint(message: str) -> str:
    if "exceeded quota" in message:
        return " (the namespace's ResourceQuota is full: ask for less, or ask an admin to raise the quota)"
    return ""
