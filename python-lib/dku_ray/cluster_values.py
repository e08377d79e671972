"""Turn Helm-style values (and the reference plugin's flat parameters) into a ClusterSpec.

The values follow the KubeRay `ray-cluster` chart where it has a key (`image`, `head`,
`worker`, `additionalWorkerGroups`, `imagePullSecrets`, `common.containerEnv`, ...) plus a few
of ours (`name`, `namespace`, `kuberayVersion`, `authMode`). Every problem is collected and
raised once, as a SpecError naming each field and its fix; nothing is silently clamped.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from . import cluster_spec as cs
from .errors import Problem, SpecError
from .quantity import parse_cpu, parse_gpu, parse_memory
from .versions import parse_version

MAX_NAME_LENGTH = 53  # KubeRay's MaxRayClusterNameLength: pod and service names derive from it
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_TAG_RAY = re.compile(r"^(\d+\.\d+\.\d+)")
_TAG_PY = re.compile(r"-py(\d)(\d+)")
GPU_KEY = "nvidia.com/gpu"

# Reference parameter names (dataiku/dss-plugin-raycluster) and ours, mapped to values paths.
FLAT_PARAMS: dict[str, tuple[str, ...]] = {
    "kuberay_version": ("kuberayVersion",),
    "image_tag": ("image", "tag"),
    "ray_version": ("head", "rayVersion"),
    "ray_head_cpu": ("head", "cpu"),
    "ray_head_ram": ("head", "memory"),
    "ray_num_workers": ("worker", "replicas"),
    "ray_worker_cpu": ("worker", "cpu"),
    "ray_worker_ram": ("worker", "memory"),
    "ray_cluster_name": ("name",),
    "namespace": ("namespace",),
    "image_repository": ("image", "repository"),
    "ray_head_num_cpus": ("head", "rayStartParams", "num-cpus"),
    "ray_worker_gpu": ("worker", "gpu"),
    "ray_worker_min": ("worker", "minReplicas"),
    "ray_worker_max": ("worker", "maxReplicas"),
    "autoscaling": ("head", "enableInTreeAutoscaling"),
    "auth_mode": ("authMode",),
    "ray_head_node_selector": ("head", "nodeSelector"),
    "ray_worker_node_selector": ("worker", "nodeSelector"),
}

_TOP_KEYS = {"name", "namespace", "kuberayVersion", "authMode", "image", "imagePullSecrets", "labels",
             "annotations", "common", "head", "worker", "additionalWorkerGroups", "service", "serviceAccountName"}
_POD_KEYS = {"cpu", "memory", "gpu", "resources", "rayStartParams", "nodeSelector", "tolerations", "labels",
             "annotations", "containerEnv"}
_HEAD_KEYS = _POD_KEYS | {"rayVersion", "enableInTreeAutoscaling", "autoscalerOptions"}
_WORKER_KEYS = _POD_KEYS | {"groupName", "replicas", "minReplicas", "maxReplicas", "disabled"}


@dataclass(frozen=True)
class ParsedSpec:
    spec: cs.ClusterSpec
    warnings: tuple[str, ...]


def merge_flat_params(values: Mapping[str, Any] | None, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Overlay flat parameters on values, like `helm --set` over `-f`; empty parameters are ignored."""
    merged, problems = _merge(values, params)
    if problems:
        raise SpecError(problems)
    return merged


def _merge(values: Mapping[str, Any] | None, params: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[Problem]]:
    merged = _deep_copy(values or {})
    problems = []
    for key, value in (params or {}).items():
        if key not in FLAT_PARAMS:
            problems.append(Problem(key, _unknown_key_message(key, FLAT_PARAMS)))
            continue
        if value is None or value == "" or value == {}:
            continue
        node = merged
        *parents, leaf = FLAT_PARAMS[key]
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return merged, problems


def parse_values(values: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None,
                 python_tag: str | None = None) -> ParsedSpec:
    """Validate everything and return the spec, or raise one SpecError listing every problem."""
    reader = _Reader(python_tag or cs.local_python_tag())
    merged, reader.problems = _merge(values, params)
    spec = reader.cluster(merged)
    if reader.problems:
        raise SpecError(reader.problems)
    assert spec is not None
    return ParsedSpec(spec, tuple(reader.warnings))


class _Reader:
    """Walks the values, converting what it can and recording every problem on the way."""

    def __init__(self, python_tag: str) -> None:
        self.python_tag = python_tag
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    # -- generic helpers -------------------------------------------------------------------
    def mapping(self, value: Any, path: str, allowed: set[str] | None = None) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"must be a mapping of keys to values, got {type(value).__name__}")
            return {}
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    self.fail(_join(path, key), _unknown_key_message(key, allowed))
        return dict(value)

    def string(self, value: Any, path: str, default: str | None = None) -> str | None:
        """A string that must stay a string: YAML reads `2.40` as the number 2.4, so say so."""
        if value is None or value == "":
            return default
        if isinstance(value, bool) or isinstance(value, (int, float)):
            kind = "boolean" if isinstance(value, bool) else "number"
            self.fail(path, f"must be a string, but YAML read it as the {kind} {value!r}; put it in quotes "
                            "(unquoted, 2.40 becomes the number 2.4 and yes becomes true)")
            return default
        if not isinstance(value, str):
            self.fail(path, f"must be a string, got {type(value).__name__}")
            return default
        return value.strip()

    def string_map(self, value: Any, path: str) -> dict[str, str]:
        """Labels, annotations, rayStartParams: string values; whole numbers and booleans are converted."""
        result: dict[str, str] = {}
        for key, item in self.mapping(value, path).items():
            if isinstance(item, bool):
                result[str(key)] = "true" if item else "false"
            elif isinstance(item, int):
                result[str(key)] = str(item)
            else:
                text = self.string(item, _join(path, key))
                if text is not None:
                    result[str(key)] = text
        return result

    def integer(self, value: Any, path: str, minimum: int = 0) -> int | None:
        if value is None or value == "":
            return None
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            self.fail(path, f"must be a whole number, got {value!r}")
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(path, f"must be a whole number, got {value!r}")
            return None
        if number < minimum:
            self.fail(path, f"must be {minimum} or more, got {number}")
            return None
        return number

    def convert(self, parse: Callable[[Any], Any], value: Any, path: str) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            self.fail(path, str(exc))
            return None

    # -- the cluster -------------------------------------------------------------------------
    def cluster(self, values: Mapping[str, Any]) -> cs.ClusterSpec | None:
        top = self.mapping(values, "values", _TOP_KEYS)
        name = self.name(top.get("name"))
        namespace = self.string(top.get("namespace"), "namespace")
        if namespace and not (_DNS1123.match(namespace) and len(namespace) <= 63):
            self.fail("namespace", f"{namespace!r} is not a valid namespace: use lowercase letters, digits and '-'")
        kuberay_version = self.string(top.get("kuberayVersion"), "kuberayVersion", cs.DEFAULT_KUBERAY_VERSION)
        if kuberay_version and not kuberay_version.startswith("v"):
            kuberay_version = "v" + kuberay_version
        if kuberay_version and parse_version(kuberay_version) is None:
            self.fail("kuberayVersion", f"{kuberay_version!r} is not a KubeRay release such as \"v1.6.2\"")
        head_values = self.mapping(top.get("head"), "head", _HEAD_KEYS)
        problems_before = len(self.problems)
        ray_version = self.string(head_values.get("rayVersion"), "head.rayVersion", cs.DEFAULT_RAY_VERSION)
        if ray_version and parse_version(ray_version) is None:
            self.fail("head.rayVersion", f"{ray_version!r} is not a Ray version such as \"2.60.0\"")
        if len(self.problems) > problems_before:
            ray_version = None  # do not check the image tag against a version we could not read
        image = self.image(top.get("image"), ray_version)
        common = self.mapping(top.get("common"), "common", {"containerEnv"})
        env = self.env(common.get("containerEnv"), "common.containerEnv")
        autoscaling = self.autoscaling(head_values)
        head = self.head(head_values)
        workers = self.workers(top, autoscaling is not None)
        auth_mode = self.auth_mode(top.get("authMode"), kuberay_version, ray_version)
        pull_secrets = self.pull_secrets(top.get("imagePullSecrets"))
        service = self.mapping(top.get("service"), "service", {"type"})
        service_type = self.string(service.get("type"), "service.type", "ClusterIP")
        if service_type not in ("ClusterIP", "NodePort", "LoadBalancer"):
            self.fail("service.type", f"{service_type!r} is not one of ClusterIP, NodePort, LoadBalancer")
        service_account = self.string(top.get("serviceAccountName"), "serviceAccountName")
        labels = self.labels(top.get("labels"), "labels")
        annotations = self.string_map(top.get("annotations"), "annotations")
        if self.problems or head is None or image is None:
            return None
        return cs.ClusterSpec(
            name=name or cs.DEFAULT_NAME, namespace=namespace, kuberay_version=kuberay_version or "",
            ray_version=ray_version or "", image=image,
            head=cs.HeadSpec(head.resources, head.ray_start_params, head.pod, service_type or "ClusterIP"),
            workers=tuple(workers), auth_mode=auth_mode, autoscaling=autoscaling,
            image_pull_secrets=tuple(pull_secrets),
            service_account=service_account, labels=labels, annotations=annotations, env=env,
        )

    def name(self, value: Any) -> str:
        name = self.string(value, "name", cs.DEFAULT_NAME) or cs.DEFAULT_NAME
        if not _DNS1035.match(name):
            self.fail("name", f"{name!r} is not a valid Ray cluster name: use lowercase letters, digits and '-', "
                              "starting with a letter and ending with a letter or digit (for example \"ray-team-a\")")
        elif len(name) > MAX_NAME_LENGTH:
            self.fail("name", f"is {len(name)} characters long; KubeRay allows at most {MAX_NAME_LENGTH}")
        return name

    def image(self, value: Any, ray_version: str | None) -> cs.Image | None:
        image = self.mapping(value, "image", {"repository", "tag", "pullPolicy"})
        repository = self.string(image.get("repository"), "image.repository", cs.DEFAULT_IMAGE_REPOSITORY)
        tag = self.string(image.get("tag"), "image.tag", f"{ray_version or cs.DEFAULT_RAY_VERSION}-{self.python_tag}")
        policy = self.string(image.get("pullPolicy"), "image.pullPolicy", "IfNotPresent")
        if policy not in ("Always", "IfNotPresent", "Never"):
            self.fail("image.pullPolicy", f"{policy!r} is not one of Always, IfNotPresent, Never")
        if not tag or not repository:
            return None
        match = _TAG_RAY.match(tag)
        if ray_version is None:
            pass
        elif match is None:
            self.warnings.append(f"image.tag {tag!r} does not start with a Ray version, so it cannot be checked "
                                 f"against head.rayVersion {ray_version!r}")
        elif match.group(1) != ray_version:
            self.fail("image.tag", f"{tag!r} is Ray {match.group(1)} but head.rayVersion is {ray_version!r}; "
                                   "make them the same Ray version")
        python = _TAG_PY.search(tag)
        if python and f"py{python.group(1)}{python.group(2)}" != self.python_tag:
            self.warnings.append(f"image.tag {tag!r} is built for Python {python.group(1)}.{python.group(2)} but this code "
                                 f"env runs Python {self.python_tag[2]}.{self.python_tag[3:]}; Ray jobs submitted from here "
                                 "will fail. Use an image tag ending in -" + self.python_tag)
        return cs.Image(repository or "", tag, policy or "IfNotPresent")

    def resources(self, group: Mapping[str, Any], path: str, default_cpu: Any, default_memory: Any) -> cs.Resources | None:
        """`cpu`/`memory`/`gpu` shorthands, or chart-style `resources` (requests are set equal to limits)."""
        chart = self.mapping(group.get("resources"), f"{path}.resources", {"requests", "limits"})
        requests = self.mapping(chart.get("requests"), f"{path}.resources.requests")
        limits = self.mapping(chart.get("limits"), f"{path}.resources.limits")
        picked: dict[str, Any] = {}
        for key, short in (("cpu", "cpu"), ("memory", "memory"), (GPU_KEY, "gpu")):
            given = [v for v in (group.get(short), limits.get(key), requests.get(key)) if v not in (None, "")]
            if len({str(v) for v in given}) > 1:
                self.fail(f"{path}.{short}", f"set to different values {sorted({str(v) for v in given})}; dku_ray sets "
                                             "requests equal to limits, so give one value")
            picked[short] = given[0] if given else None
        cpu = self.convert(parse_cpu, picked["cpu"] if picked["cpu"] is not None else default_cpu, f"{path}.cpu")
        memory = self.convert(parse_memory, picked["memory"] if picked["memory"] is not None else default_memory,
                              f"{path}.memory")
        gpu = self.convert(parse_gpu, picked["gpu"], f"{path}.gpu")
        if cpu is None or memory is None or gpu is None:
            return None
        return cs.Resources(cpu, memory, gpu)

    def pod(self, group: Mapping[str, Any], path: str) -> cs.PodOptions:
        return cs.PodOptions(
            node_selector=self.string_map(group.get("nodeSelector"), f"{path}.nodeSelector"),
            tolerations=self.tolerations(group.get("tolerations"), f"{path}.tolerations"),
            labels=self.labels(group.get("labels"), f"{path}.labels"),
            annotations=self.string_map(group.get("annotations"), f"{path}.annotations"),
            env=self.env(group.get("containerEnv"), f"{path}.containerEnv"),
        )

    def head(self, head: Mapping[str, Any]) -> cs.HeadSpec | None:
        params = self.string_map(head.get("rayStartParams"), "head.rayStartParams")
        params.setdefault("num-cpus", "0")  # Ray's advice: keep tasks off the head
        resources = self.resources(head, "head", 1, 4)
        if resources is None:
            return None
        return cs.HeadSpec(resources, params, self.pod(head, "head"))

    def workers(self, top: Mapping[str, Any], autoscaling: bool) -> list[cs.WorkerGroupSpec]:
        groups: list[tuple[str, Mapping[str, Any]]] = [("worker", self.mapping(top.get("worker"), "worker", _WORKER_KEYS))]
        extra = self.mapping(top.get("additionalWorkerGroups"), "additionalWorkerGroups")
        for group_name, group in extra.items():
            groups.append((f"additionalWorkerGroups.{group_name}",
                           {"groupName": group_name, **self.mapping(group, f"additionalWorkerGroups.{group_name}",
                                                                    _WORKER_KEYS - {"groupName"})}))
        result, seen = [], set()
        for path, group in groups:
            if group.get("disabled") is True:
                continue
            default_name = cs.DEFAULT_WORKER_GROUP if path == "worker" else None
            worker = self.worker(group, path, autoscaling, default_name)
            if worker is None:
                continue
            if worker.name in seen:
                self.fail(f"{path}.groupName", f"worker group name {worker.name!r} is used twice; give each group its own name")
            seen.add(worker.name)
            result.append(worker)
        return result

    def worker(self, group: Mapping[str, Any], path: str, autoscaling: bool, default_name: str | None) -> cs.WorkerGroupSpec | None:
        name = self.string(group.get("groupName"), f"{path}.groupName", default_name) or ""
        if not _DNS1123.match(name) or len(name) > 63:
            self.fail(f"{path}.groupName", f"{name!r} is not a valid group name: use lowercase letters, digits and '-'")
        replicas = self.integer(group.get("replicas"), f"{path}.replicas")
        minimum = self.integer(group.get("minReplicas"), f"{path}.minReplicas")
        maximum = self.integer(group.get("maxReplicas"), f"{path}.maxReplicas")
        replicas = 1 if replicas is None else replicas
        if minimum is None:
            minimum = 0 if autoscaling else replicas if maximum is None else min(replicas, maximum)
        if maximum is None:
            maximum = max(replicas, minimum)
        if minimum > maximum:
            self.fail(f"{path}.minReplicas", f"minReplicas {minimum} is more than maxReplicas {maximum}")
        elif not minimum <= replicas <= maximum:
            self.fail(f"{path}.replicas", f"{replicas} workers is outside minReplicas..maxReplicas ({minimum}..{maximum}); "
                                          "KubeRay would silently clamp it, so change replicas or the bounds")
        resources = self.resources(group, path, 1, 4)
        params = self.string_map(group.get("rayStartParams"), f"{path}.rayStartParams")
        pod = self.pod(group, path)
        if resources is None:
            return None
        return cs.WorkerGroupSpec(name, replicas, minimum, maximum, resources, params, pod)

    def autoscaling(self, head: Mapping[str, Any]) -> cs.AutoscalingSpec | None:
        enabled = head.get("enableInTreeAutoscaling")
        if enabled in (None, "", False):
            return None
        if enabled is not True:
            self.fail("head.enableInTreeAutoscaling", f"must be true or false, got {enabled!r}")
            return None
        options = self.mapping(head.get("autoscalerOptions"), "head.autoscalerOptions", {"idleTimeoutSeconds", "upscalingMode"})
        idle = self.integer(options.get("idleTimeoutSeconds"), "head.autoscalerOptions.idleTimeoutSeconds")
        mode = self.string(options.get("upscalingMode"), "head.autoscalerOptions.upscalingMode", "Default")
        if mode not in ("Default", "Aggressive", "Conservative"):
            self.fail("head.autoscalerOptions.upscalingMode", f"{mode!r} is not one of Default, Aggressive, Conservative")
        return cs.AutoscalingSpec(60 if idle is None else idle, mode or "Default")

    def auth_mode(self, value: Any, kuberay_version: str | None, ray_version: str | None) -> cs.AuthMode:
        """`auto` (default) turns token auth on wherever the KubeRay and Ray versions support it."""
        mode = self.string(value, "authMode", "auto")
        supported = (parse_version(kuberay_version or "") or (0,)) >= cs.TOKEN_AUTH_MIN_KUBERAY and \
                    (parse_version(ray_version or "") or (0,)) >= cs.TOKEN_AUTH_MIN_RAY
        if mode == "auto":
            return "token" if supported else "none"
        if mode == "token" and not supported:
            self.fail("authMode", "token auth needs KubeRay v1.5.1 or later and Ray 2.52.0 or later; raise "
                                  "kuberayVersion and head.rayVersion, or set authMode to none")
        if mode not in ("token", "none"):
            self.fail("authMode", f"{mode!r} is not one of auto, token, none")
            return "none"
        return mode  # type: ignore[return-value]

    def pull_secrets(self, value: Any) -> list[str]:
        if value in (None, ""):
            return []
        if not isinstance(value, list):
            self.fail("imagePullSecrets", "must be a list of secret names, or of {name: ...} entries")
            return []
        names = []
        for index, item in enumerate(value):
            name = item.get("name") if isinstance(item, Mapping) else item
            text = self.string(name, f"imagePullSecrets[{index}]")
            if text:
                names.append(text)
        return names

    def tolerations(self, value: Any, path: str) -> tuple[Mapping[str, object], ...]:
        if value in (None, ""):
            return ()
        allowed = {"key", "operator", "value", "effect", "tolerationSeconds"}
        if not isinstance(value, list):
            self.fail(path, "must be a list of tolerations ({key, operator, value, effect})")
            return ()
        return tuple(self.mapping(item, f"{path}[{i}]", allowed) for i, item in enumerate(value))

    def labels(self, value: Any, path: str) -> dict[str, str]:
        labels = self.string_map(value, path)
        for key, item in labels.items():
            if len(item) > 63 or not re.match(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", item):
                self.fail(_join(path, key), f"{item!r} is not a valid label value (63 characters at most: letters, "
                                            "digits, '-', '_' and '.')")
        return labels

    def env(self, value: Any, path: str) -> dict[str, str]:
        """`containerEnv` as a list of {name, value} (chart style) or a plain mapping."""
        if isinstance(value, list):
            pairs = {}
            for i, item in enumerate(value):
                entry = self.mapping(item, f"{path}[{i}]", {"name", "value"})
                if "name" in entry:
                    pairs[str(entry["name"])] = entry.get("value", "")
            value = pairs
        return self.string_map(value, path)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path and path != "values" else str(key)


def _unknown_key_message(key: str, allowed: Mapping[str, Any] | set[str]) -> str:
    close = difflib.get_close_matches(str(key), list(allowed), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown setting; {hint}supported: {', '.join(sorted(allowed))}"


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value
