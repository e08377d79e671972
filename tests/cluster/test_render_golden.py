"""Rendered RayClusters, pinned by golden files and checked against the official CRD schema.

Set DKU_RAY_UPDATE_GOLDEN=1 to rewrite the golden files after an intended change (and review the diff).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
import yaml

from dku_ray.cluster_values import parse_values
from dku_ray.kube_rest import RAYCLUSTER, Kube
from dku_ray.render_cluster import render_raycluster
from testenv.versions import kuberay_module_dir

from .crd_schema import strict_schema

HERE = Path(__file__).parent
CASES = sorted((HERE / "cases").glob("*.yaml"))


def render_case(case: Path, namespace: str | None = None) -> dict:
    data = yaml.safe_load(case.read_text())
    spec = parse_values(data.get("values"), data.get("params"), python_tag="py311").spec
    return render_raycluster(spec, namespace or data.get("namespace", "default"),
                             include_replicas=data.get("include_replicas", True))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    crd = kuberay_module_dir() / "config" / "crd" / "bases" / "ray.io_rayclusters.yaml"
    return jsonschema.Draft7Validator(strict_schema(crd))


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_golden(case: Path) -> None:
    rendered = render_case(case)
    golden = HERE / "golden" / f"{case.stem}.json"
    text = json.dumps(rendered, indent=2, sort_keys=True) + "\n"
    if os.environ.get("DKU_RAY_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert golden.exists(), f"missing {golden}; run with DKU_RAY_UPDATE_GOLDEN=1"
    assert text == golden.read_text(), f"{case.stem} renders differently from {golden.name}"


@pytest.mark.parametrize("golden", sorted((HERE / "golden").glob("*.json")), ids=lambda p: p.stem)
def test_golden_files_match_the_official_crd_schema(golden: Path, validator: jsonschema.Draft7Validator) -> None:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(json.loads(golden.read_text()))]
    assert errors == []


def test_schema_check_can_fail(validator: jsonschema.Draft7Validator) -> None:
    """The strict schema catches typos and wrong types, so the test above means something."""
    body = render_case(CASES[0])
    body["spec"]["workerGroupSpecs"][0]["replica"] = 2
    body["spec"]["workerGroupSpecs"][0]["minReplicas"] = "two"
    messages = [e.message for e in validator.iter_errors(body)]
    assert any("'replica' was unexpected" in m for m in messages)
    assert any("is not of type 'integer'" in m for m in messages)


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_server_dry_run_accepts_rendered_clusters(case: Path, kube_api, kuberay_crds, namespace: str) -> None:
    body = render_case(case, namespace)
    applied = Kube(kube_api).apply(body, dry_run=True)
    assert applied["spec"]["workerGroupSpecs"][0]["groupName"] == body["spec"]["workerGroupSpecs"][0]["groupName"]
    assert Kube(kube_api).get(RAYCLUSTER, body["metadata"]["name"], namespace) is None  # nothing was created
