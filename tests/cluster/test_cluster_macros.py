"""The Start / Inspect / Stop macros, run the way DSS runs them: DSS-shaped configs, the `dataiku`
shim, the DSS stand-in driven by the real dataikuapi, and the real control plane and operator."""
from __future__ import annotations

import pytest

from dku_ray import kube_rest as kr
from dku_ray.errors import DSSError, SpecError
from dku_ray.lifecycle import RayClusterClient
from tests.dss.macro_runner import run_macro

REFERENCE_CONFIG = {  # what the reference plugin's Start form sends, plus our cluster name and namespace
    "k8s_cluster_name": "eks-prod", "kuberay_version": "v1.6.2", "image_tag": "2.60.0-py311", "ray_version": "2.60.0",
    "ray_head_cpu": 1, "ray_head_ram": 2, "ray_num_workers": 2, "ray_worker_cpu": 1, "ray_worker_ram": 1,
}


@pytest.fixture
def dss_cluster(control_plane, dss_standin, dataiku_shim) -> str:
    dss_standin.add_cluster("eks-prod", kube_config_path=str(control_plane.kubeconfig))
    return "eks-prod"


def test_start_inspect_stop_macros(control_plane, dss_cluster, namespace, third_party_operator):
    config = {**REFERENCE_CONFIG, "ray_cluster_name": "macro", "namespace": namespace, "timeout_minutes": 3,
              "ray_worker_node_selector": {"type": "kwok"}}
    started = run_macro("start-ray-cluster", config)
    assert "created" in started.result and "READY" in started.result
    assert started.progress and started.progress[-1] == 100 and started.progress == sorted(started.progress)

    clusters = RayClusterClient.from_kubeconfig(str(control_plane.kubeconfig))
    body = clusters.kube.get(kr.RAYCLUSTER, "macro", namespace)
    group = body["spec"]["workerGroupSpecs"][0]
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (2, 2, 2)
    assert group["template"]["spec"]["nodeSelector"] == {"type": "kwok"}

    inspected = run_macro("inspect-ray-cluster", {"k8s_cluster_name": dss_cluster, "ray_cluster_name": "macro",
                                                  "namespace": namespace})
    html = inspected.result
    assert "READY" in html and "macro-workergroup-worker" in html and f"macro-head-svc.{namespace}" in html
    assert "<no value>" not in html and "<script" not in html

    stopped = run_macro("stop-ray-cluster", {"k8s_cluster_name": dss_cluster, "ray_cluster_name": "macro",
                                             "namespace": namespace, "remove_operator": True})
    assert f"RayCluster {namespace}/macro" in stopped.result and "did not install it" in stopped.result
    assert clusters.kube.list(kr.POD, namespace, label_selector="ray.io/cluster=macro") == []
    again = run_macro("stop-ray-cluster", {"k8s_cluster_name": dss_cluster, "ray_cluster_name": "macro",
                                           "namespace": namespace})
    assert "already gone" in again.result


def test_start_macro_rejects_bad_input_before_touching_the_cluster(control_plane, dss_cluster, namespace):
    config = {**REFERENCE_CONFIG, "ray_cluster_name": "Bad Name", "namespace": namespace, "ray_num_workers": 5,
              "autoscaling": True, "ray_worker_max": 3, "ray_worker_ram": "-1", "values_yaml": "labels: {team: a b}"}
    with pytest.raises(SpecError) as info:
        run_macro("start-ray-cluster", config)
    assert {"name", "worker.replicas", "worker.memory", "labels.team"} <= set(info.value.fields)
    clusters = RayClusterClient.from_kubeconfig(str(control_plane.kubeconfig))
    if clusters.kube.get(kr.CRD, "rayclusters.ray.io"):
        assert clusters.kube.list(kr.RAYCLUSTER, namespace) == []


def test_values_yaml_must_be_a_mapping(dss_cluster):
    with pytest.raises(SpecError, match="values_yaml"):
        run_macro("start-ray-cluster", {**REFERENCE_CONFIG, "values_yaml": "- a\n- b"})


def test_stopped_dss_cluster_gives_a_clear_error(control_plane, dss_standin, dataiku_shim):
    dss_standin.add_cluster("eks-off", state="NONE")
    with pytest.raises(DSSError, match="eks-off"):
        run_macro("inspect-ray-cluster", {"k8s_cluster_name": "eks-off"})


def test_descriptors_declare_the_cluster_role_and_keep_reference_ids():
    from tests.dss.macro_runner import load_descriptor

    for macro in ("start-ray-cluster", "inspect-ray-cluster", "stop-ray-cluster"):
        descriptor = load_descriptor(macro)
        assert descriptor["macroRoles"] == [{"type": "CLUSTER", "targetParamsKey": "k8s_cluster_name"}]
        assert descriptor["params"][0]["name"] == "k8s_cluster_name" and descriptor["params"][0]["type"] == "CLUSTER"
    names = {p["name"] for p in load_descriptor("start-ray-cluster")["params"]}
    assert set(REFERENCE_CONFIG) <= names
