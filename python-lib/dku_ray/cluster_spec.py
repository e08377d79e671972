"""Typed, immutable description of a Ray cluster: what the user asked for, already validated.

Build one with `dku_ray.cluster_values.parse_values()` (Helm-style values, the reference
plugin's parameter names, or both); render it with `dku_ray.render_cluster`. Field names
follow KubeRay's RayCluster API where one exists.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from typing import Literal, Mapping

DEFAULT_NAME = "ray"
DEFAULT_KUBERAY_VERSION = "v1.6.2"
DEFAULT_RAY_VERSION = "2.60.0"
DEFAULT_IMAGE_REPOSITORY = "rayproject/ray"
DEFAULT_WORKER_GROUP = "workergroup"

# Oldest versions that know RayCluster.spec.authOptions (token auth on the dashboard and Jobs API).
TOKEN_AUTH_MIN_KUBERAY = (1, 5, 1)
TOKEN_AUTH_MIN_RAY = (2, 52, 0)

AuthMode = Literal["token", "none"]


def local_python_tag() -> str:
    """The `pyXY` suffix of Ray images built for the interpreter running this code."""
    return f"py{sys.version_info.major}{sys.version_info.minor}"


@dataclass(frozen=True)
class Resources:
    """Requests (equal to limits, for the Guaranteed QoS class) of one Ray pod."""

    cpu: str
    memory: str
    gpu: int = 0


@dataclass(frozen=True)
class Image:
    repository: str
    tag: str
    pull_policy: str = "IfNotPresent"

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"


@dataclass(frozen=True)
class PodOptions:
    """Scheduling and metadata options shared by the head and each worker group."""

    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, object], ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HeadSpec:
    resources: Resources
    ray_start_params: Mapping[str, str]
    pod: PodOptions = PodOptions()
    service_type: str = "ClusterIP"


@dataclass(frozen=True)
class WorkerGroupSpec:
    name: str
    replicas: int
    min_replicas: int
    max_replicas: int
    resources: Resources
    ray_start_params: Mapping[str, str] = field(default_factory=dict)
    pod: PodOptions = PodOptions()


@dataclass(frozen=True)
class AutoscalingSpec:
    """KubeRay in-tree autoscaling; worker `replicas` then belongs to the autoscaler."""

    idle_timeout_seconds: int = 60
    upscaling_mode: str = "Default"


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    namespace: str | None
    kuberay_version: str
    ray_version: str
    image: Image
    head: HeadSpec
    workers: tuple[WorkerGroupSpec, ...]
    auth_mode: AuthMode = "none"
    autoscaling: AutoscalingSpec | None = None
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)

    def with_namespace(self, namespace: str) -> "ClusterSpec":
        """The same spec in `namespace` (the kubeconfig default is only known at apply time)."""
        return replace(self, namespace=namespace)

    @property
    def head_service_name(self) -> str:
        return f"{self.name}-head-svc"
