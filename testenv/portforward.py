"""Port-forward to pods that reaches local TCP servers, through kwok's ClusterPortForward API.

`kubectl port-forward` / `kubernetes.stream.portforward` go client -> kube-apiserver ->
"kubelet" (kwok's server, the node's InternalIP:kubeletEndpoint) -> kwok dials the
`forwards[].target` of the (Cluster)PortForward that matches the pod.  kwok matches pods only by
namespace and *name*, so a reconciler thread keeps each ClusterPortForward's `matchNames` equal
to the pods currently matching a label selector; a pod recreated under a new name (e.g. a
KubeRay head pod) is picked up within ~0.25 s.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .kube import json_body

GROUP, VERSION, PLURAL = "kwok.x-k8s.io", "v1alpha1", "clusterportforwards"
MANAGED_LABEL = "dku-ray-testenv/port-forward"
# kwok treats an empty matchNames as "every pod": use a name no pod can have while none matches.
NO_POD = "-no-matching-pod-"


@dataclass
class PortForwardHandle:
    """One active forward; `close()` (or leaving the `with` block) removes it."""

    name: str
    namespace: str
    labels: dict[str, str]
    pod_port: int
    target_host: str
    target_port: int
    _owner: "PodPortForwarder | None" = field(default=None, repr=False)
    pods: tuple[str, ...] | None = field(default=None, repr=False)  # last applied matchNames

    @property
    def label_selector(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))

    def close(self) -> None:
        if self._owner is not None:
            self._owner.remove(self)
            self._owner = None

    def __enter__(self) -> "PortForwardHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class PodPortForwarder:
    """Owns the ClusterPortForward objects of one control plane and keeps them up to date."""

    def __init__(self, api_factory: Callable[[], client.ApiClient], interval: float = 0.25) -> None:
        self._api = api_factory()
        self._custom = client.CustomObjectsApi(self._api)
        self._core = client.CoreV1Api(self._api)
        self._interval = interval
        self._handles: dict[str, PortForwardHandle] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: BaseException | None = None

    def start(self) -> "PodPortForwarder":
        self._thread = threading.Thread(target=self._run, name="testenv-port-forwards", daemon=True)
        self._thread.start()
        return self

    def add(self, namespace: str, labels: dict[str, str], pod_port: int, target_host: str,
            target_port: int) -> PortForwardHandle:
        if not labels:
            raise ValueError("pod_selector_labels must not be empty")
        handle = PortForwardHandle(f"testenv-pf-{uuid.uuid4().hex[:10]}", namespace, dict(labels), int(pod_port),
                                   target_host, int(target_port), _owner=self)
        with self._lock:
            self._sync(handle)  # first sync is synchronous: the forward works once add() returns
            self._handles[handle.name] = handle
        return handle

    def remove(self, handle: PortForwardHandle) -> None:
        with self._lock:
            self._handles.pop(handle.name, None)
            try:
                self._custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, handle.name, _preload_content=False)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def _matching_pods(self, handle: PortForwardHandle) -> tuple[str, ...]:
        resp = self._core.list_namespaced_pod(handle.namespace, label_selector=handle.label_selector,
                                              _preload_content=False)
        return tuple(sorted(p["metadata"]["name"] for p in json_body(resp)["items"]))

    def _body(self, handle: PortForwardHandle, pods: tuple[str, ...]) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ClusterPortForward",
            "metadata": {"name": handle.name, "labels": {MANAGED_LABEL: "true"},
                         "annotations": {"dku-ray-testenv/selector": f"{handle.namespace}/{handle.label_selector}"}},
            "spec": {
                "selector": {"matchNamespaces": [handle.namespace], "matchNames": list(pods) or [NO_POD]},
                "forwards": [{"ports": [handle.pod_port],
                              "target": {"address": handle.target_host, "port": handle.target_port}}],
            },
        }

    def _sync(self, handle: PortForwardHandle) -> None:
        pods = self._matching_pods(handle)
        if pods == handle.pods:
            return
        body = self._body(handle, pods)
        if handle.pods is None:
            self._custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, body, _preload_content=False)
        else:
            self._custom.patch_cluster_custom_object(
                GROUP, VERSION, PLURAL, handle.name, {"spec": body["spec"]},
                _content_type="application/merge-patch+json", _preload_content=False)
        handle.pods = pods

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            with self._lock:
                handles = list(self._handles.values())
                try:
                    for handle in handles:
                        self._sync(handle)
                    self.last_error = None
                except Exception as exc:  # noqa: BLE001 - retried next round
                    self.last_error = exc

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for handle in list(self._handles.values()):
            try:
                self.remove(handle)
            except Exception:  # noqa: BLE001 - the control plane is going away anyway
                pass
        self._api.close()
