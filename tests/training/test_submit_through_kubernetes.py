"""The whole story: `submit()` given a cluster reference instead of a hand-copied pod IP.

A RayCluster with token auth is started by dku_ray on the real control plane (real KubeRay
operator); its head pod's port 8265 reaches a real local Ray head started with the token KubeRay
generated (kwok port-forward). `submit()` resolves the reference (a ClusterRef, or a DSS cluster
name through the DSS stand-in), finds that the pod network is not routable from here, and goes
through the dashboard tunnel.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Iterator

import pytest

from dku_ray import kube_rest as kr
from dku_ray.cluster_values import parse_values
from dku_ray.dashboard_tunnel import ClusterRef
from dku_ray.errors import DSSError
from dku_ray.lifecycle import RayClusterClient
from dku_ray.operator import OperatorSettings
from dku_ray.submit import submit
from dku_ray.tunnel_pod import HeadPodFinder
from testenv.local_ray import LocalRayHead

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def raycluster(control_plane: Any, third_party_operator: str) -> Iterator[tuple[str, str, LocalRayHead]]:
    """(namespace, name, local Ray head behind its head pod)."""
    clusters = RayClusterClient.from_kubeconfig(str(control_plane.kubeconfig))
    clusters.poll_seconds = 0.3
    namespace, name = f"t-k8s-{uuid.uuid4().hex[:6]}", "trainer"
    clusters.kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    spec = parse_values({"name": name, "namespace": namespace, "worker": {"replicas": 2, "memory": 1},
                         "head": {"memory": 2}}).spec
    assert spec.auth_mode == "token"
    deadline = time.monotonic() + 30
    while clusters.kube.get(kr.SERVICE_ACCOUNT, "default", namespace) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    clusters.start(spec, OperatorSettings(install=False), timeout=120)
    finder = HeadPodFinder(clusters.kube, name, namespace)
    auth = finder.auth()
    token = None
    while token is None:
        token = finder.read_token(auth)
    head = LocalRayHead(num_cpus=2, object_store_memory=300_000_000, auth_token=token).start()
    forward = control_plane.forward_pod_port(namespace, {"ray.io/cluster": name, "ray.io/node-type": "head"}, 8265,
                                             target_port=head.ports["dashboard"])
    try:
        yield namespace, name, head
    finally:
        forward.close()
        head.stop()
        head.cleanup()
        clusters.stop(name, namespace)


def test_submit_to_a_cluster_reference_goes_through_the_tunnel(raycluster, control_plane, s3env) -> None:
    namespace, name, _ = raycluster
    ref = ClusterRef(str(control_plane.kubeconfig), name, namespace)
    result = submit(s3env.uri(s3env.data_bucket, "binary"), "label", s3env.uri(s3env.folder_bucket, "k8s"),
                    cluster=ref, num_rounds=5, checkpoint_every=5, show_progress=False, **s3env.kwargs())
    assert result.status == "SUCCEEDED" and result.rounds == 5
    assert result.load_model().predict(s3env.holdout.head(100)).shape == (100,)


def test_dss_names_everywhere(raycluster, control_plane, dss_standin, dataiku_shim, s3env) -> None:
    """Dataset, folder and cluster as a data scientist names them in a DSS notebook."""
    namespace, name, _ = raycluster
    creds = s3env.credentials
    dss_standin.add_cluster("eks-prod", kube_config_path=str(control_plane.kubeconfig))
    dss_standin.add_s3_connection("lake", access_key=creds.access_key, secret_key=creds.secret_key,
                                  session_token=creds.session_token, region_or_endpoint=s3env.moto.endpoint_url)
    dss_standin.add_dataset("PROJ", "transactions", connection="lake", bucket=s3env.data_bucket, path="/binary")
    dss_standin.add_managed_folder("PROJ", "Mdl12345", connection="lake", bucket=s3env.folder_bucket,
                                   path="/dss/${odbId}")
    result = submit("transactions", "label", "Mdl12345", cluster=f"eks-prod/{namespace}/{name}", num_rounds=3,
                    checkpoint_every=3, show_progress=False)
    assert result.status == "SUCCEEDED"
    assert result.model_uri.startswith("s3://dkr-folder/dss/Mdl12345/runs/") and result.model_uri.endswith("model.ubj")
    assert any(r.path.endswith("/admin/clusters/eks-prod") for r in dss_standin.requests)

    with pytest.raises(DSSError) as info:  # the same through a stopped DSS cluster: a clear error
        dss_standin.set_cluster_state("eks-prod", "NONE")
        submit("transactions", "label", "Mdl12345", cluster=f"eks-prod/{namespace}/{name}", show_progress=False)
    assert "not running" in str(info.value)
