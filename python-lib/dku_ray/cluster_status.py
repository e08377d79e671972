"""Read-only snapshot of one Ray cluster: status, worker groups, pods and endpoints.

`collect()` does the few API reads (scoped to this cluster's `ray.io/cluster` label); `build()`
is pure, so the report logic is tested on plain dicts.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from . import kube_rest as kr
from .constants import LABEL_CLUSTER, LABEL_GROUP, LABEL_MANAGED_BY, LABEL_NODE_TYPE, MANAGED_BY, PORT_CLIENT, \
    PORT_DASHBOARD, PORT_GCS
from .readiness import Readiness, evaluate, pod_is_ready, pod_problem


@dataclass(frozen=True)
class GroupStatus:
    name: str
    desired: int
    ready: int
    min_replicas: int
    max_replicas: int


@dataclass(frozen=True)
class PodRow:
    name: str
    group: str
    phase: str
    ready: str  # "1/1"
    restarts: int
    node: str
    ip: str
    reason: str


@dataclass(frozen=True)
class Endpoints:
    service: str  # in-cluster DNS name of the head Service
    dashboard_port: int = PORT_DASHBOARD
    client_port: int = PORT_CLIENT
    gcs_port: int = PORT_GCS
    head_pod_ip: str | None = None

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.service}:{self.dashboard_port}"

    @property
    def client_url(self) -> str:
        return f"ray://{self.service}:{self.client_port}"


@dataclass(frozen=True)
class ClusterReport:
    name: str
    namespace: str
    exists: bool
    ready: bool = False
    state: str = ""
    conditions: tuple[tuple[str, str, str], ...] = ()  # (type, status, reason: message)
    ray_version: str = ""
    image: str = ""
    auth: str = "none"  # "token (Secret <name>)" when token auth is on; never the token itself
    managed_by_dku_ray: bool = False
    operator: str = ""
    groups: tuple[GroupStatus, ...] = ()
    pods: tuple[PodRow, ...] = ()
    endpoints: Endpoints | None = None
    reasons: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if self.endpoints:
            data["endpoints"].update(dashboard_url=self.endpoints.dashboard_url, client_url=self.endpoints.client_url)
        return data


def collect(kube: kr.Kube, name: str, namespace: str, operator: str = "") -> ClusterReport:
    """One RayCluster read, one pod list and one event list, all scoped to this cluster."""
    raycluster = kube.get(kr.RAYCLUSTER, name, namespace)
    if raycluster is None:
        return ClusterReport(name=name, namespace=namespace, exists=False, operator=operator)
    pods = kube.list(kr.POD, namespace, label_selector=f"{LABEL_CLUSTER}={name}")
    events = cluster_events(kube, namespace, name, pods)
    return build(raycluster, pods, events, operator)


def cluster_events(kube: kr.Kube, namespace: str, name: str, pods: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Warning events about this RayCluster and its pods (one list call, filtered here)."""
    involved = {name} | {p["metadata"]["name"] for p in pods}
    events = kube.list(kr.EVENT, namespace, field_selector="type=Warning")
    return [e for e in events if (e.get("involvedObject") or {}).get("name") in involved]


def build(raycluster: Mapping[str, Any], pods: list[Mapping[str, Any]], events: list[Mapping[str, Any]],
          operator: str = "") -> ClusterReport:
    meta, spec, status = raycluster["metadata"], raycluster.get("spec") or {}, raycluster.get("status") or {}
    readiness: Readiness = evaluate(raycluster, pods, events)
    head = next((p for p in pods if _labels(p).get(LABEL_NODE_TYPE) == "head"), None)
    head_ip = ((head or {}).get("status") or {}).get("podIP") or (status.get("head") or {}).get("podIP")
    service = (status.get("head") or {}).get("serviceName") or f"{meta['name']}-head-svc"
    auth = "none"
    if (spec.get("authOptions") or {}).get("mode") == "token":
        secret = (spec.get("authOptions") or {}).get("secretName") or meta["name"]
        auth = f"token (Secret {secret}, key auth_token)"
    containers = ((spec.get("headGroupSpec") or {}).get("template") or {}).get("spec", {}).get("containers") or [{}]
    return ClusterReport(
        name=meta["name"], namespace=meta["namespace"], exists=True, ready=readiness.ready,
        state=str(status.get("state") or ""),
        conditions=tuple((c.get("type", ""), c.get("status", ""), _reason(c)) for c in status.get("conditions") or []),
        ray_version=str(spec.get("rayVersion") or ""), image=str(containers[0].get("image") or ""), auth=auth,
        managed_by_dku_ray=(meta.get("labels") or {}).get(LABEL_MANAGED_BY) == MANAGED_BY, operator=operator,
        groups=tuple(_groups(spec, pods)), pods=tuple(_pod_row(p) for p in _sorted(pods)),
        endpoints=Endpoints(service=f"{service}.{meta['namespace']}.svc.cluster.local", head_pod_ip=head_ip or None),
        reasons=readiness.reasons,
    )


def _groups(spec: Mapping[str, Any], pods: list[Mapping[str, Any]]) -> list[GroupStatus]:
    head_ready = sum(1 for p in pods if _labels(p).get(LABEL_NODE_TYPE) == "head" and pod_is_ready(p))
    groups = [GroupStatus("head", 1, head_ready, 1, 1)]
    for group in spec.get("workerGroupSpecs") or []:
        name = group.get("groupName", "")
        members = [p for p in pods if _labels(p).get(LABEL_GROUP) == name and _labels(p).get(LABEL_NODE_TYPE) == "worker"]
        replicas = group.get("replicas", group.get("minReplicas", 0)) or 0
        groups.append(GroupStatus(name, replicas * (group.get("numOfHosts") or 1), sum(1 for p in members if pod_is_ready(p)),
                                  group.get("minReplicas", 0) or 0, group.get("maxReplicas", replicas)))
    return groups


def _pod_row(pod: Mapping[str, Any]) -> PodRow:
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    ready = f"{sum(1 for c in containers if c.get('ready'))}/{len(pod['spec'].get('containers') or [])}"
    phase = "Terminating" if pod["metadata"].get("deletionTimestamp") else status.get("phase", "Unknown")
    return PodRow(name=pod["metadata"]["name"], group=_labels(pod).get(LABEL_GROUP, "?"), phase=phase, ready=ready,
                  restarts=sum(int(c.get("restartCount") or 0) for c in containers),
                  node=pod["spec"].get("nodeName") or "", ip=status.get("podIP") or "",
                  reason="" if pod_is_ready(pod) else (pod_problem(pod) or status.get("reason") or ""))


def _sorted(pods: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(pods, key=lambda p: (_labels(p).get(LABEL_NODE_TYPE) != "head", _labels(p).get(LABEL_GROUP, ""),
                                       p["metadata"]["name"]))


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _reason(cond: Mapping[str, Any]) -> str:
    return ": ".join(x for x in (cond.get("reason"), cond.get("message")) if x)
