"""In-memory DSS with a tiny HTTP front: tests set it up in Python, code under test talks to it
through the real `dataikuapi.DSSClient`.

Only what dku_ray and its macros call is served (see `routes.py`). Object shapes follow what
`dataikuapi` reads and what DSS documents; the setup helpers store paths the way DSS stores
them, with `${projectKey}` / `${odbId}` left unexpanded.
"""
from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qs, urlsplit

from .routes import ApiError, dispatch

API_PREFIX = "/dip/publicapi"
_DEFAULT: Any = object()


@dataclass(frozen=True)
class Principal:
    """Who a key or ticket authenticates: DSS login, admin flag, groups."""

    login: str
    admin: bool = False
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class Request:
    """One request as received, for tests that check what the client sent."""

    method: str
    path: str
    query: dict[str, str]
    login: str | None


@dataclass
class State:
    """Everything the stand-in knows; tests change it only through DSSStandin's methods."""

    credentials: dict[str, Principal] = field(default_factory=dict)
    clusters: dict[str, dict] = field(default_factory=dict)  # id -> {"settings": ..., "status": ...}
    connections: dict[str, dict] = field(default_factory=dict)  # name -> {"info": ..., "readable_by": ...}
    projects: dict[str, dict] = field(default_factory=dict)  # key -> {"datasets", "folders", "variables"}
    instance_variables: dict[str, Any] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    server_version = "DSS-standin"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep test output clean

    def _principal(self, state: State) -> Principal | None:
        ticket = self.headers.get("X-DKU-APITicket")
        if ticket:
            return state.credentials.get(ticket)
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                user, _, _ = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                return None
            return state.credentials.get(user)
        return None

    def _handle(self, method: str) -> None:
        state: State = self.server.state  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        principal = self._principal(state)
        with state.lock:
            state.requests.append(Request(method, parts.path, query, principal.login if principal else None))
        try:
            if not parts.path.startswith(API_PREFIX + "/"):
                raise ApiError(404, "com.dataiku.dip.server.controllers.NotFoundException", f"No such page: {parts.path}")
            if principal is None:
                raise ApiError(401, "com.dataiku.dip.exceptions.UnauthorizedException",
                               "Not authenticated: invalid or missing API key or ticket")
            with state.lock:
                status, body = dispatch(state, principal, method, parts.path[len(API_PREFIX):], query)
        except ApiError as err:
            status, body = err.status, err.body()
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._handle("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle("DELETE")


class DSSStandin:
    """A DSS public API on 127.0.0.1:<free port>. Use as a context manager (or start()/stop())."""

    def __init__(self, api_key: str = "standin-admin-key", admin_login: str = "admin") -> None:
        self.state = State()
        self.api_key = api_key
        self.add_api_key(api_key, login=admin_login, admin=True, groups=("administrators",))
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------
    def start(self) -> "DSSStandin":
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.state = self.state  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="dss-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "DSSStandin":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the DSS stand-in is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """What DSSClient takes as `host` (the client adds /dip/publicapi itself)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Request]:
        with self.state.lock:
            return list(self.state.requests)

    # ---- principals -------------------------------------------------------------------
    def add_api_key(self, key: str, *, login: str, admin: bool = False, groups: Iterable[str] = ()) -> None:
        """A key (or an internal API ticket, same lookup) that authenticates `login`."""
        self.state.credentials[key] = Principal(login, admin, tuple(groups))

    # ---- clusters ---------------------------------------------------------------------
    def add_cluster(
        self,
        cluster_id: str,
        *,
        state: str = "RUNNING",
        kube_config_path: str | None = None,
        plugin_data: Mapping | None = _DEFAULT,
        kube_config_override: str | None = _DEFAULT,
        cluster_type: str = "pycluster_eks-clusters_create-eks-cluster",
        name: str | None = None,
    ) -> None:
        """A Kubernetes cluster as a cluster plugin leaves it.

        By default a RUNNING cluster has `data = {"kube_config_path": ..., "cluster": {...}}` and the
        same path in the container-execution overrides, as the EKS/AKS/GKE plugins do; other states
        have neither. Pass `plugin_data=None` / `kube_config_override=None` to remove them.
        """
        running = state == "RUNNING" and kube_config_path is not None
        if plugin_data is _DEFAULT:
            plugin_data = {"kube_config_path": kube_config_path, "cluster": {"Name": cluster_id}} if running else None
        if kube_config_override is _DEFAULT:
            kube_config_override = kube_config_path if running else None
        overrides: dict[str, Any] = {"kubeCtlContext": None, "properties": []}
        if kube_config_override is not None:
            overrides["kubeConfigPath"] = kube_config_override
        settings: dict[str, Any] = {
            "id": cluster_id,
            "name": name or cluster_id,
            "type": cluster_type,
            "architecture": "KUBERNETES",
            "owner": "admin",
            "usableByAll": True,
            "permissions": [],
            "params": {"config": {}},
            "containerSettings": {"executionConfigsGenericOverrides": overrides},
        }
        if plugin_data is not None:
            settings["data"] = dict(plugin_data)
        self.state.clusters[cluster_id] = {"settings": settings, "status": {"state": state}}

    def set_cluster_state(self, cluster_id: str, state: str) -> None:
        self.state.clusters[cluster_id]["status"]["state"] = state

    # ---- connections ------------------------------------------------------------------
    def add_s3_connection(
        self,
        name: str,
        *,
        access_key: str | None,
        secret_key: str | None = None,
        session_token: str | None = None,
        aws_mode: str | None = None,
        region_or_endpoint: str = "",
        use_path_mode: bool = False,
        default_bucket: str = "",
        chbucket: str = "",
        chroot: str = "",
        per_user: bool = False,
        details_readable_by: str | Iterable[str] = "ALL",
    ) -> None:
        """An Amazon S3 connection (DSS type "EC2").

        `session_token` given = STS AssumeRole credentials; omitted = a key pair. `access_key=None`
        = DSS resolves no credential (e.g. environment credentials). `details_readable_by` is "ALL",
        "NONE" or a list of groups; administrators can always read details.
        """
        if aws_mode is None:
            aws_mode = "ENVIRONMENT" if access_key is None else ("STS_ASSUME_ROLE" if session_token else "KEYPAIR")
        params: dict[str, Any] = {
            "credentialsMode": aws_mode,
            "regionOrEndpoint": region_or_endpoint,
            "usePathMode": use_path_mode,
            "switchToRegionFromBucket": not region_or_endpoint,
            "defaultManagedBucket": default_bucket,
            "defaultManagedPath": "/dataiku",
            "chbucket": chbucket,
            "chroot": chroot,
            "hdfsInterface": "S3A",
            "encryptionMode": "NONE",
        }
        if aws_mode == "KEYPAIR":
            params.update(accessKey=access_key, secretKey=secret_key)  # readable details expose the key pair
        info: dict[str, Any] = {
            "name": name,
            "type": "EC2",
            "credentialsMode": "PER_USER" if per_user else "GLOBAL",
            "params": params,
            "resolvedParams": None,
        }
        if access_key is not None:
            cred = {"accessKey": access_key, "secretKey": secret_key}
            if session_token:
                cred["sessionToken"] = session_token
            info["resolvedAWSCredential"] = cred
        readers = details_readable_by if isinstance(details_readable_by, str) else tuple(details_readable_by)
        self.state.connections[name] = {"info": info, "readable_by": readers}

    def add_connection(self, name: str, conn_type: str, params: Mapping | None = None) -> None:
        """Any other connection type (Filesystem, PostgreSQL...), details readable by all."""
        info = {"name": name, "type": conn_type, "credentialsMode": "GLOBAL",
                "params": dict(params or {}), "resolvedParams": None}
        self.state.connections[name] = {"info": info, "readable_by": "ALL"}

    # ---- projects ---------------------------------------------------------------------
    def add_project(self, project_key: str) -> dict:
        return self.state.projects.setdefault(
            project_key, {"datasets": {}, "folders": {}, "variables": {"standard": {}, "local": {}}}
        )

    def set_project_variables(self, project_key: str, standard: Mapping | None = None,
                              local: Mapping | None = None) -> None:
        self.add_project(project_key)["variables"] = {"standard": dict(standard or {}), "local": dict(local or {})}

    def set_instance_variables(self, variables: Mapping) -> None:
        self.state.instance_variables = dict(variables)

    def add_dataset(
        self,
        project_key: str,
        name: str,
        *,
        connection: str,
        type: str = "S3",  # noqa: A002 - DSS's field name
        bucket: str | None = None,
        path: str | None = _DEFAULT,
        format_type: str | None = "parquet",
        partition_dimensions: Iterable[str] = (),
        extra_params: Mapping | None = None,
    ) -> None:
        """A dataset as DSS stores it. The default path is a managed dataset's: "/${projectKey}/<name>"."""
        params: dict[str, Any] = {"connection": connection, "notReadyIfEmpty": False}
        if path is _DEFAULT:
            path = "/${projectKey}/" + name
        if path is not None:
            params["path"] = path
        if type in ("S3", "GCS"):
            params["bucket"] = bucket or ""
        params["filesSelectionRules"] = {"mode": "ALL", "excludeRules": [], "includeRules": [], "explicitFiles": []}
        params.update(extra_params or {})
        settings: dict[str, Any] = {
            "projectKey": project_key,
            "name": name,
            "type": type,
            "managed": True,
            "params": params,
            "partitioning": {
                "ignoreNonMatchingFile": False,
                "considerMissingRequestedPartitionsAsEmpty": False,
                "dimensions": [{"name": d, "type": "value", "params": {}} for d in partition_dimensions],
            },
            "schema": {"columns": [], "userModified": False},
            "tags": [],
        }
        if format_type is not None:
            settings["formatType"] = format_type
            settings["formatParams"] = {"parquetCompressionMethod": "SNAPPY"} if format_type == "parquet" else {}
        self.add_project(project_key)["datasets"][name] = settings

    def add_managed_folder(
        self,
        project_key: str,
        folder_id: str,
        *,
        connection: str,
        type: str = "S3",  # noqa: A002 - DSS's field name
        bucket: str | None = None,
        path: str = "/${projectKey}/${odbId}",
        name: str | None = None,
    ) -> None:
        """A managed folder as DSS stores it (the default path is the one DSS gives new folders)."""
        params: dict[str, Any] = {"connection": connection, "path": path}
        if type in ("S3", "GCS"):
            params["bucket"] = bucket or ""
        self.add_project(project_key)["folders"][folder_id] = {
            "id": folder_id,
            "name": name or folder_id,
            "projectKey": project_key,
            "type": type,
            "params": params,
            "partitioning": {"ignoreNonMatchingFile": False, "dimensions": []},
            "tags": [],
        }
