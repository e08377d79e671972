"""Connect to a Kubernetes cluster from a kubeconfig, without touching process-wide state.

Several macros may run in one DSS process, each against another cluster, so we never call
`load_kube_config()` (it mutates the global default configuration) and never write back into
the kubeconfig (DSS owns that file).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import config as kube_config
from kubernetes.client import ApiClient
from kubernetes.config.config_exception import ConfigException

from .errors import KubeconfigError
from .kube_rest import Kube


@dataclass(frozen=True)
class KubeTarget:
    """A kubeconfig file and optionally one of its contexts: what a macro or the CLI points at."""

    kubeconfig: str
    context: str | None = None

    @classmethod
    def from_env(cls, kubeconfig: str | None = None, context: str | None = None) -> "KubeTarget":
        """`kubeconfig`, else $KUBECONFIG (first entry), else ~/.kube/config, like kubectl."""
        path = kubeconfig or (os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None) \
            or str(Path.home() / ".kube" / "config")
        return cls(str(path), context)


def connect(target: KubeTarget, timeout: float = 30.0) -> tuple[Kube, str]:
    """A `Kube` for `target` and its default namespace (the context's, else "default")."""
    path = Path(target.kubeconfig).expanduser()
    if not path.is_file():
        raise KubeconfigError(f"No kubeconfig at {path}. Pass --kubeconfig (or set KUBECONFIG) to the file of "
                              "the cluster, or, in DSS, pick a running Elastic AI cluster.")
    try:
        api_client: ApiClient = kube_config.new_client_from_config(
            config_file=str(path), context=target.context, persist_config=False)
    except ConfigException as exc:
        raise KubeconfigError(f"The kubeconfig {path} cannot be used: {exc}. Check the file and the context name.") \
            from None
    except (OSError, yaml.YAMLError) as exc:
        raise KubeconfigError(f"The kubeconfig {path} cannot be read: {exc}") from None
    return Kube(api_client, timeout=timeout), default_namespace(path, target.context)


def default_namespace(path: Path, context: str | None = None) -> str:
    """The namespace of the kubeconfig's (current) context, as kubectl would use it."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return "default"
    name = context or data.get("current-context")
    for entry in data.get("contexts") or []:
        if entry.get("name") == name:
            return (entry.get("context") or {}).get("namespace") or "default"
    return "default"
