"""Find the kubeconfig of a DSS-managed ("Elastic AI") Kubernetes cluster, through the public API.

DSS stores what a cluster plugin's `start()` returned as the cluster's plugin data; the EKS, AKS
and GKE plugins put `kube_config_path` there and the same path in the container-execution
overrides. The upstream prototype read `settings["data"]["kube_config_path"]` blindly and died
with a `TypeError` on a stopped cluster; here each failure says what to do.

Also home of `call_dss()`, which turns the client's opaque `DataikuException` into a `DSSError`
that says what was being read and how to fix it (the other `dss_*` adapters use it too).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable, TypeVar

from dku_ray.errors import DSSError

if TYPE_CHECKING:
    import dataikuapi

T = TypeVar("T")

CLUSTERS_PAGE = "Administration > Clusters"

# DataikuException only carries "<errorType>: <message>"; DSS's exception class names tell the cases apart.
_NOT_FOUND_MARKERS = ("NotFoundException",)
_REFUSED_MARKERS = ("UnauthorizedException", "ForbiddenException", "AccessDenied", "PermissionDenied")


def dss_client() -> "dataikuapi.DSSClient":
    """The public-API client of the user running the macro or notebook (`dataiku.api_client()`).

    `dataiku` only exists inside DSS, so it is imported here and not at module level.
    """
    try:
        import dataiku
    except ImportError as exc:
        raise DSSError(
            "The `dataiku` package is not available: dss_client() only works inside DSS (macros, "
            "notebooks, recipes). Outside DSS, create a client yourself with "
            "dataikuapi.DSSClient(<DSS URL>, <API key>) and pass it in."
        ) from exc
    return dataiku.api_client()


def _is_dataiku_exception(exc: BaseException) -> bool:
    return type(exc).__name__ == "DataikuException" and type(exc).__module__.startswith("dataikuapi")


def _credentials_rejected(client: "dataikuapi.DSSClient") -> bool:
    """True when DSS refuses even "who am I": the API key or ticket itself is wrong, not a permission."""
    try:
        client.get_auth_info()
    except Exception as exc:  # noqa: BLE001 - a network failure proves nothing, a DSS refusal does
        return _is_dataiku_exception(exc)
    return False


def call_dss(
    client: "dataikuapi.DSSClient",
    what: str,
    call: Callable[[], T],
    *,
    not_found: str,
    refused: str,
) -> T:
    """Run one dataikuapi call; turn its failure into a DSSError about `what`, with the fix.

    `not_found` and `refused` are the sentences to use when DSS says the object does not exist
    or refuses access. A refusal is double-checked against `/auth/info` so that a bad API key is
    reported as such instead of as a missing permission.
    """
    try:
        return call()
    except Exception as exc:
        if isinstance(exc, DSSError):
            raise
        if _is_dataiku_exception(exc):
            text = str(exc)
            if any(marker in text for marker in _NOT_FOUND_MARKERS):
                raise DSSError(f"{what}: not found. {not_found} (DSS said: {text})") from None
            if any(marker in text for marker in _REFUSED_MARKERS):
                if _credentials_rejected(client):
                    raise DSSError(
                        f"{what}: DSS rejected the credentials of this client (DSS said: {text}). "
                        "Check the API key (Profile > API keys, or the key given to DSSClient) and "
                        "that it has not been revoked."
                    ) from None
                raise DSSError(f"{what}: access refused. {refused} (DSS said: {text})") from None
            raise DSSError(f"{what}: DSS returned an error: {text}") from None
        if isinstance(exc, OSError) or type(exc).__module__.startswith(("requests", "urllib3")):
            host = getattr(client, "host", "the DSS URL")
            raise DSSError(
                f"{what}: cannot reach DSS at {host} ({type(exc).__name__}). "
                "Check the URL and that DSS is running."
            ) from None
        raise


def _cluster_state(client: "dataikuapi.DSSClient", cluster_id: str) -> str:
    status = call_dss(
        client,
        f"Reading the status of DSS cluster {cluster_id!r}",
        lambda: client.get_cluster(cluster_id).get_status().get_raw(),
        not_found=f"Check the cluster id in {CLUSTERS_PAGE} (ids are case-sensitive).",
        refused="Reading clusters needs DSS administrator rights: run this as an administrator.",
    )
    return str((status or {}).get("state") or "UNKNOWN")


def _require_running(cluster_id: str, state: str) -> None:
    if state == "RUNNING":
        return
    where = f"{CLUSTERS_PAGE} > {cluster_id}"
    if state == "STARTING":
        advice = f"It is still starting: wait until its state is RUNNING in {where}, then retry."
    elif state == "STOPPING":
        advice = f"It is being stopped: once stopped, start it again in {where} (Start / Attach), then retry."
    elif state == "NONE":
        advice = f"It is stopped: start it in {where} (Start / Attach), then retry."
    else:
        advice = f"Expected RUNNING; check it in {where}."
    raise DSSError(f"DSS cluster {cluster_id!r} is not running (state {state}). {advice}")


def _candidates(cluster_id: str, raw: dict) -> list[tuple[str, str]]:
    """(where it came from, path) in the documented order of preference."""
    found: list[tuple[str, str]] = []
    data = raw.get("data")
    if isinstance(data, dict) and data.get("kube_config_path"):
        found.append(("the cluster's plugin data (kube_config_path)", str(data["kube_config_path"])))
    overrides = (raw.get("containerSettings") or {}).get("executionConfigsGenericOverrides") or {}
    if isinstance(overrides, dict) and overrides.get("kubeConfigPath"):
        found.append(
            ("the cluster's containerSettings.executionConfigsGenericOverrides.kubeConfigPath",
             str(overrides["kubeConfigPath"]))
        )
    dip_home = os.environ.get("DIP_HOME")
    if dip_home:
        found.append(
            ("the DSS default location $DIP_HOME/clusters/<id>/exec/kube_config",
             os.path.join(dip_home, "clusters", cluster_id, "exec", "kube_config"))
        )
    seen: set[str] = set()
    unique = []
    for source, path in found:
        if path not in seen:
            seen.add(path)
            unique.append((source, path))
    return unique


def _usable(path: str) -> str | None:
    """None if `path` is a readable file, else why not."""
    if not os.path.exists(path):
        return "the file does not exist"
    if not os.path.isfile(path):
        return "it is not a regular file"
    if not os.access(path, os.R_OK):
        return "the file is not readable by this process's user"
    return None


def kubeconfig_for_dss_cluster(client: "dataikuapi.DSSClient", cluster_id: str) -> str:
    """The path of the kubeconfig DSS keeps for a running cluster; DSSError with the fix otherwise.

    Needs DSS administrator rights (cluster settings live under /admin). The file is only read
    for existence here; callers load it with `kubernetes.config.new_client_from_config`.
    """
    if not cluster_id or not str(cluster_id).strip():
        raise DSSError(f"No DSS cluster was given. Pick one of the Kubernetes clusters listed in {CLUSTERS_PAGE}.")
    state = _cluster_state(client, cluster_id)
    _require_running(cluster_id, state)

    settings = call_dss(
        client,
        f"Reading the settings of DSS cluster {cluster_id!r}",
        lambda: client.get_cluster(cluster_id).get_settings(),
        not_found=f"Check the cluster id in {CLUSTERS_PAGE}.",
        refused="Reading cluster settings needs DSS administrator rights: run this as an administrator.",
    )
    raw = settings.get_raw() or {}
    architecture = raw.get("architecture")
    if architecture and architecture != "KUBERNETES":
        raise DSSError(
            f"DSS cluster {cluster_id!r} is a {architecture} cluster, not a Kubernetes one. "
            f"Pick a Kubernetes (Elastic AI) cluster from {CLUSTERS_PAGE}."
        )
    candidates = _candidates(cluster_id, raw)
    if not candidates:
        raise DSSError(
            f"DSS cluster {cluster_id!r} is running but DSS has no kubeconfig for it: no plugin data "
            "(it was not started by a cluster plugin such as EKS/AKS/GKE), no kubeConfigPath in its "
            "container settings, and DIP_HOME is not set. Stop and start it again in "
            f"{CLUSTERS_PAGE}, or set kubeConfigPath in the cluster's settings."
        )
    problems = []
    for source, path in candidates:
        why = _usable(path)
        if why is None:
            return path
        problems.append(f"{path} (from {source}): {why}")
    raise DSSError(
        f"No usable kubeconfig for DSS cluster {cluster_id!r}. Tried:\n"
        + "\n".join(f"  - {p}" for p in problems)
        + f"\nStop and start the cluster in {CLUSTERS_PAGE} to regenerate it, and check that the "
        "file is readable by the DSS user running this code."
    )
