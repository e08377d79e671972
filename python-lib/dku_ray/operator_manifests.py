"""The KubeRay operator's manifests (CRDs, RBAC, Deployment), read from KubeRay's own kustomize tree.

KubeRay publishes `ray-operator/config/{crd,rbac,manager}` for every release; `kubectl apply -k`
sets a namespace and the operator image on them. We do the same few transformations in pure
Python, so no kubectl, kustomize or helm is needed. The tree comes from a URL template (the
official repository by default, or an internal mirror) or from a local directory (air-gapped).
"""
from __future__ import annotations

import copy
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

from .constants import LABEL_MANAGED_BY, MANAGED_BY
from .errors import OperatorError

DEFAULT_SOURCE = "https://raw.githubusercontent.com/ray-project/kuberay/{version}/ray-operator/config/{path}"
DEFAULT_IMAGE = "quay.io/kuberay/operator"
DEFAULT_NAMESPACE = "kuberay-system"
LABEL_OPERATOR_VERSION = "dku-ray/kuberay-version"
_PARTS = ("crd", "rbac", "manager")
_PLACEHOLDER_IMAGE = "kuberay/operator"
# The CRDs are ~3.5 MB of YAML: libyaml parses them in about a second, pure Python in ~15 s.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class ManifestSource:
    """A URL template with `{version}` and `{path}`, or a local directory (which may contain `{version}`)."""

    location: str = DEFAULT_SOURCE

    @property
    def is_url(self) -> bool:
        return self.location.startswith(("http://", "https://", "file://"))

    def read(self, version: str, path: str) -> str:
        if self.is_url:
            if "{path}" not in self.location:
                raise OperatorError(f"The operator manifest URL template {self.location!r} has no {{path}} placeholder; "
                                    f"use for example {DEFAULT_SOURCE!r}")
            url = self.location.format(version=version, path=path)
            try:
                with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 (admin-configured URL)
                    return response.read().decode("utf-8")
            except (urllib.error.URLError, OSError) as exc:
                raise OperatorError(f"Could not download the KubeRay {version} manifest {url}: {exc}. Without internet "
                                    "access, point the operator source at a local copy of KubeRay's "
                                    "ray-operator/config directory or at an internal mirror.") from None
        file = Path(self.location.format(version=version)) / path
        try:
            return file.read_text()
        except OSError as exc:
            raise OperatorError(f"Could not read the KubeRay manifest {file}: {exc.strerror}. The operator source "
                                "must be a copy of KubeRay's ray-operator/config directory for this version.") from None


def load_operator_manifests(source: ManifestSource, version: str, namespace: str = DEFAULT_NAMESPACE,
                            image: str = DEFAULT_IMAGE) -> list[dict[str, Any]]:
    """CRDs first, then RBAC, then the operator Deployment, ready to apply in that order."""
    objects: list[dict[str, Any]] = []
    for part in _PARTS:
        objects += _read_part(source, version, part)
    return customize(objects, version=version, namespace=namespace, image=image)


def _read_part(source: ManifestSource, version: str, part: str) -> list[dict[str, Any]]:
    """The objects of one kustomization directory, with its `labels` applied like kustomize would."""
    kustomization = yaml.load(source.read(version, f"{part}/kustomization.yaml"), Loader=_LOADER) or {}
    objects = []
    for resource in kustomization.get("resources") or []:
        objects += [doc for doc in yaml.load_all(source.read(version, f"{part}/{resource}"), Loader=_LOADER) if doc]
    for label_set in kustomization.get("labels") or []:
        pairs = label_set.get("pairs") or {}
        for obj in objects:
            _add_labels(obj, pairs, selectors=bool(label_set.get("includeSelectors")))
    return objects


def customize(objects: Iterable[dict[str, Any]], version: str, namespace: str, image: str) -> list[dict[str, Any]]:
    """Pure: set namespace and image like `kustomize edit set`, and label everything as ours."""
    ours = {LABEL_MANAGED_BY: MANAGED_BY, LABEL_OPERATOR_VERSION: version}
    result = []
    for original in objects:
        obj = copy.deepcopy(original)
        kind = obj.get("kind")
        obj.setdefault("metadata", {}).setdefault("labels", {}).update(ours)
        if kind in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Namespace"):
            obj["metadata"].pop("namespace", None)
        else:
            obj["metadata"]["namespace"] = namespace
        for subject in obj.get("subjects") or []:
            if subject.get("kind") == "ServiceAccount":
                subject["namespace"] = namespace
        if kind == "Deployment":
            template = obj["spec"]["template"]
            template.setdefault("metadata", {}).setdefault("labels", {}).update(ours)
            for container in template["spec"].get("containers") or []:
                if container.get("image", "").split(":")[0] in (_PLACEHOLDER_IMAGE, image):
                    container["image"] = f"{image}:{version}"
        result.append(obj)
    order = {"CustomResourceDefinition": 0, "Namespace": 1, "ServiceAccount": 2, "ClusterRole": 3, "Role": 3,
             "ClusterRoleBinding": 4, "RoleBinding": 4, "Service": 5, "Deployment": 6}
    result.sort(key=lambda o: order.get(o.get("kind", ""), 5))
    return [namespace_object(namespace, version)] + result


def namespace_object(namespace: str, version: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_OPERATOR_VERSION: version}}}


def _add_labels(obj: dict[str, Any], pairs: dict[str, str], selectors: bool) -> None:
    obj.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    if not selectors:
        return
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Deployment":
        spec.setdefault("selector", {}).setdefault("matchLabels", {}).update(pairs)
        spec.setdefault("template", {}).setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
    elif obj.get("kind") == "Service":
        spec.setdefault("selector", {}).update(pairs)
