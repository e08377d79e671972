"""A small, typed REST layer over the official `kubernetes` client, working on plain dicts.

Why not the generated typed APIs: they build a pydantic model for every object, which is slow
on large lists and breaks on client/server version skew; and server-side apply of any kind needs
one uniform code path. The `ApiClient` still does auth (tokens, client certs, exec plugins) and TLS.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from .constants import FIELD_MANAGER
from .errors import KubernetesError


@dataclass(frozen=True)
class Kind:
    """Where a kind of object lives in the REST API."""

    api_version: str  # "v1", "apps/v1", "ray.io/v1"
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        root = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            root += f"/namespaces/{namespace}"
        path = f"{root}/{self.plural}"
        if name:
            path += f"/{name}"
        if subresource:
            path += f"/{subresource}"
        return path


POD = Kind("v1", "Pod", "pods")
SERVICE = Kind("v1", "Service", "services")
EVENT = Kind("v1", "Event", "events")
SECRET = Kind("v1", "Secret", "secrets")
NAMESPACE = Kind("v1", "Namespace", "namespaces", namespaced=False)
NODE = Kind("v1", "Node", "nodes", namespaced=False)
SERVICE_ACCOUNT = Kind("v1", "ServiceAccount", "serviceaccounts")
RESOURCE_QUOTA = Kind("v1", "ResourceQuota", "resourcequotas")
DEPLOYMENT = Kind("apps/v1", "Deployment", "deployments")
ROLE = Kind("rbac.authorization.k8s.io/v1", "Role", "roles")
ROLE_BINDING = Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings")
CLUSTER_ROLE = Kind("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", namespaced=False)
CLUSTER_ROLE_BINDING = Kind("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False)
CRD = Kind("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False)
RAYCLUSTER = Kind("ray.io/v1", "RayCluster", "rayclusters")
RAYJOB = Kind("ray.io/v1", "RayJob", "rayjobs")
RAYSERVICE = Kind("ray.io/v1", "RayService", "rayservices")

KINDS: dict[tuple[str, str], Kind] = {(k.api_version, k.kind): k for k in (
    POD, SERVICE, EVENT, SECRET, NAMESPACE, NODE, SERVICE_ACCOUNT, RESOURCE_QUOTA, DEPLOYMENT, ROLE, ROLE_BINDING,
    CLUSTER_ROLE, CLUSTER_ROLE_BINDING, CRD, RAYCLUSTER, RAYJOB, RAYSERVICE)}


def kind_of(body: Mapping[str, Any]) -> Kind:
    try:
        return KINDS[(body["apiVersion"], body["kind"])]
    except KeyError:
        raise ValueError(f"dku_ray does not know where {body.get('apiVersion')}/{body.get('kind')} lives") from None


class Kube:
    """Plain-dict access to one API server through an `ApiClient`."""

    def __init__(self, api_client: ApiClient, timeout: float = 30.0) -> None:
        self.api_client = api_client
        self.timeout = timeout

    @property
    def server(self) -> str:
        return str(self.api_client.configuration.host)

    def request(self, method: str, path: str, query: Mapping[str, Any] | None = None, body: Any = None,
                content_type: str | None = None, action: str = "") -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        params = [(key, str(value).lower() if isinstance(value, bool) else value)
                  for key, value in (query or {}).items() if value is not None]
        try:
            method, url, headers, body, _ = self.api_client.param_serialize(
                method, path, query_params=params, header_params=headers, body=body, auth_settings=["BearerToken"])
            response = self.api_client.call_api(method, url, header_params=headers, body=body,
                                                _request_timeout=self.timeout)
            response.read()
        except ApiException as exc:  # TLS problems surface as status 0
            raise translate(exc, action or f"{method} {path}", self.server) from None
        except urllib3.exceptions.HTTPError as exc:  # refused, timed out, DNS
            raise translate(ApiException(status=0, reason=type(exc).__name__), action or f"{method} {path}",
                            self.server) from None
        if not 200 <= response.status <= 299:
            raise translate(ApiException(status=response.status, reason=response.reason,
                                         body=response.data.decode("utf-8", "replace")), action or f"{method} {path}",
                            self.server)
        return json.loads(response.data) if response.data else {}

    def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", kind.path(namespace, name), action=f"read {kind.kind} {name}")
        except KubernetesError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, kind: Kind, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        """All matching objects; `namespace=None` lists across namespaces for namespaced kinds."""
        data = self.request("GET", kind.path(namespace), {"labelSelector": label_selector, "fieldSelector": field_selector},
                            action=f"list {kind.plural}")
        return list(data.get("items") or [])

    def apply(self, body: Mapping[str, Any], force: bool = True, dry_run: bool = False,
              field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply: create or update, owning exactly the fields we send."""
        kind = kind_of(body)
        metadata = body["metadata"]
        query = {"fieldManager": field_manager, "force": force, "dryRun": "All" if dry_run else None}
        return self.request("PATCH", kind.path(metadata.get("namespace"), metadata["name"]), query, body,
                            content_type="application/apply-patch+yaml",
                            action=f"apply {kind.kind} {metadata['name']}")

    def delete(self, kind: Kind, name: str, namespace: str | None = None, propagation: str = "Background") -> bool:
        """Delete; False when it was already gone (deleting is idempotent)."""
        try:
            self.request("DELETE", kind.path(namespace, name), body={"propagationPolicy": propagation},
                         action=f"delete {kind.kind} {name}")
            return True
        except KubernetesError as exc:
            if exc.status == 404:
                return False
            raise


_HINTS = {
    401: "the credentials in the kubeconfig were refused; refresh them (for EKS, check the AWS credentials of the "
         "DSS cluster) and try again",
    403: "the kubeconfig's user is not allowed to do this; ask a Kubernetes admin for the RBAC permission",
    404: "it does not exist; check the name and the namespace",
    409: "it conflicts with the current state; retry, it is safe",
    410: "the listing expired; retry, it is safe",
    422: "the API server rejected the object as invalid",
    429: "the API server is overloaded; retry in a moment",
}


def translate(exc: ApiException, action: str, server: str = "") -> KubernetesError:
    """An ApiException as a KubernetesError whose message says what to do next."""
    status = exc.status or 0
    if status == 0:
        return KubernetesError(f"Could not {action}: the Kubernetes API server {server} is unreachable ({exc.reason}). "
                               "Check that the cluster is running and that this machine can reach it.", status=None)
    detail = _server_message(exc.body) or (exc.reason or "")
    hint = _HINTS.get(status) or ("the API server failed; retry, and check its health if it persists"
                                  if status >= 500 else "")
    message = f"Could not {action} (HTTP {status}): {detail}"
    if hint:
        message += f". {hint[0].upper()}{hint[1:]}."
    return KubernetesError(message, status=status)


def _server_message(body: object) -> str:
    if not body:
        return ""
    try:
        data = json.loads(body) if isinstance(body, (str, bytes)) else body
    except ValueError:
        return str(body)[:500]
    return str(data.get("message", "")) if isinstance(data, dict) else str(data)[:500]


def iter_conditions(obj: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    yield from ((obj.get("status") or {}).get("conditions") or [])
