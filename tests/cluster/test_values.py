"""Validation of cluster settings: every rule names the field and the fix, all problems at once."""
from __future__ import annotations

import pytest

from dku_ray.cluster_values import merge_flat_params, parse_values
from dku_ray.errors import SpecError

REFERENCE_DEFAULTS = {  # the reference plugin's Start macro defaults
    "kuberay_version": "v1.2.2", "image_tag": "2.40.0.22541c-py310", "ray_version": "2.40.0",
    "ray_head_cpu": 1, "ray_head_ram": 4, "ray_num_workers": 2, "ray_worker_cpu": 1, "ray_worker_ram": 1,
}


def problems(values=None, params=None) -> dict[str, str]:
    with pytest.raises(SpecError) as info:
        parse_values(values, params, python_tag="py311")
    return {p.field: p.message for p in info.value.problems}


def test_reference_parameters_are_a_compatible_subset():
    parsed = parse_values(params=REFERENCE_DEFAULTS, python_tag="py310")
    spec = parsed.spec
    assert (spec.kuberay_version, spec.ray_version, spec.image.tag) == ("v1.2.2", "2.40.0", "2.40.0.22541c-py310")
    assert (spec.head.resources.cpu, spec.head.resources.memory) == ("1", "4Gi")
    worker = spec.workers[0]
    assert (worker.replicas, worker.min_replicas, worker.max_replicas) == (2, 2, 2)  # no silent clamping
    assert spec.auth_mode == "none"  # KubeRay 1.2.2 and Ray 2.40 know no token auth
    assert parsed.warnings == ()


def test_defaults():
    spec = parse_values(python_tag="py311").spec
    assert spec.name == "ray" and spec.namespace is None
    assert spec.image.tag == f"{spec.ray_version}-py311"
    assert spec.head.ray_start_params == {"num-cpus": "0"}
    assert spec.auth_mode == "token"


def test_more_workers_than_the_chart_max_are_kept_not_clamped():
    spec = parse_values(params={"ray_num_workers": 5}).spec
    assert (spec.workers[0].replicas, spec.workers[0].max_replicas) == (5, 5)


def test_every_problem_is_reported_at_once_with_field_and_fix():
    found = problems(
        {"name": "Bad_Name", "imageTag": "x", "image": {"tag": "2.41.0-py311"},
         "head": {"cpu": -1, "memory": 0}, "worker": {"replicas": 5, "maxReplicas": 3, "cpu": 0}},
        {"ray_version": "2.60.0"})
    assert set(found) == {"name", "imageTag", "image.tag", "head.cpu", "head.memory", "worker.replicas", "worker.cpu"}
    assert "lowercase letters" in found["name"]
    assert "did you mean 'image'" in found["imageTag"]
    assert "Ray 2.41.0 but head.rayVersion is '2.60.0'" in found["image.tag"]
    assert "more than 0 CPU" in found["head.cpu"] and "more than 0" in found["head.memory"]
    assert "outside minReplicas..maxReplicas (3..3)" in found["worker.replicas"] and "clamp" in found["worker.replicas"]


@pytest.mark.parametrize("value", [2.4, 2.40, 2])
def test_version_that_yaml_turned_into_a_number_must_be_quoted(value):
    found = problems({"head": {"rayVersion": value}})
    assert "YAML read it as the number" in found["head.rayVersion"] and "quotes" in found["head.rayVersion"]
    assert "image.tag" not in found  # no follow-up noise from an unreadable version


def test_name_rules():
    assert "at most 53" in problems({"name": "a" * 54})["name"]
    assert "starting with a letter" in problems({"name": "1ray"})["name"]
    assert "namespace" in problems({"namespace": "Not_OK"})


def test_replica_bounds():
    assert "more than maxReplicas" in problems({"worker": {"minReplicas": 3, "maxReplicas": 1}})["worker.minReplicas"]
    assert "0 or more" in problems({"worker": {"replicas": -1}})["worker.replicas"]
    assert "whole number" in problems({"worker": {"replicas": 1.5}})["worker.replicas"]
    spec = parse_values({"worker": {"replicas": 2, "minReplicas": 1, "maxReplicas": 4}}).spec
    assert (spec.workers[0].min_replicas, spec.workers[0].max_replicas) == (1, 4)


def test_python_of_the_image_tag_differs_from_the_local_interpreter_is_a_warning():
    parsed = parse_values({"image": {"tag": "2.60.0-py310"}}, python_tag="py311")
    assert any("Python 3.10" in w and "-py311" in w for w in parsed.warnings)


def test_unparseable_tag_is_a_warning_not_an_error():
    parsed = parse_values({"image": {"tag": "nightly"}})
    assert any("cannot be checked" in w for w in parsed.warnings)


def test_unknown_keys_everywhere():
    found = problems({"head": {"cpus": 1}, "worker": {"replica": 2}, "bogus": 1}, {"ray_workers": 3})
    assert "did you mean 'cpu'" in found["head.cpus"]
    assert "did you mean 'replicas'" in found["worker.replica"]
    assert "unknown setting" in found["bogus"]


def test_unknown_flat_parameter():
    with pytest.raises(SpecError) as info:
        merge_flat_params({}, {"ray_num_worker": 2})
    assert "did you mean 'ray_num_workers'" in str(info.value)


def test_token_auth_needs_recent_versions():
    found = problems({"authMode": "token", "kuberayVersion": "v1.2.2"})
    assert "v1.5.1" in found["authMode"]
    assert "auto, token, none" in problems({"authMode": "maybe"})["authMode"]


def test_resources_chart_style_and_gpu():
    spec = parse_values({"worker": {"resources": {"limits": {"cpu": "500m", "memory": "2G", "nvidia.com/gpu": 1}}}}).spec
    assert (spec.workers[0].resources.cpu, spec.workers[0].resources.memory, spec.workers[0].resources.gpu) == \
        ("500m", "2G", 1)
    found = problems({"worker": {"cpu": 1, "resources": {"limits": {"cpu": 2}}}})
    assert "different values" in found["worker.cpu"]
    assert "whole number" in problems({"worker": {"gpu": 0.5}})["worker.gpu"]


def test_string_maps_keep_strings_and_convert_whole_numbers():
    spec = parse_values({"head": {"rayStartParams": {"num-cpus": 0, "dashboard-host": "0.0.0.0", "block": True}},
                         "labels": {"team": "a"}, "common": {"containerEnv": [{"name": "X", "value": "1"}]}}).spec
    assert spec.head.ray_start_params == {"num-cpus": "0", "dashboard-host": "0.0.0.0", "block": "true"}
    assert spec.env == {"X": "1"}
    assert "number" in problems({"head": {"rayStartParams": {"object-store-memory": 1.5}}})[
        "head.rayStartParams.object-store-memory"]
    assert "label value" in problems({"labels": {"team": "a b"}})["labels.team"]


def test_additional_worker_groups_and_duplicates():
    spec = parse_values({"additionalWorkerGroups": {"gpu": {"replicas": 1, "gpu": 1,
                                                            "nodeSelector": {"pool": "gpu"},
                                                            "tolerations": [{"key": "gpu", "operator": "Exists"}]},
                                                    "off": {"disabled": True}}}).spec
    assert [g.name for g in spec.workers] == ["workergroup", "gpu"]
    assert spec.workers[1].pod.node_selector == {"pool": "gpu"}
    found = problems({"additionalWorkerGroups": {"workergroup": {"replicas": 1}}})
    assert "used twice" in found["additionalWorkerGroups.workergroup.groupName"]


def test_autoscaling_defaults_min_to_zero():
    spec = parse_values({"head": {"enableInTreeAutoscaling": True}, "worker": {"replicas": 1, "maxReplicas": 4}}).spec
    assert spec.autoscaling is not None
    assert (spec.workers[0].min_replicas, spec.workers[0].max_replicas) == (0, 4)


def test_problems_in_late_fields_are_reported_with_early_ones():
    found = problems({"name": "Bad Name", "labels": {"team": "a b"}, "serviceAccountName": 5, "annotations": {"x": 1.5}})
    assert {"name", "labels.team", "serviceAccountName", "annotations.x"} <= set(found)


def test_the_shipped_example_values_are_valid():
    from pathlib import Path

    import yaml

    example = Path(__file__).resolve().parents[2] / "resource" / "values-example.yaml"
    spec = parse_values(yaml.safe_load(example.read_text()), python_tag="py311").spec
    assert [g.name for g in spec.workers] == ["cpu", "gpu"] and spec.workers[1].resources.gpu == 1
