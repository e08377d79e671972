"""Pure rendering of a ClusterSpec into a RayCluster object (a plain dict, ready for the API).

No I/O here: the same spec always gives the same dict, which golden files pin down.
"""
from __future__ import annotations

from typing import Any, Mapping

from . import constants as k
from .cluster_spec import ClusterSpec, PodOptions, Resources

_LOG_VOLUME = "ray-logs"


def render_raycluster(spec: ClusterSpec, namespace: str, include_replicas: bool = True) -> dict[str, Any]:
    """The RayCluster for `spec` in `namespace`.

    With autoscaling, `replicas` belongs to the autoscaler after creation: pass
    `include_replicas=False` when updating so that our apply does not take it back.
    """
    body: dict[str, Any] = {
        "apiVersion": f"{k.RAY_GROUP}/{k.RAY_VERSION}",
        "kind": k.RAYCLUSTER_KIND,
        "metadata": {
            "name": spec.name,
            "namespace": namespace,
            "labels": {**spec.labels, **ownership_labels(spec.name)},
        },
        "spec": {
            "rayVersion": spec.ray_version,
            "headGroupSpec": _head_group(spec),
            "workerGroupSpecs": [_worker_group(spec, i, include_replicas) for i in range(len(spec.workers))],
        },
    }
    if spec.annotations:
        body["metadata"]["annotations"] = dict(spec.annotations)
    if spec.auth_mode == "token":
        body["spec"]["authOptions"] = {"mode": "token"}
    if spec.autoscaling is not None:
        body["spec"]["enableInTreeAutoscaling"] = True
        body["spec"]["autoscalerOptions"] = {
            "idleTimeoutSeconds": spec.autoscaling.idle_timeout_seconds,
            "upscalingMode": spec.autoscaling.upscaling_mode,
        }
    return body


def ownership_labels(cluster_name: str) -> dict[str, str]:
    """Labels on everything dku_ray creates for one Ray cluster."""
    return {k.LABEL_MANAGED_BY: k.MANAGED_BY, k.LABEL_NAME: "ray-cluster", k.LABEL_INSTANCE: cluster_name}


def _head_group(spec: ClusterSpec) -> dict[str, Any]:
    ports = [
        {"containerPort": k.PORT_GCS, "name": "gcs-server"},
        {"containerPort": k.PORT_DASHBOARD, "name": "dashboard"},
        {"containerPort": k.PORT_CLIENT, "name": "client"},
    ]
    container = _container(spec, k.HEAD_CONTAINER, spec.head.resources, spec.head.pod)
    container["ports"] = ports
    return {
        "serviceType": spec.head.service_type,
        "rayStartParams": dict(spec.head.ray_start_params),
        "template": _pod_template(spec, container, spec.head.pod),
    }


def _worker_group(spec: ClusterSpec, index: int, include_replicas: bool) -> dict[str, Any]:
    group = spec.workers[index]
    rendered: dict[str, Any] = {"groupName": group.name}
    if include_replicas or spec.autoscaling is None:
        rendered["replicas"] = group.replicas
    rendered.update({
        "minReplicas": group.min_replicas,
        "maxReplicas": group.max_replicas,
        "rayStartParams": dict(group.ray_start_params),
        "template": _pod_template(spec, _container(spec, k.WORKER_CONTAINER, group.resources, group.pod), group.pod),
    })
    return rendered


def _pod_template(spec: ClusterSpec, container: dict[str, Any], pod: PodOptions) -> dict[str, Any]:
    metadata: dict[str, Any] = {"labels": {**pod.labels, **ownership_labels(spec.name)}}
    if pod.annotations:
        metadata["annotations"] = dict(pod.annotations)
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [{"name": _LOG_VOLUME, "emptyDir": {}}],
    }
    if pod.node_selector:
        pod_spec["nodeSelector"] = dict(pod.node_selector)
    if pod.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in pod.tolerations]
    if spec.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": name} for name in spec.image_pull_secrets]
    if spec.service_account:
        pod_spec["serviceAccountName"] = spec.service_account
    return {"metadata": metadata, "spec": pod_spec}


def _container(spec: ClusterSpec, name: str, resources: Resources, pod: PodOptions) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": str(spec.image),
        "imagePullPolicy": spec.image.pull_policy,
        "resources": _resources(resources),
        "volumeMounts": [{"name": _LOG_VOLUME, "mountPath": "/tmp/ray"}],
    }
    env = _env({**spec.env, **pod.env})
    if env:
        container["env"] = env
    return container


def _resources(resources: Resources) -> dict[str, dict[str, Any]]:
    amounts: dict[str, Any] = {"cpu": resources.cpu, "memory": resources.memory}
    if resources.gpu:
        amounts["nvidia.com/gpu"] = resources.gpu
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _env(variables: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in sorted(variables.items())]
