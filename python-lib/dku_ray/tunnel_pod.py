"""Which pod the dashboard tunnel talks to, and how the cluster is protected.

The head pod is found by KubeRay's labels, never by name: KubeRay recreates a deleted or
failed head under a new name, and a tunnel that pinned the old name (as `kubectl port-forward
service/...` does) dies for good. Pods being deleted are skipped; a Ready pod wins over a
merely Running one, and the newest wins among equals.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from . import kube_rest as kr
from .constants import AUTH_TOKEN_KEY, LABEL_CLUSTER, LABEL_NODE_TYPE
from .errors import ClusterNotFoundError, KubernetesError


@dataclass(frozen=True)
class HeadPod:
    """The pod the tunnel forwards to."""

    name: str
    uid: str
    ready: bool


@dataclass(frozen=True)
class ClusterAuth:
    """How the RayCluster protects its dashboard and Jobs API (from `spec.authOptions`)."""

    token: bool
    secret_name: str | None = None  # the Secret KubeRay fills with the token, key `auth_token`

    def describe(self) -> str:
        if not self.token:
            return "no authentication"
        return f"token auth (Secret {self.secret_name}, key {AUTH_TOKEN_KEY})"


def head_selector(name: str) -> str:
    return f"{LABEL_CLUSTER}={name},{LABEL_NODE_TYPE}=head"


def missing_cluster(name: str, namespace: str) -> ClusterNotFoundError:
    return ClusterNotFoundError(
        f"There is no RayCluster {name!r} in namespace {namespace!r}. Check the Ray cluster name and the "
        "namespace, or start the cluster first (Start Ray Cluster macro, or `python -m dku_ray cluster start`).")


class HeadPodFinder:
    """Looks up the current head pod of one RayCluster through the Kubernetes API."""

    def __init__(self, kube: kr.Kube, name: str, namespace: str) -> None:
        self.kube = kube
        self.name = name
        self.namespace = namespace

    def raycluster(self) -> dict[str, Any]:
        """The RayCluster object; ClusterNotFoundError when it does not exist (any more)."""
        obj = self.kube.get(kr.RAYCLUSTER, self.name, self.namespace)
        if obj is None:
            raise missing_cluster(self.name, self.namespace)
        return obj

    def auth(self, raycluster: dict[str, Any] | None = None) -> ClusterAuth:
        options = ((raycluster or self.raycluster()).get("spec") or {}).get("authOptions") or {}
        if options.get("mode") != "token":
            return ClusterAuth(False)
        return ClusterAuth(True, options.get("secretName") or self.name)

    def head(self) -> HeadPod | None:
        """The pod to forward to now, or None while no head pod runs (starting, restarting)."""
        pods = self.kube.list(kr.POD, self.namespace, label_selector=head_selector(self.name))
        best: tuple[Any, ...] | None = None
        for pod in pods:
            meta, status = pod.get("metadata") or {}, pod.get("status") or {}
            if meta.get("deletionTimestamp") or status.get("phase") != "Running":
                continue
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
            key = (ready, meta.get("creationTimestamp") or "", meta.get("name") or "")
            if best is None or key > best[0]:
                best = (key, HeadPod(str(meta.get("name")), str(meta.get("uid") or ""), ready))
        return best[1] if best else None

    def read_token(self, auth: ClusterAuth) -> str | None:
        """The cluster's auth token, or None (no token auth, no Secret yet, or not allowed to read it).

        The token is a secret: it is returned, never logged nor put in a message.
        """
        if not auth.token or not auth.secret_name:
            return None
        try:
            secret = self.kube.get(kr.SECRET, auth.secret_name, self.namespace)
        except KubernetesError as exc:
            if exc.status == 403:
                return None
            raise
        raw = ((secret or {}).get("data") or {}).get(AUTH_TOKEN_KEY)
        if not raw:
            return None
        return base64.b64decode(raw).decode("utf-8").strip() or None
