"""The DSS public API endpoints the stand-in serves, each with the dataikuapi method that calls it.

Paths are relative to `/dip/publicapi` (dataikuapi's `DSSClient._perform_http` adds that prefix).
Errors use DSS's JSON body `{"errorType", "message", "detailedMessage"}`, which dataikuapi turns
into `DataikuException("<errorType>: <detailedMessage or message>")`; the HTTP status is lost on
the client side, so the errorType class names matter:

- 404 `com.dataiku.dip.server.controllers.NotFoundException` ("dataset does not exist: ...").
- 403 `com.dataiku.dip.exceptions.UnauthorizedException`: what real DSS 14 returns for an unknown
  or unreadable project ("Failed to read project permissions"); used here for every refusal.
- 401 same class, for a missing or wrong API key / ticket (the exact DSS text is not verified).
"""
from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote

if TYPE_CHECKING:
    from .server import Principal, State

NOT_FOUND = "com.dataiku.dip.server.controllers.NotFoundException"
UNAUTHORIZED = "com.dataiku.dip.exceptions.UnauthorizedException"


class ApiError(Exception):
    """An HTTP error with DSS's error body."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"errorType": self.error_type, "message": self.message, "detailedMessage": self.message}


Handler = Callable[["State", "Principal", dict, Any], Any]
_ROUTES: list[tuple[str, re.Pattern[str], Handler]] = []


def route(method: str, pattern: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _ROUTES.append((method, re.compile("^" + pattern + "$"), fn))
        return fn
    return register


def dispatch(state: "State", principal: "Principal", method: str, path: str, query: dict) -> tuple[int, Any]:
    """(status, JSON body) for an authenticated request; raises ApiError for errors."""
    allowed = []
    for verb, pattern, fn in _ROUTES:
        match = pattern.match(path)
        if match:
            if verb != method:
                allowed.append(verb)
                continue
            args = {k: unquote(v) for k, v in match.groupdict().items()}
            return 200, fn(state, principal, query, args)
    if allowed:
        raise ApiError(405, "java.lang.UnsupportedOperationException", f"{method} not supported on {path}")
    raise ApiError(404, NOT_FOUND, f"No API endpoint {method} {path} in the DSS stand-in")


def _require_admin(principal: "Principal") -> None:
    if not principal.admin:
        raise ApiError(403, UNAUTHORIZED, "Action forbidden, you are not admin")


def _cluster(state: "State", cluster_id: str) -> dict:
    if cluster_id not in state.clusters:
        raise ApiError(404, NOT_FOUND, f"Cluster not found: {cluster_id}")
    return state.clusters[cluster_id]


def _project(state: "State", project_key: str) -> dict:
    if project_key not in state.projects:
        # What DSS answers for an unknown project key (verified on DSS 14 by others).
        raise ApiError(403, UNAUTHORIZED, "Failed to read project permissions")
    return state.projects[project_key]


# ---- identity -----------------------------------------------------------------------------
@route("GET", r"/auth/info")
def auth_info(state: "State", principal: "Principal", query: dict, args: dict) -> dict:
    """DSSClient.get_auth_info()"""
    return {"authIdentifier": principal.login, "groups": list(principal.groups), "userProfile": "DESIGNER"}


# ---- clusters (admin only, like DSS's /admin/...) -----------------------------------------
@route("GET", r"/admin/clusters/")
def list_clusters(state: "State", principal: "Principal", query: dict, args: dict) -> list:
    """DSSClient.list_clusters()"""
    _require_admin(principal)
    return [
        {"id": cid, "name": c["settings"]["name"], "type": c["settings"]["type"],
         "architecture": c["settings"]["architecture"], "state": c["status"]["state"]}
        for cid, c in state.clusters.items()
    ]


@route("GET", r"/admin/clusters/(?P<cluster_id>[^/]+)")
def cluster_settings(state: "State", principal: "Principal", query: dict, args: dict) -> dict:
    """DSSCluster.get_settings() (and the deprecated get_definition())"""
    _require_admin(principal)
    return _cluster(state, args["cluster_id"])["settings"]


@route("GET", r"/admin/clusters/(?P<cluster_id>[^/]+)/status")
def cluster_status(state: "State", principal: "Principal", query: dict, args: dict) -> dict:
    """DSSCluster.get_status() -> DSSClusterStatus; `state` is NONE, STARTING, RUNNING or STOPPING"""
    _require_admin(principal)
    return _cluster(state, args["cluster_id"])["status"]


@route("GET", r"/admin/variables/")
def instance_variables(state: "State", principal: "Principal", query: dict, args: dict) -> dict:
    """DSSClient.get_global_variables() -> DSSInstanceVariables (administrators only)"""
    _require_admin(principal)
    return state.instance_variables


# ---- connections ----------------------------------------------------------------------------
@route("GET", r"/connections/(?P<name>[^/]+)/info")
def connection_info(state: "State", principal: "Principal", query: dict, args: dict) -> dict:
    """DSSConnection.get_info(contextual_project_key) -> DSSConnectionInfo (query: contextualProjectKey)"""
    name = args["name"]
    if name not in state.connections:
        raise ApiError(404, NOT_FOUND, f"Connection not found: {name}")
    conn = state.connections[name]
    readers = conn["readable_by"]
    readable = principal.admin or readers == "ALL" or (
        not isinstance(readers, str) and bool(set(readers) & set(principal.groups))
    )
    if not readable:
        raise ApiError(403, UNAUTHORIZED, f"Connection details not readable by {principal.login}: {name}")
    info = dict(conn["info"])
    project_key = query.get("contextualProjectKey")
    if project_key and project_key not in state.projects:
        raise ApiError(403, UNAUTHORIZED, "Failed to read project permissions")
    return info


# ---- projects -------------------------------------------------------------------------------
@route("GET", r"/projects/(?P<project_key>[^/]+)/datasets/(?P<name>[^/]+)")
def dataset_settings(state: "State", principal: "Principal", query: dict, args: dict) -> dict:
    """DSSDataset.get_settings() / get_definition()"""
    datasets = _project(state, args["project_key"])["datasets"]
    if args["name"] not in datasets:
        raise ApiError(404, NOT_FOUND, f"dataset does not exist: {args['project_key']}.{args['name']}")
    return datasets[args["name"]]


@route("GET", r"/projects/(?P<project_key>[^/]+)/managedfolders/(?P<odb_id>[^/]+)")
def folder_settings(state: "State", principal: "Principal", query: dict, args: dict) -> dict:
    """DSSManagedFolder.get_settings() / get_definition()"""
    folders = _project(state, args["project_key"])["folders"]
    if args["odb_id"] not in folders:
        raise ApiError(404, NOT_FOUND, f"managed folder does not exist: {args['project_key']}.{args['odb_id']}")
    return folders[args["odb_id"]]


@route("GET", r"/projects/(?P<project_key>[^/]+)/variables/")
def project_variables(state: "State", principal: "Principal", query: dict, args: dict) -> dict:
    """DSSProject.get_variables() -> {"standard": {...}, "local": {...}}"""
    return _project(state, args["project_key"])["variables"]


@route("GET", r"/projects/(?P<project_key>[^/]+)/variables-resolved")
def resolved_variables(state: "State", principal: "Principal", query: dict, args: dict) -> dict:
    """DSSClient.get_resolved_variables(project_key, typed) (query: typed=true|false).

    Instance variables, then the project's standard ones, then its local ones (later wins).
    """
    variables = _project(state, args["project_key"])["variables"]
    merged = {**state.instance_variables, **variables["standard"], **variables["local"]}
    if query.get("typed") == "true":
        return merged
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in merged.items()}
