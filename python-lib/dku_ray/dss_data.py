"""Where a DSS dataset or managed folder lives on S3, and the credentials to reach it.

Only the documented public API (`dataikuapi`) is used, so this works from a notebook, a macro
or outside DSS. The public API has no equivalent of the internal `Dataset.get_location_info()`,
so paths are read from the settings and their `${...}` variables expanded here, like DSS does:
`projectKey` (and `odbId` for folders) are built in, the rest come from the project's resolved
variables. Credentials come from `DSSConnectionInfo.get_aws_credential()`: a key pair (no token)
or STS AssumeRole credentials (with a session token). They never appear in a message or repr.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, NamedTuple

from dku_ray.dss_cluster import call_dss
from dku_ray.errors import DSSError
from dku_ray.s3_location import S3Credentials, S3Location

if TYPE_CHECKING:
    import dataikuapi

log = logging.getLogger(__name__)

S3_CONNECTION_TYPE = "EC2"  # DSS calls Amazon S3 connections "EC2" (historical name)
S3_OBJECT_TYPE = "S3"  # ...but S3 datasets and managed folders have type "S3"
SUPPORTED_FORMAT = "parquet"
CONNECTIONS_PAGE = "Administration > Connections"

_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_AWS_REGION = re.compile(r"([a-z]{2}(?:-gov|-iso[a-z]*)?-[a-z]+-\d+)\.(?:vpce\.)?amazonaws\.com")
_AWS_STANDARD_HOST = re.compile(r"s3(?:[.-]dualstack)?(?:[.-][a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?")


@dataclass(frozen=True)
class DatasetLocation:
    """An S3 parquet dataset: its full name, where its files are, and how it is partitioned."""

    dataset: str  # "PROJECTKEY.name"
    location: S3Location
    format_type: str
    partition_dimensions: tuple[str, ...] = ()


class ConnectionAccess(NamedTuple):
    """What a process outside DSS needs to reach the storage of an S3 connection."""

    credentials: S3Credentials
    region: str | None
    endpoint_url: str | None


@dataclass(frozen=True)
class _S3Connection:
    name: str
    access: ConnectionAccess
    restricted_bucket: str  # "chbucket": the only bucket the connection may use, "" if any
    restricted_root: str  # "chroot": path prefix inside the bucket, "" if none


def _split_ref(ref: str, project_key: str | None, kind: str) -> tuple[str, str]:
    """("PROJECTKEY", "name") from "name" (in `project_key`) or "PROJECTKEY.name"."""
    ref = (ref or "").strip()
    if "." in ref:
        owner, _, name = ref.partition(".")
        if owner and name:
            return owner, name
    if not ref:
        raise DSSError(f"No {kind} was given.")
    if not project_key:
        raise DSSError(f"{kind.capitalize()} {ref!r} has no project: give it as PROJECTKEY.{ref} or pass project_key.")
    return project_key, ref


def _project_variables(client: "dataikuapi.DSSClient", project_key: str) -> dict[str, str]:
    """Instance and project variables as DSS resolves them for this project (local over standard)."""
    what = f"Reading the variables of project {project_key}"
    advice = {"not_found": "Check the project key.", "refused": "You need read access to the project."}
    try:
        resolved = call_dss(client, what, lambda: client.get_resolved_variables(project_key=project_key), **advice)
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (resolved or {}).items()}
    except (ImportError, DSSError):
        pass  # dataikuapi's get_resolved_variables imports `dataiku`, so it only works inside DSS
    merged: dict = {}
    try:  # instance variables: readable through the public API by administrators only
        merged.update(call_dss(client, what, client.get_global_variables, **advice) or {})
    except DSSError:
        pass
    raw = call_dss(client, what, lambda: client.get_project(project_key).get_variables(), **advice)
    merged.update(raw.get("standard") or {})
    merged.update(raw.get("local") or {})
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in merged.items()}


def _expand(text: str, builtins: Mapping[str, str], more: Callable[[], Mapping[str, str]], what: str) -> str:
    """Replace every `${name}` like DSS does; DSSError naming the variable if one is undefined."""
    names = [m.group(1) for m in _VARIABLE.finditer(text or "")]
    if not names:
        return text or ""
    values = dict(builtins)
    if any(n not in values for n in names):
        values = {**more(), **builtins}
    missing = sorted({n for n in names if n not in values})
    if missing:
        shown = ", ".join("${" + n + "}" for n in missing)
        raise DSSError(
            f"{what} uses the variable(s) {shown}, which DSS does not define for this project. "
            "Define them in the project's Variables (or the instance variables), or fix the path."
        )
    return _VARIABLE.sub(lambda m: values[m.group(1)], text)


def _region_and_endpoint(value: str | None) -> tuple[str | None, str | None]:
    """Split the S3 connection's "regionOrEndpoint" setting, which holds either a region or a URL/host."""
    value = (value or "").strip()
    if not value:
        return None, None
    if "://" not in value and "." not in value and ":" not in value:
        return value, None  # a region name such as "eu-west-1"
    url = value if "://" in value else f"https://{value}"
    host = url.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0].lower()
    found = _AWS_REGION.search(host)
    region = found.group(1) if found else None
    if _AWS_STANDARD_HOST.fullmatch(host):
        return region, None  # a standard AWS S3 endpoint: the region is enough
    return region, url.rstrip("/")


def _credentials(name: str, info: "dataikuapi.dss.admin.DSSConnectionInfo") -> S3Credentials:
    """The connection's resolved AWS credential, or a DSSError that says why there is none."""
    try:
        cred = info.get_aws_credential()
    except ValueError:  # dataikuapi's way of saying "no resolvedAWSCredential"
        cred = None
    access_key = (cred or {}).get("accessKey")
    secret_key = (cred or {}).get("secretKey")
    if not access_key or not secret_key:
        aws_mode = (info.get("params") or {}).get("credentialsMode") or "unknown"
        per_user = info.get("credentialsMode") == "PER_USER"
        hint = (
            "This connection uses per-user credentials: enter yours in Profile > Credentials. "
            if per_user else ""
        )
        raise DSSError(
            f"DSS gave no AWS credential for connection {name!r} (AWS credentials mode: {aws_mode}). "
            f"{hint}Either you may not read the connection's details (ask a DSS administrator to add "
            f"one of your groups to 'Details readable by' in {CONNECTIONS_PAGE} > {name}), or the "
            "connection uses a mode that DSS does not resolve into keys (such as environment / instance "
            "profile credentials). The Ray cluster needs keys: use an S3 connection with an access key "
            "pair or STS AssumeRole."
        )
    token = cred.get("sessionToken") or None
    return S3Credentials(access_key=str(access_key), secret_key=str(secret_key), session_token=token)


def _s3_connection(client: "dataikuapi.DSSClient", name: str, project_key: str | None) -> _S3Connection:
    if not name:
        raise DSSError("No DSS connection was given.")
    info = call_dss(
        client,
        f"Reading the details of DSS connection {name!r}",
        lambda: client.get_connection(name).get_info(contextual_project_key=project_key),
        not_found=f"Check the connection name in {CONNECTIONS_PAGE}.",
        refused=(
            "dku_ray passes the connection's credentials to the Ray job, so it must read the connection's "
            f"details: ask a DSS administrator to add one of your groups to 'Details readable by' in "
            f"{CONNECTIONS_PAGE} > {name} (Security settings)."
        ),
    )
    conn_type = info.get("type")
    if conn_type != S3_CONNECTION_TYPE:
        raise DSSError(
            f"DSS connection {name!r} is a {conn_type} connection, not an Amazon S3 one. "
            "Store the data on an S3 connection (DSS lists them as 'Amazon S3')."
        )
    params = dict(info.get("params") or {})
    params.update(info.get("resolvedParams") or {})  # resolved values win when DSS provides them
    region, endpoint = _region_and_endpoint(params.get("regionOrEndpoint"))
    access = ConnectionAccess(_credentials(name, info), region, endpoint)
    return _S3Connection(
        name=name,
        access=access,
        restricted_bucket=str(params.get("chbucket") or "").strip("/"),
        restricted_root=str(params.get("chroot") or "").strip("/"),
    )


def connection_access(
    client: "dataikuapi.DSSClient", connection_name: str, project_key: str | None = None
) -> ConnectionAccess:
    """(credentials, region, endpoint_url) of an S3 connection; variables resolved in `project_key`."""
    return _s3_connection(client, connection_name, project_key).access


def _location(conn: _S3Connection, bucket: str, path: str, what: str) -> S3Location:
    bucket = (bucket or "").strip("/") or conn.restricted_bucket
    if not bucket:
        raise DSSError(f"{what} has no S3 bucket in its settings. Set the bucket in its settings (Connection tab).")
    prefix = "/".join(p for p in (conn.restricted_root, (path or "").strip("/")) if p)
    access = conn.access
    return S3Location(bucket, prefix, access.region, access.endpoint_url, access.credentials, conn.name)


def dataset_location(client: "dataikuapi.DSSClient", project_key: str, dataset_name: str) -> DatasetLocation:
    """Where the files of an S3 parquet dataset are, with its connection's credentials.

    `dataset_name` may be "name" (in `project_key`) or "PROJECTKEY.name" (a dataset of another project).
    """
    owner, name = _split_ref(dataset_name, project_key, "dataset")
    full = f"{owner}.{name}"
    settings = call_dss(
        client,
        f"Reading the settings of dataset {full}",
        lambda: client.get_project(owner).get_dataset(name).get_settings(),
        not_found="Check the dataset name (names are case-sensitive) and the project key.",
        refused=f"Check the project key {owner!r} (the key, not the display name) and that you may read that project.",
    )
    raw = settings.get_raw()
    ds_type = raw.get("type")
    fmt = raw.get("formatType")
    params = raw.get("params") or {}
    if ds_type != S3_OBJECT_TYPE or fmt != SUPPORTED_FORMAT:
        actual = f"a {ds_type} dataset" + (f" in {fmt} format" if fmt else "")
        where = f" on connection {params.get('connection')!r}" if params.get("connection") else ""
        raise DSSError(
            f"Dataset {full} is {actual}{where}; distributed training reads {SUPPORTED_FORMAT} files on S3. "
            f"Add a Sync recipe from {name} to a new dataset on an Amazon S3 connection with format "
            f"Parquet (or change the output format of the recipe that builds it), then use that dataset."
        )
    if not params.get("connection"):
        raise DSSError(f"Dataset {full} has no connection in its settings; set one in its Settings tab.")
    conn = _s3_connection(client, params["connection"], owner)
    builtins = {"projectKey": owner}
    more = _lazy(lambda: _project_variables(client, owner))
    bucket = _expand(params.get("bucket") or "", builtins, more, f"The bucket of dataset {full}")
    path = _expand(params.get("path") or "", builtins, more, f"The path of dataset {full}")
    location = _location(conn, bucket, path, f"Dataset {full}")
    dims = tuple(d.get("name", "") for d in (raw.get("partitioning") or {}).get("dimensions") or [])
    log.debug("Dataset %s is at %s (connection %s)", full, location.uri, conn.name)
    return DatasetLocation(dataset=full, location=location, format_type=fmt, partition_dimensions=dims)


def folder_location(client: "dataikuapi.DSSClient", project_key: str, folder_id: str) -> S3Location:
    """The root of a managed folder on S3, with its own connection's credentials.

    `folder_id` is the folder's id (not its display name), or "PROJECTKEY.id".
    """
    owner, odb_id = _split_ref(folder_id, project_key, "managed folder")
    full = f"{owner}.{odb_id}"
    settings = call_dss(
        client,
        f"Reading the settings of managed folder {full}",
        lambda: client.get_project(owner).get_managed_folder(odb_id).get_settings(),
        not_found="Give the folder's id (8 characters, shown in its URL), not its display name.",
        refused=f"Check the project key {owner!r} and that you may read that project.",
    )
    raw = settings.get_raw()
    params = raw.get("params") or {}
    label = f"Managed folder {full}" + (f" ({raw['name']!r})" if raw.get("name") else "")
    if raw.get("type") != S3_OBJECT_TYPE:
        raise DSSError(
            f"{label} is stored on a {raw.get('type')} connection; training results are written to S3. "
            "Create a managed folder on an Amazon S3 connection and use its id."
        )
    if not params.get("connection"):
        raise DSSError(f"{label} has no connection in its settings; set one in its Settings tab.")
    conn = _s3_connection(client, params["connection"], owner)
    builtins = {"projectKey": owner, "odbId": odb_id}
    more = _lazy(lambda: _project_variables(client, owner))
    bucket = _expand(params.get("bucket") or "", builtins, more, f"The bucket of {label}")
    path = _expand(params.get("path") or "", builtins, more, f"The path of {label}")
    location = _location(conn, bucket, path, label)
    log.debug("%s is at %s (connection %s)", label, location.uri, conn.name)
    return location


def _lazy(fetch: Callable[[], Mapping[str, str]]) -> Callable[[], Mapping[str, str]]:
    """Fetch project variables at most once, and only if a path needs them."""
    cache: list[Mapping[str, str]] = []

    def get() -> Mapping[str, str]:
        if not cache:
            cache.append(fetch())
        return cache[0]

    return get
