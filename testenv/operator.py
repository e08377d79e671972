"""The real KubeRay operator as a local process, started and stopped like a kubelet would.

kwok only pretends to run containers.  The OperatorSupervisor closes that gap for the one
container that matters: while at least one Running pod has a `kuberay/operator` image, exactly
one real ray-operator process runs against the control plane; when the last such pod is gone,
the process is stopped.  So a library that installs (or removes) the operator Deployment gets
(or loses) a real, reconciling operator.

Like a kubelet, it gives the process the pod's identity: a token of the pod's ServiceAccount,
bound to the pod (TokenRequest API).  The operator therefore runs under the RBAC rules that
were installed with it, and a missing permission fails here as it would in a real cluster.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, cast

from kubernetes import client

from . import components as comp
from .kube import delete_ignore_missing, json_body, load_yaml_documents, server_side_apply
from .pki import write_token_kubeconfig
from .procs import ManagedProcess, free_port, wait_for
from .versions import Versions, kuberay_module_dir

OPERATOR_IMAGE_MARKER = "kuberay/operator"
ApiFactory = Callable[[], client.ApiClient]


@dataclass(frozen=True)
class OperatorPod:
    namespace: str
    name: str
    uid: str
    service_account: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def operator_pods(core: client.CoreV1Api) -> list[OperatorPod]:
    """Running, not-terminating pods with a KubeRay operator container, oldest first."""
    resp = core.list_pod_for_all_namespaces(field_selector="status.phase=Running", _preload_content=False)
    items = sorted(json_body(resp)["items"], key=lambda p: p["metadata"]["creationTimestamp"])
    out = []
    for pod in items:
        meta, spec = pod["metadata"], pod["spec"]
        if meta.get("deletionTimestamp"):
            continue
        if any(OPERATOR_IMAGE_MARKER in (c.get("image") or "") for c in spec["containers"]):
            out.append(OperatorPod(meta["namespace"], meta["name"], meta["uid"],
                                   spec.get("serviceAccountName") or "default"))
    return out


def pod_token(core: client.CoreV1Api, pod: OperatorPod, seconds: int = 86400) -> str:
    """A token of the pod's ServiceAccount bound to the pod, as a kubelet would project it."""
    body = {"spec": {"expirationSeconds": seconds,
                     "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod.name, "uid": pod.uid}}}
    resp = core.create_namespaced_service_account_token(pod.service_account, pod.namespace, cast(Any, body),
                                                        _preload_content=False)
    return str(json_body(resp)["status"]["token"])


class OperatorSupervisor:
    """Background thread that keeps one operator process iff operator pods are Running."""

    def __init__(self, api_factory: ApiFactory, layout: comp.Layout, log_dir: Path,
                 log: Callable[[str], None], poll_interval: float = 0.5) -> None:
        self._api_factory = api_factory
        self._layout = layout
        self._log_dir = log_dir
        self._log = log
        self._interval = poll_interval
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.process: ManagedProcess | None = None
        self.bound_pod: OperatorPod | None = None  # whose ServiceAccount token the process uses
        self.probe_port = 0
        self.pods: list[OperatorPod] = []
        self.starts = 0
        self._backoff = 0.0
        self._next_start = 0.0
        self.last_error: BaseException | None = None

    def start(self) -> "OperatorSupervisor":
        self._thread = threading.Thread(target=self._run, name="testenv-operator-supervisor", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        api = self._api_factory()
        core = client.CoreV1Api(api)
        try:
            while not self._stop.is_set():
                try:
                    self.pods = operator_pods(core)
                    self._reconcile(core)
                    self.last_error = None
                except Exception as exc:  # noqa: BLE001 - apiserver hiccup: retry next round
                    self.last_error = exc
                self._stop.wait(self._interval)
        finally:
            api.close()

    def _reconcile(self, core: client.CoreV1Api) -> None:
        with self._lock:
            alive = self.process is not None and self.process.alive()
            if alive and self.bound_pod not in self.pods and self.pods:
                # its pod went away (its token dies with it) but another operator pod runs
                self._log(f"operator pod {self.bound_pod} gone: restarting the operator for {self.pods[0]}")
                self._stop_process()
                alive = False
            if self.pods and not alive:
                if self.process is not None:  # crashed while its pod still runs: restart, like a kubelet
                    code = self.process.proc.returncode if self.process.proc else None
                    self._backoff = min(max(1.0, self._backoff * 2), 10.0)  # CrashLoopBackOff, shortened
                    self._next_start = time.monotonic() + self._backoff
                    self._log(f"kuberay operator exited with {code}; restarting in {self._backoff:.0f}s "
                              f"(log: {self.process.log_path})")
                    self.process = None
                if time.monotonic() >= self._next_start:
                    self._start_process(core, self.pods[0])
            elif not self.pods and self.process is not None:
                self._log(f"no operator pod left: stopping kuberay operator (pid {self.process.pid})")
                self._stop_process()

    def _start_process(self, core: client.CoreV1Api, pod: OperatorPod) -> None:
        self.starts += 1
        lay = self._layout
        kubeconfig = write_token_kubeconfig(
            lay.run_dir / f"operator-{self.starts}.kubeconfig", lay.server, lay.ca.cert, pod_token(core, pod),
            user=f"system:serviceaccount:{pod.namespace}:{pod.service_account}", namespace=pod.namespace)
        self.probe_port = free_port()
        env = dict(os.environ, KUBECONFIG=str(kubeconfig), HOME=str(lay.run_dir), POD_NAMESPACE=pod.namespace)
        self.process = ManagedProcess(f"kuberay-operator-{self.starts}", comp.operator_argv(lay, self.probe_port),
                                      self._log_dir, env=env, cwd=lay.run_dir,
                                      pid_file=lay.run_dir / "pids").start()
        self.bound_pod = pod
        self._log(f"started kuberay operator (pid {self.process.pid}) for pod {pod} "
                  f"as ServiceAccount {pod.namespace}/{pod.service_account}")

    def _stop_process(self) -> None:
        if self.process is not None:
            self.process.stop()
        self.process = None
        self.bound_pod = None

    @property
    def running(self) -> bool:
        proc = self.process
        return proc is not None and proc.alive()

    def healthy(self) -> bool:
        """The operator answers its readiness probe (its manager has started)."""
        if not self.running:
            return False
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.probe_port}/readyz", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def wait_running(self, timeout: float = 120) -> None:
        wait_for(lambda: bool(self.pods) and self.healthy(), timeout=timeout, interval=0.2,
                 what="KubeRay operator pod Running and operator process healthy")

    def wait_stopped(self, timeout: float = 60) -> None:
        wait_for(lambda: self.process is None, timeout=timeout, interval=0.2, what="KubeRay operator stopped")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            self._stop_process()

    def __repr__(self) -> str:
        return f"OperatorSupervisor(running={self.running}, pods={self.pods})"


HELM_LABELS = {
    "app.kubernetes.io/name": "kuberay-operator",
    "app.kubernetes.io/instance": "kuberay-operator",
    "app.kubernetes.io/managed-by": "Helm",
}


class ThirdPartyOperator:
    """The operator "installed by someone else": the objects a Helm install would create."""

    FIELD_MANAGER = "helm"

    def __init__(self, api_factory: ApiFactory, versions: Versions, namespace: str) -> None:
        self._api_factory = api_factory
        self.versions = versions
        self.namespace = namespace
        self.name = "kuberay-operator"

    def manifests(self) -> list[dict[str, Any]]:
        labels = dict(HELM_LABELS, **{"helm.sh/chart": f"kuberay-operator-{self.versions.kuberay.lstrip('v')}"})
        ns, name = self.namespace, self.name
        role = next(d for d in load_yaml_documents([kuberay_module_dir(self.versions) / "config/rbac/role.yaml"])
                    if d["kind"] == "ClusterRole")
        selector = {k: HELM_LABELS[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/instance")}
        return [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns, "labels": labels}},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": name, "labels": labels}, "rules": role["rules"]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": name, "labels": labels},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
             "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": name, "namespace": ns, "labels": labels},
             "spec": {
                 "replicas": 1, "strategy": {"type": "Recreate"},
                 "selector": {"matchLabels": selector},
                 "template": {
                     "metadata": {"labels": dict(labels)},
                     "spec": {
                         "serviceAccountName": name,
                         "containers": [{
                             "name": name, "image": f"quay.io/kuberay/operator:{self.versions.kuberay}",
                             "command": ["/manager"],
                             "args": ["--enable-leader-election=false"],
                             "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                             "resources": {"requests": {"cpu": "100m", "memory": "512Mi"},
                                           "limits": {"cpu": "100m", "memory": "512Mi"}},
                         }],
                     },
                 },
             }},
        ]

    def install(self) -> None:
        api = self._api_factory()
        try:
            for obj in self.manifests():
                server_side_apply(api, obj, field_manager=self.FIELD_MANAGER)
        finally:
            api.close()

    def uninstall(self) -> None:
        api = self._api_factory()
        try:
            apps, rbac = client.AppsV1Api(api), client.RbacAuthorizationV1Api(api)
            delete_ignore_missing(apps.delete_namespaced_deployment, self.name, self.namespace,
                                  propagation_policy="Foreground")
            delete_ignore_missing(rbac.delete_cluster_role_binding, self.name)
            delete_ignore_missing(rbac.delete_cluster_role, self.name)
            delete_ignore_missing(client.CoreV1Api(api).delete_namespace, self.namespace)
        finally:
            api.close()

