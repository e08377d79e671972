"""Start, inspect and stop Ray clusters on Kubernetes: the operations behind the macros and the CLI.

`RayClusterClient` is the one entry point; it owns no global state, so several can run in one
process against different clusters. Start is idempotent (server-side apply) and finishes what a
failed earlier run left half-done; Stop deletes the RayCluster first and waits for its pods.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from . import kube_rest as kr
from . import operator as op
from .cluster_spec import ClusterSpec
from .cluster_status import ClusterReport, build, cluster_events, collect
from .constants import LABEL_CLUSTER, LABEL_MANAGED_BY, MANAGED_BY
from .errors import ClusterNotFoundError, ClusterNotReadyError, DkuRayError, KubernetesError, WaitTimeoutError
from .kube_client import KubeTarget, connect
from .readiness import evaluate
from .render_cluster import render_raycluster

Progress = Callable[[str, float], None]  # (message, fraction done in [0, 1])


def _quiet(message: str, fraction: float) -> None:
    pass


@dataclass(frozen=True)
class StartResult:
    name: str
    namespace: str
    change: str  # "created", "updated" or "unchanged"
    operator_actions: tuple[str, ...]
    report: ClusterReport | None
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True)
class StopResult:
    name: str
    namespace: str
    removed: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    already_gone: bool = False
    seconds: float = 0.0


@dataclass
class RayClusterClient:
    """Ray clusters on one Kubernetes cluster, reached through a kubeconfig."""

    kube: kr.Kube
    default_namespace: str = "default"
    poll_seconds: float = 1.0

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None, context: str | None = None) -> "RayClusterClient":
        kube, namespace = connect(KubeTarget.from_env(kubeconfig, context))
        return cls(kube, namespace)

    # -- start ---------------------------------------------------------------------------------
    def start(self, spec: ClusterSpec, operator: op.OperatorSettings | None = None, wait: bool = True,
              timeout: float = 600.0, progress: Progress = _quiet, warnings: tuple[str, ...] = ()) -> StartResult:
        """Create or update the cluster, install the operator if allowed and needed, optionally wait."""
        began = time.monotonic()
        namespace = spec.namespace or self.default_namespace
        operator = operator or op.OperatorSettings(version=spec.kuberay_version)
        if self.kube.get(kr.NAMESPACE, namespace) is None:
            raise KubernetesError(f"The namespace {namespace!r} does not exist. Create it, or choose an existing "
                                  "namespace for the Ray cluster.", status=404)
        actions = op.ensure(self.kube, operator, spec.auth_mode == "token", lambda m: progress(m, 0.05))
        existing = self.kube.get(kr.RAYCLUSTER, spec.name, namespace)
        if existing is not None and (existing["metadata"].get("labels") or {}).get(LABEL_MANAGED_BY) != MANAGED_BY:
            raise DkuRayError(f"A RayCluster named {spec.name!r} already exists in {namespace!r} and was not created by "
                              "dku_ray. Choose another name so that it is left alone.")
        body = render_raycluster(spec, namespace, include_replicas=existing is None)
        progress(f"Applying RayCluster {namespace}/{spec.name}", 0.1)
        applied = self.kube.apply(body)
        change = "created" if existing is None else ("updated" if _changed(existing, applied) else "unchanged")
        report = None
        if wait:
            report = self.wait_ready(spec.name, namespace, timeout, progress, operator=actions[0] if actions else "")
        return StartResult(spec.name, namespace, change, tuple(actions), report, tuple(warnings),
                           time.monotonic() - began)

    def wait_ready(self, name: str, namespace: str | None = None, timeout: float = 600.0,
                   progress: Progress = _quiet, operator: str = "") -> ClusterReport:
        """Wait until the head and every desired worker are ready; on timeout, fail with the reasons."""
        namespace = namespace or self.default_namespace
        deadline = time.monotonic() + timeout
        last = None
        while True:
            raycluster = self.kube.get(kr.RAYCLUSTER, name, namespace)
            if raycluster is None:
                raise ClusterNotFoundError(f"The RayCluster {namespace}/{name} disappeared while waiting for it; "
                                           "someone deleted it. Run Start again.")
            pods = self.kube.list(kr.POD, namespace, label_selector=f"{LABEL_CLUSTER}={name}")
            events = cluster_events(self.kube, namespace, name, pods)
            readiness = evaluate(raycluster, pods, events)
            message = f"{readiness.summary}" + (f": {readiness.reasons[0]}" if readiness.reasons else "")
            if message != last:
                progress(message, 0.1 + 0.9 * readiness.ready_pods / max(readiness.desired_pods, 1))
                last = message
            if readiness.ready:
                return build(raycluster, pods, events, operator)
            if time.monotonic() >= deadline:
                raise ClusterNotReadyError(f"The Ray cluster {namespace}/{name} was not ready after {timeout:.0f} s "
                                           f"({readiness.summary}). It is left as is: fix the cause and run Start "
                                           "again, or Stop it.", readiness.reasons)
            time.sleep(self.poll_seconds)

    # -- inspect -------------------------------------------------------------------------------
    def inspect(self, name: str, namespace: str | None = None) -> ClusterReport:
        """Read-only report; `exists=False` when there is no such RayCluster."""
        namespace = namespace or self.default_namespace
        status = op.detect(self.kube)
        running = status.running
        operator = str(running) if running else ("none running" if status.deployments_visible else "not visible")
        return collect(self.kube, name, namespace, operator)

    def list_clusters(self, namespace: str | None = None) -> list[str]:
        return [c["metadata"]["name"] for c in self.kube.list(kr.RAYCLUSTER, namespace or self.default_namespace)]

    # -- stop ----------------------------------------------------------------------------------
    def stop(self, name: str, namespace: str | None = None, remove_operator: bool = False, timeout: float = 300.0,
             progress: Progress = _quiet) -> StopResult:
        """Delete the RayCluster, wait for its pods to go, then optionally remove our unused operator."""
        began = time.monotonic()
        namespace = namespace or self.default_namespace
        removed: list[str] = []
        kept: list[str] = []
        progress(f"Deleting RayCluster {namespace}/{name}", 0.05)
        existed = self.kube.delete(kr.RAYCLUSTER, name, namespace, propagation="Background") \
            if self._crd_exists() else False
        if existed:
            removed.append(f"RayCluster {namespace}/{name}")
        gone_pods = self._wait_pods_gone(name, namespace, timeout, progress)
        if gone_pods:
            removed.append(f"{gone_pods} Ray pod(s)")
        if remove_operator:
            progress("Removing the KubeRay operator if dku_ray installed it and nothing uses it", 0.9)
            more, kept = op.remove(self.kube, lambda m: progress(m, 0.95))
            removed += more
        progress("Stopped", 1.0)
        return StopResult(name, namespace, tuple(removed), tuple(kept), not existed, time.monotonic() - began)

    def _crd_exists(self) -> bool:
        return self.kube.get(kr.CRD, "rayclusters.ray.io") is not None

    def _wait_pods_gone(self, name: str, namespace: str, timeout: float, progress: Progress) -> int:
        deadline = time.monotonic() + timeout
        first = last = None
        while True:
            pods = self.kube.list(kr.POD, namespace, label_selector=f"{LABEL_CLUSTER}={name}")
            first = len(pods) if first is None else first
            if not pods:
                return first
            if len(pods) != last:
                progress(f"Waiting for {len(pods)} Ray pod(s) to terminate", 0.1 + 0.8 * (1 - len(pods) / max(first, 1)))
                last = len(pods)
            if time.monotonic() >= deadline:
                names = ", ".join(p["metadata"]["name"] for p in pods[:5])
                raise WaitTimeoutError(f"{len(pods)} Ray pod(s) of {namespace}/{name} were still terminating after "
                                       f"{timeout:.0f} s ({names}). The RayCluster is deleted; run Stop again to keep "
                                       "waiting, or check the pods' finalizers.")
            time.sleep(self.poll_seconds)


def _changed(before: dict, after: dict) -> bool:
    """Did our apply change anything? Not resourceVersion: the operator's status updates bump it too."""
    keys = ("generation", "labels", "annotations")
    return any(before["metadata"].get(k) != after["metadata"].get(k) for k in keys)
