"""Start / Inspect / Stop against the real control plane and the real KubeRay operator."""
from __future__ import annotations

import json
import time
import uuid
from typing import Iterator

import pytest

from dku_ray import kube_rest as kr
from dku_ray import operator as op
from dku_ray.cli import main as cli_main
from dku_ray.cluster_values import parse_values
from dku_ray.constants import LABEL_CLUSTER, LABEL_MANAGED_BY
from dku_ray.errors import ClusterNotReadyError, DkuRayError, OperatorError, SpecError
from dku_ray.lifecycle import RayClusterClient
from dku_ray.operator_manifests import ManifestSource
from testenv.controlplane import ControlPlane
from testenv.versions import kuberay_module_dir

SMALL = {"ray_head_ram": 2, "ray_worker_ram": 1, "ray_num_workers": 2}


@pytest.fixture
def clusters(control_plane) -> Iterator[RayClusterClient]:
    client = RayClusterClient.from_kubeconfig(str(control_plane.kubeconfig))
    client.poll_seconds = 0.3
    yield client


@pytest.fixture
def local_source() -> ManifestSource:
    """KubeRay's own ray-operator/config tree, from the Go module: the air-gapped 'local directory' source."""
    return ManifestSource(str(kuberay_module_dir() / "config"))


@pytest.fixture(scope="module")
def bare_plane() -> Iterator[ControlPlane]:
    """A control plane of its own, with no operator and no CRDs: installing and removing our
    operator (and its CRDs) must not disturb the session's shared control plane."""
    with ControlPlane(verbose=False) as plane:
        yield plane


@pytest.fixture
def bare(bare_plane: ControlPlane) -> Iterator[tuple[RayClusterClient, str]]:
    """(client, fresh namespace) on the bare control plane."""
    client = RayClusterClient.from_kubeconfig(str(bare_plane.kubeconfig))
    client.poll_seconds = 0.3
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    client.kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    deadline = time.monotonic() + 30
    while client.kube.get(kr.SERVICE_ACCOUNT, "default", namespace) is None:  # pods need it
        assert time.monotonic() < deadline
        time.sleep(0.05)
    yield client, namespace


@pytest.fixture
def foreign_operator(third_party_operator: str) -> str:
    """The session's operator, installed by someone else (Helm-style labels, not ours)."""
    return third_party_operator


def spec_for(namespace: str, **params):
    return parse_values(params={**SMALL, "namespace": namespace, **params}).spec


def ray_pods(clusters: RayClusterClient, namespace: str, name: str) -> list[dict]:
    return clusters.kube.list(kr.POD, namespace, label_selector=f"{LABEL_CLUSTER}={name}")


def test_full_lifecycle_installing_our_operator(bare, local_source):
    clusters, namespace = bare
    assert op.detect(clusters.kube).running is None
    settings = op.OperatorSettings(source=local_source, version="v1.6.2", namespace="dku-ray-operator")
    progress: list[tuple[str, float]] = []
    result = clusters.start(spec_for(namespace), settings, timeout=180, progress=lambda m, f: progress.append((m, f)))
    assert result.change == "created"
    assert result.operator_actions[0].startswith("installed the KubeRay operator v1.6.2")
    assert result.report is not None and result.report.ready
    assert progress[-1][1] == pytest.approx(1.0) and [f for _, f in progress] == sorted(f for _, f in progress)
    running = op.detect(clusters.kube).running
    assert running is not None and running.ours and running.namespace == "dku-ray-operator"

    report = clusters.inspect("ray", namespace)
    assert report.ready and report.ray_version == "2.60.0" and report.auth.startswith("token (Secret ray")
    assert [(g.name, g.ready, g.desired) for g in report.groups] == [("head", 1, 1), ("workergroup", 2, 2)]
    assert len(report.pods) == 3 and all(p.phase == "Running" and p.ip and p.node for p in report.pods)
    assert report.endpoints.dashboard_url == f"http://ray-head-svc.{namespace}.svc.cluster.local:8265"
    assert "<no value>" not in json.dumps(report.to_dict())

    again = clusters.start(spec_for(namespace), settings, timeout=60)
    assert again.change == "unchanged" and again.operator_actions[0].startswith("reused")

    bigger = clusters.start(spec_for(namespace, ray_num_workers=3), settings, timeout=120)
    assert bigger.change == "updated" and bigger.report.ready
    assert [g.ready for g in bigger.report.groups] == [1, 3]
    assert len(ray_pods(clusters, namespace, "ray")) == 4

    stopped = clusters.stop("ray", namespace, remove_operator=True, timeout=120)
    assert stopped.removed[0] == f"RayCluster {namespace}/ray" and not stopped.already_gone
    assert any(r.startswith("Deployment dku-ray-operator/kuberay-operator") for r in stopped.removed)
    assert ray_pods(clusters, namespace, "ray") == []
    assert op.detect(clusters.kube).running is None

    twice = clusters.stop("ray", namespace, remove_operator=True)
    assert twice.already_gone and twice.removed == ()


def test_refuses_to_install_when_not_allowed(bare, local_source):
    clusters, namespace = bare
    with pytest.raises(OperatorError, match="Allow dku_ray to install one"):
        clusters.start(spec_for(namespace), op.OperatorSettings(install=False, source=local_source))
    assert op.detect(clusters.kube).deployments == ()  # nothing was installed


def test_two_clusters_and_an_operator_installed_by_someone_else(clusters, namespace, foreign_operator, local_source):
    settings = op.OperatorSettings(source=local_source, version="v1.6.2")
    first = clusters.start(spec_for(namespace, ray_cluster_name="alpha", ray_num_workers=1), settings, timeout=120)
    second = clusters.start(spec_for(namespace, ray_cluster_name="beta", ray_num_workers=2), settings, timeout=120)
    assert "installed by someone else" in first.operator_actions[0] and first.operator_actions[0].startswith("reused")
    assert second.change == "created" and second.report.ready
    assert not any(d.ours for d in op.detect(clusters.kube).deployments)  # we installed nothing
    assert {p.name.split("-")[0] for p in clusters.inspect("alpha", namespace).pods} == {"alpha"}
    assert len(clusters.inspect("beta", namespace).pods) == 3
    assert sorted(clusters.list_clusters(namespace)) == ["alpha", "beta"]

    stop_alpha = clusters.stop("alpha", namespace, remove_operator=True)
    assert any("did not install it" in k for k in stop_alpha.kept)
    assert clusters.inspect("beta", namespace).ready  # the other cluster is untouched
    clusters.stop("beta", namespace, remove_operator=True)
    still = op.detect(clusters.kube).running
    assert still is not None and still.namespace == foreign_operator and not still.ours


def test_pending_reason_when_a_pod_cannot_fit(clusters, namespace, foreign_operator):
    spec = spec_for(namespace, ray_cluster_name="huge", ray_worker_cpu=64, ray_num_workers=1)
    with pytest.raises(ClusterNotReadyError) as info:
        clusters.start(spec, op.OperatorSettings(install=False), timeout=8)
    text = str(info.value)
    assert "Insufficient cpu" in text and "fewer CPUs" in text and "huge-workergroup-worker" in text
    report = clusters.inspect("huge", namespace)
    assert not report.ready and any("Insufficient cpu" in p.reason for p in report.pods if p.group == "workergroup")
    clusters.stop("huge", namespace)


def test_not_ours_cluster_name_is_left_alone(clusters, namespace, foreign_operator):
    body = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "theirs", "namespace": namespace},
            "spec": {"headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [
                {"name": "ray-head", "image": "rayproject/ray:2.60.0"}]}}}}}
    clusters.kube.apply(body, field_manager="someone-else")
    with pytest.raises(DkuRayError, match="not created by dku_ray"):
        clusters.start(spec_for(namespace, ray_cluster_name="theirs"), op.OperatorSettings(install=False))
    labels = clusters.kube.get(kr.RAYCLUSTER, "theirs", namespace)["metadata"].get("labels") or {}
    assert LABEL_MANAGED_BY not in labels
    clusters.stop("theirs", namespace)


def test_missing_namespace_is_a_clear_error(clusters, foreign_operator):
    with pytest.raises(DkuRayError, match="namespace 'nope' does not exist"):
        clusters.start(spec_for("nope"), op.OperatorSettings(install=False))


def test_bad_input_creates_nothing(control_plane, clusters, namespace, capsys):
    before = clusters.kube.list(kr.RAYCLUSTER) if clusters.kube.get(kr.CRD, "rayclusters.ray.io") else []
    code = cli_main(["cluster", "start", "--kubeconfig", str(control_plane.kubeconfig), "--namespace", namespace,
                     "--name", "Bad_Name", "--workers", "5", "--max-workers", "3", "--worker-cpu", "-1",
                     "--set", "head.rayVersion=2.40"])
    err = capsys.readouterr().err
    assert code == 2
    for field in ("name:", "worker.replicas:", "worker.cpu:", "head.rayVersion:"):
        assert field in err
    after = clusters.kube.list(kr.RAYCLUSTER) if clusters.kube.get(kr.CRD, "rayclusters.ray.io") else []
    assert after == before
    with pytest.raises(SpecError):
        parse_values({"worker": {"replicas": 5, "maxReplicas": 3}})


def test_cli_start_inspect_stop(control_plane, namespace, foreign_operator, capsys):
    base = ["--kubeconfig", str(control_plane.kubeconfig), "--namespace", namespace, "--name", "cli"]
    assert cli_main(["cluster", "start", *base, "--workers", "1", "--worker-ram", "1", "--head-ram", "1",
                     "--no-install-operator", "--timeout", "120"]) == 0
    assert "Ray cluster " + namespace + "/cli created" in capsys.readouterr().out
    assert cli_main(["cluster", "inspect", *base, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ready"] and data["groups"][1]["ready"] == 1 and data["endpoints"]["dashboard_port"] == 8265
    assert cli_main(["cluster", "stop", *base]) == 0
    assert "stopped" in capsys.readouterr().out
    assert cli_main(["cluster", "inspect", *base]) == 4
    assert "No Ray cluster named 'cli'" in capsys.readouterr().out


def test_quota_exceeded_is_reported(clusters, namespace, foreign_operator):
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "small", "namespace": namespace},
             "spec": {"hard": {"requests.cpu": "2", "limits.cpu": "2"}}}
    clusters.kube.apply(quota)
    deadline = time.monotonic() + 30
    while not (clusters.kube.get(kr.RESOURCE_QUOTA, "small", namespace).get("status") or {}).get("hard"):
        assert time.monotonic() < deadline, "the quota controller never filled in the quota's status"
        time.sleep(0.2)  # admission enforces a quota once the controller has computed its usage
    spec = spec_for(namespace, ray_cluster_name="quota", ray_num_workers=3)  # head 1 + 3 workers x 1 CPU > 2
    with pytest.raises(ClusterNotReadyError) as info:
        clusters.start(spec, op.OperatorSettings(install=False), timeout=8)
    assert "exceeded quota" in str(info.value) and "ResourceQuota" in str(info.value)
    clusters.stop("quota", namespace)
