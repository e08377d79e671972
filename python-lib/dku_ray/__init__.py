"""dku_ray: Ray on Kubernetes (KubeRay) from Dataiku DSS, and distributed XGBoost training.

    import dku_ray
    clusters = dku_ray.RayClusterClient.from_kubeconfig("~/.kube/config")
    clusters.start(dku_ray.parse_values({"worker": {"replicas": 2}}).spec)
    with dku_ray.tunnel(dku_ray.ClusterRef("~/.kube/config", "ray")) as url:
        ...
    result = dku_ray.submit("my_dataset", label="target", folder="FoLdEr12", cluster=...)

Names are imported on first use, so `import dku_ray` is cheap and starts nothing.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RayClusterClient": "lifecycle", "StartResult": "lifecycle", "StopResult": "lifecycle",
    "ClusterSpec": "cluster_spec", "parse_values": "cluster_values",
    "OperatorSettings": "operator", "ManifestSource": "operator_manifests",
    "ClusterReport": "cluster_status", "KubeTarget": "kube_client",
    "tunnel": "dashboard_tunnel", "open_tunnel": "dashboard_tunnel", "Tunnel": "dashboard_tunnel",
    "ClusterRef": "dashboard_tunnel", "TunnelURL": "dashboard_tunnel", "TunnelStats": "tunnel_stats",
    "DSSClusterRef": "cluster_endpoint",
    "submit": "submit", "RayEndpoint": "endpoint", "TrainingOptions": "training_options",
    "TrainingResult": "training_result", "TrainingJob": "training_result", "TrainingFailed": "training_result",
    "TrainedModel": "trained_model",
    "DkuRayError": "errors", "SpecError": "errors", "PreflightError": "errors", "JobError": "errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dku_ray' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
