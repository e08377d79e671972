"""Fixtures for the dashboard tunnel: real RayClusters (real KubeRay operator, kwok nodes) whose head
pods' port 8265 reach local servers through kwok's port-forward, and one real local Ray head.

* `secure`: a RayCluster with token auth; its head port reaches a real `ray start --head` started
  with the token KubeRay put in the cluster's Secret.
* `open_cluster`: a RayCluster without auth; its head port reaches a small local HTTP server
  (echo / blob / whoami), used for byte-exact transfers and to tell two clusters apart.
"""
from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from dku_ray.lifecycle import RayClusterClient
from dku_ray.tunnel_pod import HeadPodFinder
from testenv.local_ray import LocalRayHead

from .support import HEAD, LocalHTTP, RayClusterUnderTest, start_cluster, wait_for


@pytest.fixture(scope="module")
def tunnel_namespace(control_plane: Any) -> Iterator[str]:
    api = control_plane.api_client()
    core = client.CoreV1Api(api)
    name = f"t-tunnel-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"dku-ray-testenv/test": "true"}}},
                          _preload_content=False)
    wait_for(lambda: core.read_namespaced_service_account("default", name, _preload_content=False), 30, "default SA")
    yield name
    try:
        core.delete_namespace(name, _preload_content=False)
    except ApiException:
        pass
    api.close()


@pytest.fixture(scope="module")
def clusters(control_plane: Any, third_party_operator: str) -> Iterator[RayClusterClient]:
    rc = RayClusterClient.from_kubeconfig(str(control_plane.kubeconfig))
    rc.poll_seconds = 0.3
    yield rc
    rc.kube.api_client.close()


@pytest.fixture(scope="module")
def secure(clusters: RayClusterClient, tunnel_namespace: str, control_plane: Any) -> RayClusterUnderTest:
    return start_cluster(clusters, tunnel_namespace, "secure", "token", str(control_plane.kubeconfig))


@pytest.fixture(scope="module")
def cluster_token(secure: RayClusterUnderTest) -> str:
    """The token KubeRay generated for the `secure` cluster (its Secret), as the tunnel reads it."""
    finder = HeadPodFinder(secure.clusters.kube, secure.name, secure.namespace)
    auth = finder.auth()
    assert auth.token and auth.secret_name == "secure"
    return wait_for(lambda: finder.read_token(auth), 60, "the auth token Secret")


@pytest.fixture(scope="module")
def ray_head(cluster_token: str, secure: RayClusterUnderTest, control_plane: Any) -> Iterator[LocalRayHead]:
    """A real Ray head with the cluster's token, reached by port-forwards to the `secure` head pod."""
    head = LocalRayHead(num_cpus=1, auth_token=cluster_token)
    head.start()
    handle = control_plane.forward_pod_port(secure.namespace, {"ray.io/cluster": secure.name, **HEAD}, 8265,
                                            target_port=head.ports["dashboard"])
    try:
        yield head
    finally:
        handle.close()
        head.stop()
        head.cleanup()


@pytest.fixture(scope="module")
def open_cluster(clusters: RayClusterClient, tunnel_namespace: str, control_plane: Any) -> Iterator[RayClusterUnderTest]:
    cluster = start_cluster(clusters, tunnel_namespace, "open", "none", str(control_plane.kubeconfig))
    server = LocalHTTP("open-cluster")
    handle = control_plane.forward_pod_port(tunnel_namespace, {"ray.io/cluster": "open", **HEAD}, 8265,
                                            target_port=server.port)
    try:
        yield cluster
    finally:
        handle.close()
        server.close()
