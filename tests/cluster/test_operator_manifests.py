"""The KubeRay operator's manifests, read from KubeRay's kustomize tree: local dir or URL template."""
from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path
from typing import Iterator

import pytest

from dku_ray.errors import OperatorError
from dku_ray.operator_manifests import ManifestSource, customize, load_operator_manifests
from testenv.versions import kuberay_module_dir

VERSION = "v1.6.2"


@pytest.fixture(scope="module")
def config_dir() -> Path:
    return kuberay_module_dir() / "config"


@pytest.fixture
def mirror(config_dir: Path) -> Iterator[str]:
    """An "internal mirror": KubeRay's config tree served over HTTP on loopback, at /<version>/config/."""
    root = config_dir.parent.parent  # .../ray-operator@vX -> serve its parent so that the URL holds the version

    class Handler(http.server.SimpleHTTPRequestHandler):
        def translate_path(self, path: str) -> str:
            version, _, rest = path.lstrip("/").partition("/")
            return str(config_dir.parent / rest) if version == VERSION else str(root / "missing")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{{version}}/config/{{path}}"
    server.shutdown()
    server.server_close()


def kinds(objects: list[dict]) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in objects]


def test_local_directory_source(config_dir: Path):
    objects = load_operator_manifests(ManifestSource(str(config_dir)), VERSION, namespace="ops", image="mirror.io/kuberay/operator")
    names = kinds(objects)
    assert names[0] == "Namespace/ops"
    assert "CustomResourceDefinition/rayclusters.ray.io" in names and "Deployment/kuberay-operator" in names
    assert names.index("CustomResourceDefinition/rayclusters.ray.io") < names.index("Deployment/kuberay-operator")
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["metadata"]["namespace"] == "ops"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"mirror.io/kuberay/operator:{VERSION}"
    assert deployment["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "kuberay",
                                                             "app.kubernetes.io/component": "kuberay-operator"}
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "dku-ray"
        assert obj["metadata"]["labels"]["dku-ray/kuberay-version"] == VERSION
        if obj["kind"] in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Namespace"):
            assert "namespace" not in obj["metadata"]
    binding = next(o for o in objects if o["kind"] == "ClusterRoleBinding")
    assert binding["subjects"][0]["namespace"] == "ops"


def test_url_template_source_gives_the_same_objects(config_dir: Path, mirror: str):
    from_dir = load_operator_manifests(ManifestSource(str(config_dir)), VERSION)
    from_url = load_operator_manifests(ManifestSource(mirror), VERSION)
    assert from_url == from_dir


def test_unreachable_source_says_how_to_work_air_gapped(mirror: str):
    with pytest.raises(OperatorError, match="local copy of KubeRay's ray-operator/config"):
        load_operator_manifests(ManifestSource(mirror), "v0.0.1")
    with pytest.raises(OperatorError, match="no {path} placeholder"):
        load_operator_manifests(ManifestSource("http://127.0.0.1:1/kuberay"), VERSION)
    with pytest.raises(OperatorError, match="must be a copy of KubeRay's ray-operator/config"):
        load_operator_manifests(ManifestSource("/nonexistent/{version}"), VERSION)


def test_customize_is_pure():
    original = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa", "namespace": "system"}}]
    out = customize(original, version="v9.9.9", namespace="ns", image="img")
    assert original[0]["metadata"] == {"name": "sa", "namespace": "system"}
    assert out[1]["metadata"]["namespace"] == "ns"
