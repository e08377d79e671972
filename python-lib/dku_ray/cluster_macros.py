"""Glue between the DSS macros (Start / Inspect / Stop Ray Cluster) and the library.

Each function maps a DSS-shaped config (the macro form, plus the plugin-level settings) to a
library call and renders the result as HTML. The runnables stay a few lines long.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

import yaml

from . import report_format as fmt
from .cluster_values import FLAT_PARAMS, parse_values
from .errors import Problem, SpecError
from .kube_client import connect, KubeTarget
from .lifecycle import RayClusterClient
from .operator import OperatorSettings
from .operator_manifests import DEFAULT_IMAGE, DEFAULT_NAMESPACE, DEFAULT_SOURCE, ManifestSource

log = logging.getLogger("dku_ray")
ProgressCallback = Callable[[int], None]
PROGRESS_TARGET = (100, "NONE")  # get_progress_target(): we report percentages


def client_for(config: Mapping[str, Any], dss: Any = None) -> RayClusterClient:
    """A RayClusterClient on the kubeconfig of the DSS cluster picked in the macro form."""
    from .dss_cluster import dss_client, kubeconfig_for_dss_cluster

    cluster_id = config.get("k8s_cluster_name")
    if not cluster_id:
        raise SpecError([Problem("k8s_cluster_name", "pick the Elastic AI (Kubernetes) cluster to use")])
    kubeconfig = kubeconfig_for_dss_cluster(dss or dss_client(), str(cluster_id))
    kube, namespace = connect(KubeTarget(kubeconfig))
    return RayClusterClient(kube, namespace)


def reporter(progress_callback: ProgressCallback | None) -> Callable[[str, float], None]:
    """Send (message, fraction) both to the DSS log and to the macro's progress bar."""

    def report(message: str, fraction: float) -> None:
        log.info("%s", message)
        if progress_callback is not None:
            progress_callback(int(round(100 * max(0.0, min(1.0, fraction)))))

    return report


def spec_inputs(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values, flat params) from the form: the YAML box, then the form fields over it."""
    text = config.get("values_yaml") or ""
    try:
        values = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        raise SpecError([Problem("values_yaml", f"is not valid YAML: {exc}")]) from None
    if not isinstance(values, dict):
        raise SpecError([Problem("values_yaml", "must be a YAML mapping such as `worker: {replicas: 3}`")])
    params = {key: config[key] for key in FLAT_PARAMS if key in config}
    if not config.get("autoscaling"):
        params.pop("ray_worker_min", None)  # hidden in the form: min = max = the worker count
        params.pop("ray_worker_max", None)
    return values, params


def operator_settings(config: Mapping[str, Any], plugin_config: Mapping[str, Any], version: str) -> OperatorSettings:
    """Macro fields win over the plugin-wide defaults set by the DSS admin (e.g. an air-gapped mirror)."""
    def pick(key: str, plugin_key: str, default: str) -> str:
        return str(config.get(key) or plugin_config.get(plugin_key) or default)

    return OperatorSettings(
        install=bool(config.get("install_operator", True)), version=version,
        source=ManifestSource(pick("operator_source", "operator_manifest_source", DEFAULT_SOURCE)),
        namespace=pick("operator_namespace", "operator_namespace", DEFAULT_NAMESPACE),
        image=pick("operator_image", "operator_image", DEFAULT_IMAGE),
    )


def start(config: Mapping[str, Any], plugin_config: Mapping[str, Any],
          progress_callback: ProgressCallback | None = None) -> str:
    values, params = spec_inputs(config)
    parsed = parse_values(values, params)  # validate before touching any cluster
    for warning in parsed.warnings:
        log.warning("%s", warning)
    client = client_for(config)
    timeout = 60.0 * float(config.get("timeout_minutes") or 10)
    result = client.start(parsed.spec, operator_settings(config, plugin_config, parsed.spec.kuberay_version),
                          wait=bool(config.get("wait", True)), timeout=timeout,
                          progress=reporter(progress_callback), warnings=parsed.warnings)
    summary = fmt.text_html(fmt.start_text(result).split("\n\n")[0])
    return summary + (fmt.report_html(result.report) if result.report else "")


def inspect(config: Mapping[str, Any], plugin_config: Mapping[str, Any]) -> str:
    client = client_for(config)
    report = client.inspect(str(config.get("ray_cluster_name") or "ray"), config.get("namespace") or None)
    return fmt.report_html(report)


def stop(config: Mapping[str, Any], plugin_config: Mapping[str, Any],
         progress_callback: ProgressCallback | None = None) -> str:
    client = client_for(config)
    result = client.stop(str(config.get("ray_cluster_name") or "ray"), config.get("namespace") or None,
                         remove_operator=bool(config.get("remove_operator")),
                         timeout=60.0 * float(config.get("timeout_minutes") or 5), progress=reporter(progress_callback))
    return fmt.text_html(fmt.stop_text(result))
