"""Reach a RayCluster's Jobs API from where `submit()` runs, without a hand-copied pod IP.

The tutorial pasted the head pod's IP from Inspect into the notebook. Here the endpoint comes
from the lifecycle code: the head Service's DNS name when this machine resolves and reaches it
(DSS inside the cluster), else the head pod's IP when the pod network is routable (EKS VPC-CNI),
else a dashboard tunnel through the Kubernetes API. The cluster's auth token is added when it
has one.
"""
from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass
from typing import Any, Iterator

from .constants import PORT_DASHBOARD
from .endpoint import RayEndpoint
from .errors import DkuRayError
from .kube_client import KubeTarget, connect
from .kube_rest import Kube
from .dashboard_tunnel import ClusterRef, Tunnel
from .tunnel_pod import HeadPodFinder


@dataclass(frozen=True)
class DSSClusterRef:
    """A Ray cluster on a DSS-managed Kubernetes cluster: `"eks-prod"`, `"eks-prod/ray"` or `"eks-prod/ns/ray"`."""

    dss_cluster: str
    name: str = "ray"
    namespace: str | None = None

    @classmethod
    def parse(cls, text: str) -> "DSSClusterRef":
        parts = [p for p in text.split("/") if p]
        if len(parts) == 1:
            return cls(parts[0])
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        if len(parts) == 3:
            return cls(parts[0], parts[2], parts[1])
        raise ValueError(f"{text!r} is not '<DSS cluster>[/<namespace>]/<Ray cluster>'")


def as_cluster_ref(value: Any) -> ClusterRef | DSSClusterRef | None:
    """The cluster reference in `value`, or None when it is something else (e.g. a dashboard URL)."""
    if isinstance(value, (ClusterRef, DSSClusterRef)):
        return value
    if isinstance(value, str) and value and "://" not in value:
        return DSSClusterRef.parse(value)
    return None


@contextlib.contextmanager
def cluster_endpoint(ref: ClusterRef | DSSClusterRef, dss_client: Any = None, route: str = "auto",
                     probe_timeout: float = 0.5) -> Iterator[RayEndpoint]:
    """Yield the Jobs API endpoint of `ref` for as long as it is needed (a tunnel closes afterwards).

    `route` is "auto", "direct" (Service DNS or pod IP only) or "tunnel".
    """
    kube, default_namespace = _connect(ref, dss_client)
    name, namespace = ref.name, ref.namespace or default_namespace
    try:
        finder = HeadPodFinder(kube, name, namespace)
        raycluster = finder.raycluster()  # ClusterNotFoundError with the fix when it does not exist
        if route in ("auto", "direct"):
            url = _reachable_url(kube, raycluster, namespace, probe_timeout)
            if url is not None:
                auth = finder.auth(raycluster)
                yield RayEndpoint.with_token(url, finder.read_token(auth) if auth.token else None)
                return
            if route == "direct":
                raise DkuRayError(f"The Ray cluster {namespace}/{name} is not reachable directly from here (neither "
                                  "its Service DNS name nor its head pod IP answers). Use route='auto' to go through "
                                  "a tunnel.")
        with Tunnel(kube, name, namespace).start() as tunnel:
            yield RayEndpoint(tunnel.url, tunnel.headers)
    finally:
        kube.api_client.close()


def _connect(ref: ClusterRef | DSSClusterRef, dss_client: Any) -> tuple[Kube, str]:
    if isinstance(ref, DSSClusterRef):
        from .dss_cluster import dss_client as default_dss_client, kubeconfig_for_dss_cluster

        return connect(KubeTarget(kubeconfig_for_dss_cluster(dss_client or default_dss_client(), ref.dss_cluster)))
    return connect(KubeTarget.from_env(ref.kubeconfig, ref.context))


def _reachable_url(kube: Kube, raycluster: dict[str, Any], namespace: str, timeout: float) -> str | None:
    """The first of Service DNS name and head pod IP that accepts a TCP connection on 8265."""
    head = (raycluster.get("status") or {}).get("head") or {}
    service = head.get("serviceName") or f"{raycluster['metadata']['name']}-head-svc"
    candidates = [f"{service}.{namespace}.svc.cluster.local"]
    if head.get("podIP"):
        candidates.append(str(head["podIP"]))
    for host in candidates:
        if _accepts(host, PORT_DASHBOARD, timeout):
            return f"http://{host}:{PORT_DASHBOARD}"
    return None


def _accepts(host: str, port: int, timeout: float) -> bool:
    """Whether `host:port` takes a TCP connection within `timeout`, name resolution included."""
    outcome: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                outcome.append(True)
        except OSError:
            outcome.append(False)

    worker = threading.Thread(target=attempt, name="dku-ray-probe", daemon=True)  # DNS has no timeout of its own
    worker.start()
    worker.join(2 * timeout)
    return bool(outcome and outcome[0])
