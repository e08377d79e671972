"""Proof that the local test environment is a real Kubernetes control plane with the real
KubeRay operator: schema validation, reconciliation, scheduling, GC and port-forward."""

from __future__ import annotations

import json
import re
import socket
import socketserver
import subprocess
import threading
import time
import uuid
from typing import Any, Callable, Iterator, TypeVar

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import portforward

from testenv import ControlPlane

T = TypeVar("T")
RAY, V1, RAYCLUSTERS = "ray.io", "v1", "rayclusters"
IMAGE = "rayproject/ray:2.60.0-py311"


def wait(predicate: Callable[[], T], timeout: float = 60, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (ApiException, OSError) as exc:  # e.g. a forward not yet seen by kwok
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


def as_json(resp: Any) -> Any:
    return json.loads(resp.data)


def pods(core: client.CoreV1Api, ns: str, selector: str) -> list[dict[str, Any]]:
    return as_json(core.list_namespaced_pod(ns, label_selector=selector, _preload_content=False))["items"]


def container(name: str, cpu: str = "500m", memory: str = "1Gi") -> dict[str, Any]:
    return {"name": name, "image": IMAGE,
            "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}}


def raycluster(name: str, replicas: Any = 2) -> dict[str, Any]:
    head = container("ray-head")
    head["ports"] = [{"containerPort": 6379, "name": "gcs"}, {"containerPort": 8265, "name": "dashboard"},
                     {"containerPort": 10001, "name": "client"}]
    return {
        "apiVersion": f"{RAY}/{V1}", "kind": "RayCluster", "metadata": {"name": name},
        "spec": {
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [head]}}},
            "workerGroupSpecs": [{
                "groupName": "small", "replicas": replicas, "minReplicas": 2, "maxReplicas": 2,
                "rayStartParams": {}, "template": {"spec": {"containers": [container("ray-worker")]}},
            }],
        },
    }


class EchoServer:
    """A local TCP echo server: what a port-forward to a fake pod should reach."""

    def __init__(self) -> None:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                while data := self.request.recv(65536):
                    self.request.sendall(data)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    srv = EchoServer()
    yield srv
    srv.close()


def echo_via_python_portforward(core: client.CoreV1Api, ns: str, pod: str, port: int, payload: bytes) -> bytes:
    pf = portforward(core.connect_get_namespaced_pod_portforward, pod, ns, ports=str(port))
    try:
        sock = pf.socket(port)
        sock.settimeout(10)
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        sock.close()
        return got
    finally:
        pf.close()


def test_server_is_real_kubernetes(control_plane: ControlPlane, kube_api: client.ApiClient) -> None:
    info = client.VersionApi(kube_api).get_code()
    assert info.git_version == control_plane.versions.kubernetes
    nodes = client.CoreV1Api(kube_api).list_node().items
    assert {n.metadata.name for n in nodes} >= {"kwok-node-0"}
    node0 = next(n for n in nodes if n.metadata.name == "kwok-node-0")
    assert node0.status.allocatable["cpu"] == "8" and node0.status.allocatable["memory"] == "32Gi"


def test_kuberay_crds_applied_server_side(kube_api: client.ApiClient, kuberay_crds: list[str]) -> None:
    assert "rayclusters.ray.io" in kuberay_crds
    crd = as_json(client.ApiextensionsV1Api(kube_api).read_custom_resource_definition(
        "rayclusters.ray.io", _preload_content=False))
    managers = {(m["manager"], m["operation"]) for m in crd["metadata"]["managedFields"]}
    assert ("dku-ray-testenv", "Apply") in managers
    assert any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])


def test_malformed_raycluster_is_rejected_with_422(kube_api: client.ApiClient, namespace: str,
                                                   kuberay_crds: list[str]) -> None:
    with pytest.raises(ApiException) as err:
        client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
            RAY, V1, namespace, RAYCLUSTERS, raycluster("bad", replicas="two"), _preload_content=False)
    assert err.value.status == 422
    assert "replicas" in err.value.body


def test_unschedulable_pod_gets_failed_scheduling_event(kube_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(kube_api)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "too-big"},
           "spec": {"containers": [container("c", cpu="64", memory="1Gi")]}}
    core.create_namespaced_pod(namespace, pod, _preload_content=False)

    def failed_scheduling() -> list[str]:
        events = as_json(core.list_namespaced_event(namespace, field_selector="involvedObject.name=too-big",
                                                    _preload_content=False))["items"]
        return [e["message"] for e in events if e["reason"] == "FailedScheduling"]

    messages = wait(failed_scheduling, 60, "FailedScheduling event")
    assert any("Insufficient cpu" in m for m in messages), messages
    status = as_json(core.read_namespaced_pod_status("too-big", namespace, _preload_content=False))["status"]
    assert status["phase"] == "Pending" and not status.get("podIP")


def test_port_forward_reaches_local_server(control_plane: ControlPlane, kube_api: client.ApiClient,
                                          namespace: str, echo_server: EchoServer) -> None:
    core = client.CoreV1Api(kube_api)

    def make_pod(name: str) -> None:
        core.create_namespaced_pod(namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "echo"}},
            "spec": {"containers": [dict(container("c", cpu="100m", memory="64Mi"),
                                         ports=[{"containerPort": 8265}])]}}, _preload_content=False)
        wait(lambda: as_json(core.read_namespaced_pod_status(name, namespace, _preload_content=False))
             ["status"].get("podIP"), 60, f"pod {name} Running with an IP")

    make_pod("echo-1")
    with control_plane.forward_pod_port(namespace, {"app": "echo"}, 8265, target_port=echo_server.port):
        assert echo_via_python_portforward(core, namespace, "echo-1", 8265, b"hello kwok") == b"hello kwok"

        # kubectl port-forward (the built kubectl, as the benchmark uses it), to the pod and to a
        # Service (kubectl resolves it to a pod through the selector)
        core.create_namespaced_service(namespace, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
            "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8265}]}},
            _preload_content=False)
        for target, port in (("pod/echo-1", 8265), ("svc/echo", 80)):
            assert echo_via_kubectl(control_plane, namespace, target, port, b"via kubectl") == b"via kubectl"

        # a pod recreated under a new name with the same labels is forwarded too
        core.delete_namespaced_pod("echo-1", namespace, grace_period_seconds=0, _preload_content=False)
        make_pod("echo-2")
        got = wait(lambda: echo_via_python_portforward(core, namespace, "echo-2", 8265, b"again"), 30,
                   "port-forward to the recreated pod")
        assert got == b"again"


def echo_via_kubectl(cp: ControlPlane, ns: str, target: str, port: int, payload: bytes) -> bytes:
    proc = subprocess.Popen(
        [str(cp.kubectl_path), f"--kubeconfig={cp.kubeconfig}", "-n", ns, "port-forward", target, f":{port}",
         "--address=127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+) -> \d+", line)
        assert m, line
        with socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=10) as sock:
            sock.sendall(payload)
            return sock.recv(len(payload) + 100)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def ray_cluster(control_plane: ControlPlane, third_party_operator: str) -> Iterator[tuple[str, str]]:
    """A RayCluster reconciled by the real operator, in its own namespace: (namespace, name)."""
    api = control_plane.api_client()
    core = client.CoreV1Api(api)
    ns = f"t-raycluster-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}}, _preload_content=False)
    wait(lambda: core.read_namespaced_service_account("default", ns, _preload_content=False), 30, "default SA")
    client.CustomObjectsApi(api).create_namespaced_custom_object(RAY, V1, ns, RAYCLUSTERS, raycluster("rc"),
                                                                 _preload_content=False)
    try:
        yield ns, "rc"
    finally:
        core.delete_namespace(ns, _preload_content=False)
        api.close()


def test_real_operator_reconciles_raycluster(kube_api: client.ApiClient, ray_cluster: tuple[str, str]) -> None:
    ns, name = ray_cluster
    core = client.CoreV1Api(kube_api)
    custom = client.CustomObjectsApi(kube_api)

    def ready_status() -> dict[str, Any] | None:
        st = as_json(custom.get_namespaced_custom_object_status(RAY, V1, ns, RAYCLUSTERS, name,
                                                                _preload_content=False)).get("status") or {}
        conds = {c["type"]: c["status"] for c in st.get("conditions") or []}
        ok = (conds.get("RayClusterProvisioned") == "True" and conds.get("HeadPodReady") == "True"
              and st.get("readyWorkerReplicas") == st.get("desiredWorkerReplicas") == 2)
        return st if ok else None

    status = wait(ready_status, 120, "RayCluster ready")
    assert status.get("state") == "ready"
    head = pods(core, ns, f"ray.io/cluster={name},ray.io/node-type=head")
    workers = pods(core, ns, f"ray.io/cluster={name},ray.io/node-type=worker")
    assert len(head) == 1 and len(workers) == 2
    for pod in head + workers:
        assert pod["status"]["phase"] == "Running" and pod["status"]["podIP"]
        assert pod["spec"]["nodeName"].startswith("kwok-node-")  # bound by the real scheduler
        assert pod["metadata"]["ownerReferences"][0]["kind"] == "RayCluster"
    svc = as_json(core.read_namespaced_service(f"{name}-head-svc", ns, _preload_content=False))
    assert {p["port"] for p in svc["spec"]["ports"]} >= {6379, 8265, 10001}


def test_head_port_forward_follows_recreated_head_pod(control_plane: ControlPlane, kube_api: client.ApiClient,
                                                      ray_cluster: tuple[str, str], echo_server: EchoServer) -> None:
    ns, name = ray_cluster
    core = client.CoreV1Api(kube_api)
    selector = {"ray.io/cluster": name, "ray.io/node-type": "head"}
    sel = ",".join(f"{k}={v}" for k, v in selector.items())
    old = wait(lambda: [p for p in pods(core, ns, sel) if p["status"].get("phase") == "Running"], 120, "head pod")
    old_name = old[0]["metadata"]["name"]
    with control_plane.forward_pod_port(ns, selector, 8265, target_port=echo_server.port):
        assert echo_via_python_portforward(core, ns, old_name, 8265, b"dashboard?") == b"dashboard?"
        core.delete_namespaced_pod(old_name, ns, _preload_content=False)
        new = wait(lambda: [p for p in pods(core, ns, sel) if p["metadata"]["name"] != old_name
                            and p["status"].get("phase") == "Running"], 120, "head pod recreated by the operator")
        new_name = new[0]["metadata"]["name"]
        got = wait(lambda: echo_via_python_portforward(core, ns, new_name, 8265, b"new head"), 30,
                   "port-forward to the new head pod")
        assert got == b"new head"


def test_deleting_raycluster_removes_its_pods(kube_api: client.ApiClient, ray_cluster: tuple[str, str]) -> None:
    ns, name = ray_cluster
    core = client.CoreV1Api(kube_api)
    assert pods(core, ns, f"ray.io/cluster={name}")
    client.CustomObjectsApi(kube_api).delete_namespaced_custom_object(RAY, V1, ns, RAYCLUSTERS, name,
                                                                      _preload_content=False)
    wait(lambda: not pods(core, ns, f"ray.io/cluster={name}"), 60, "RayCluster pods deleted")


def test_operator_process_follows_its_deployment(control_plane: ControlPlane, kube_api: client.ApiClient,
                                                 third_party_operator: str) -> None:
    sup = control_plane.operator
    assert sup is not None and sup.running
    apps = client.AppsV1Api(kube_api)

    def scale(n: int) -> None:
        apps.patch_namespaced_deployment_scale("kuberay-operator", third_party_operator, {"spec": {"replicas": n}},
                                               _preload_content=False)

    scale(0)
    try:
        sup.wait_stopped(60)
        assert not sup.running
    finally:
        scale(1)
    sup.wait_running(60)
    assert sup.healthy()
