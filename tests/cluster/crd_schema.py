"""Turn a CRD's openAPIV3Schema into a strict JSON Schema, to validate manifests offline.

Strict: objects without `x-kubernetes-preserve-unknown-fields` reject unknown properties, so a
typo fails here even though an API server would silently prune it. CEL rules are not evaluated.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml


def strict_schema(crd_path: Path, version: str = "v1") -> dict[str, Any]:
    crd = yaml.load(crd_path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    schema = copy.deepcopy(served["schema"]["openAPIV3Schema"])
    _tighten(schema)
    props = schema.setdefault("properties", {})
    props["metadata"] = {"type": "object"}
    return schema


def _tighten(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _tighten(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        node["additionalProperties"] = False
    if node.get("x-kubernetes-int-or-string"):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    for value in list(node.values()):
        _tighten(value)
