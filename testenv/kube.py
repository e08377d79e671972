"""Small helpers on top of the official kubernetes client: server-side apply, CRD install.

Server-side apply is used for CRDs because the KubeRay CRDs (~900 KB) are too large for
client-side apply (its last-applied annotation is capped at 256 KiB).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Iterable

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .versions import Versions, kuberay_module_dir, kwok_module_dir

FIELD_MANAGER = "dku-ray-testenv"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"

Obj = dict[str, Any]


def load_yaml_documents(paths: Iterable[Path]) -> list[Obj]:
    docs: list[Obj] = []
    for path in paths:
        docs.extend(d for d in yaml.load_all(path.read_text(), Loader=_LOADER) if d)
    return docs


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DOC_SEPARATOR = re.compile(r"^---[ \t]*$", re.MULTILINE)


def split_yaml_documents(text: str) -> list[str]:
    """Split a multi-document YAML text without parsing it (the apiserver parses it)."""
    return [d for d in _DOC_SEPARATOR.split(text) if d.strip() and not all(
        ln.lstrip().startswith("#") or not ln.strip() for ln in d.splitlines())]


def yaml_header(doc: str) -> Obj:
    """apiVersion/kind/metadata of a YAML document, parsing only the part before `spec:`.

    The KubeRay CRDs are ~1 MB each: parsing them fully in Python costs seconds, while the
    apiserver only needs the raw text for server-side apply.
    """
    m = re.search(r"^spec:", doc, re.MULTILINE)
    head = yaml.load(doc[: m.start()] if m else doc, Loader=_LOADER)
    return {k: head[k] for k in ("apiVersion", "kind", "metadata")}


def json_body(resp: Any) -> Any:
    """Decode a response obtained with `_preload_content=False` (skips the slow model parsing)."""
    return json.loads(resp.data)


def request(api: client.ApiClient, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
            headers: dict[str, str] | None = None, body: Any = None, ok: tuple[int, ...] = (200, 201)) -> Any:
    """Raw REST call through the ApiClient (its auth settings apply); returns decoded JSON."""
    params = api.param_serialize(
        method, path, query_params=query or [], header_params={"Accept": "application/json", **(headers or {})},
        body=body, auth_settings=["BearerToken"],
    )
    resp = api.call_api(*params)
    resp.read()
    if resp.status not in ok:
        raise ApiException(http_resp=resp)
    return json.loads(resp.data) if resp.data else None


def _resource_path(api: client.ApiClient, obj: Obj) -> str:
    """REST path of an object, found through API discovery (cached per ApiClient)."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    cache: dict[tuple[str, str], tuple[str, bool]] = api.__dict__.setdefault("_testenv_discovery", {})
    if (api_version, kind) not in cache:
        base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        for res in request(api, "GET", base)["resources"]:
            if "/" not in res["name"]:
                cache[(api_version, res["kind"])] = (f"{base}/{res['name']}", res["namespaced"])
    try:
        collection, namespaced = cache[(api_version, kind)]
    except KeyError:
        raise ApiException(status=404, reason=f"{kind} not served in {api_version}") from None
    meta = obj["metadata"]
    if namespaced:
        ns = meta.get("namespace") or "default"
        prefix, _, plural = collection.rpartition("/")
        collection = f"{prefix}/namespaces/{ns}/{plural}"
    return f"{collection}/{meta['name']}"


def server_side_apply(api: client.ApiClient, obj: Obj | str, *, field_manager: str = FIELD_MANAGER,
                      force: bool = True) -> Obj:
    """PATCH with content-type application/apply-patch+yaml (obj: a dict or one YAML document)."""
    header = yaml_header(obj) if isinstance(obj, str) else obj
    query = [("fieldManager", field_manager)] + ([("force", "true")] if force else [])
    return request(api, "PATCH", _resource_path(api, header), query=query,
                   headers={"Content-Type": APPLY_CONTENT_TYPE}, body=obj)


def wait_crds_established(api: client.ApiClient, names: Iterable[str], timeout: float = 60.0) -> None:
    ext = client.ApiextensionsV1Api(api)
    pending = set(names)
    deadline = time.monotonic() + timeout
    while pending:
        for name in sorted(pending):
            crd = json_body(ext.read_custom_resource_definition(name, _preload_content=False))
            conds = crd.get("status", {}).get("conditions") or []
            if any(c["type"] == "Established" and c["status"] == "True" for c in conds):
                pending.discard(name)
        if pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRDs not Established after {timeout}s: {sorted(pending)}")
            time.sleep(0.1)


def apply_crd_files(api: client.ApiClient, files: Iterable[Path], timeout: float = 60.0) -> list[str]:
    """Server-side apply CRD files (sent as raw YAML) and wait until all are Established."""
    names = []
    for path in files:
        for doc in split_yaml_documents(path.read_text()):
            obj = server_side_apply(api, doc)
            names.append(obj["metadata"]["name"])
    wait_crds_established(api, names, timeout)
    return names


def kuberay_crd_dir(versions: Versions | None = None) -> Path:
    return kuberay_module_dir(versions) / "config" / "crd" / "bases"


def install_kuberay_crds(api_client: client.ApiClient, versions: Versions | None = None,
                         timeout: float = 60.0) -> list[str]:
    """Install the official KubeRay CRDs (from the pinned Go module) with server-side apply."""
    return apply_crd_files(api_client, sorted(kuberay_crd_dir(versions).glob("*.yaml")), timeout)


KWOK_CRDS = ("portforwards", "clusterportforwards")


def install_kwok_crds(api_client: client.ApiClient, versions: Versions | None = None) -> list[str]:
    """Install kwok's PortForward/ClusterPortForward CRDs, which kwok reads with --enable-crds."""
    base = kwok_module_dir(versions) / "kustomize" / "crd" / "bases"
    return apply_crd_files(api_client, [base / f"kwok.x-k8s.io_{n}.yaml" for n in KWOK_CRDS])


def delete_ignore_missing(fn: Any, *args: Any, **kwargs: Any) -> None:
    """Call a client delete method, treating 404 as success."""
    try:
        fn(*args, _preload_content=False, **kwargs)
    except ApiException as exc:
        if exc.status != 404:
            raise
