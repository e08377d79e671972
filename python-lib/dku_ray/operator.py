"""Find, install and remove the KubeRay operator, without ever breaking someone else's.

An operator is "ours" only if its Deployment carries our managed-by label. We reuse any running
operator, install one only when there is none and the caller allows it, and remove only ours,
only when no RayCluster (of anyone) is left.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import kube_rest as kr
from .constants import LABEL_MANAGED_BY, MANAGED_BY, RAYCLUSTER_CRD
from .errors import KubernetesError, OperatorError
from .operator_manifests import DEFAULT_IMAGE, DEFAULT_NAMESPACE, ManifestSource, load_operator_manifests
from .readiness import pod_problem
from .versions import parse_version

Progress = Callable[[str], None]
_OPERATOR_SELECTOR = "app.kubernetes.io/name in (kuberay,kuberay-operator)"
_KUBERAY_CRDS = ("rayclusters.ray.io", "rayjobs.ray.io", "rayservices.ray.io", "raycronjobs.ray.io")


@dataclass(frozen=True)
class OperatorDeployment:
    namespace: str
    name: str
    image: str
    version: str | None
    ready: bool
    ours: bool

    def __str__(self) -> str:
        owner = "installed by dku_ray" if self.ours else "installed by someone else"
        return f"KubeRay operator {self.version or '(unknown version)'} in {self.namespace}/{self.name} ({owner})"


@dataclass(frozen=True)
class OperatorStatus:
    crd_installed: bool
    crd_has_auth_options: bool
    deployments: tuple[OperatorDeployment, ...] = ()
    deployments_visible: bool = True

    @property
    def running(self) -> OperatorDeployment | None:
        return next((d for d in self.deployments if d.ready), None)


@dataclass(frozen=True)
class OperatorSettings:
    """What Start may do about the operator, and where its manifests come from."""

    install: bool = True
    version: str = "v1.6.2"
    source: ManifestSource = field(default_factory=ManifestSource)
    namespace: str = DEFAULT_NAMESPACE
    image: str = DEFAULT_IMAGE
    timeout: float = 300.0


def detect(kube: kr.Kube) -> OperatorStatus:
    crd = kube.get(kr.CRD, RAYCLUSTER_CRD)
    try:
        deployments = kube.list(kr.DEPLOYMENT, label_selector=_OPERATOR_SELECTOR)
        if crd is not None and not deployments:  # installed with other labels: look at images
            deployments = [d for d in kube.list(kr.DEPLOYMENT) if _operator_image(d)]
        visible = True
    except KubernetesError as exc:
        if exc.status != 403:
            raise
        deployments, visible = [], False
    found = tuple(_describe(d) for d in deployments if _operator_image(d))
    return OperatorStatus(crd is not None, crd is not None and _crd_has_auth(crd), found, visible)


def ensure(kube: kr.Kube, settings: OperatorSettings, needs_auth: bool, progress: Progress) -> list[str]:
    """Make sure a usable operator runs; return what was done, for the report."""
    status = detect(kube)
    running = status.running
    if running is not None or (status.crd_installed and not status.deployments_visible):
        _check_features(status, running, needs_auth)
        what = str(running) if running else "a KubeRay operator (its Deployment is not visible to this user)"
        progress(f"Using {what}")
        return [f"reused {what}"]
    if status.deployments:
        pending = status.deployments[0]
        if not settings.install or pending.ours:
            progress(f"Waiting for {pending}")
            _wait_ready(kube, pending.namespace, pending.name, settings.timeout)
            return [f"waited for {pending}"]
        raise OperatorError(f"{pending} is not ready. Ask its owner to fix it; dku_ray will not install a second one.")
    if not settings.install:
        raise OperatorError("No KubeRay operator runs on this Kubernetes cluster. Allow dku_ray to install one "
                            "(\"Install the KubeRay operator\" / --install-operator), or ask a Kubernetes admin.")
    return install(kube, settings, progress)


def install(kube: kr.Kube, settings: OperatorSettings, progress: Progress) -> list[str]:
    objects = load_operator_manifests(settings.source, settings.version, settings.namespace, settings.image)
    if kube.get(kr.NAMESPACE, settings.namespace) is not None:
        objects = [o for o in objects if o["kind"] != "Namespace"]  # not ours: never label or delete it later
    done = []
    for obj in objects:
        progress(f"Installing {obj['kind']} {obj['metadata']['name']}")
        kube.apply(obj)
        done.append(f"{obj['kind']} {obj['metadata']['name']}")
        if obj["kind"] == "CustomResourceDefinition":
            _wait_established(kube, obj["metadata"]["name"], settings.timeout)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    progress(f"Waiting for the KubeRay operator {settings.version} to be ready")
    _wait_ready(kube, settings.namespace, deployment["metadata"]["name"], settings.timeout)
    return [f"installed the KubeRay operator {settings.version} in namespace {settings.namespace} "
            f"({len(done)} objects)"]


def remove(kube: kr.Kube, progress: Progress, timeout: float = 120.0) -> tuple[list[str], list[str]]:
    """Remove our operator if nothing uses it. Returns (removed, kept-with-reason)."""
    status = detect(kube)
    ours = [d for d in status.deployments if d.ours]
    if not ours:
        theirs = ", ".join(str(d) for d in status.deployments) or "no operator Deployment is visible"
        return [], [f"operator kept: dku_ray did not install it ({theirs})"]
    remaining = kube.list(kr.RAYCLUSTER) if status.crd_installed else []
    if remaining:
        names = ", ".join(f"{c['metadata']['namespace']}/{c['metadata']['name']}" for c in remaining[:5])
        return [], [f"operator kept: {len(remaining)} RayCluster(s) still use it ({names})"]
    removed: list[str] = []
    selector = f"{LABEL_MANAGED_BY}={MANAGED_BY},dku-ray/kuberay-version"
    for kind in (kr.DEPLOYMENT, kr.SERVICE, kr.ROLE_BINDING, kr.ROLE, kr.SERVICE_ACCOUNT):
        for obj in kube.list(kind, label_selector=selector):
            meta = obj["metadata"]
            progress(f"Removing {kind.kind} {meta['namespace']}/{meta['name']}")
            if kube.delete(kind, meta["name"], meta["namespace"]):
                removed.append(f"{kind.kind} {meta['namespace']}/{meta['name']}")
    for kind in (kr.CLUSTER_ROLE_BINDING, kr.CLUSTER_ROLE):
        for obj in kube.list(kind, label_selector=selector):
            if kube.delete(kind, obj["metadata"]["name"]):
                removed.append(f"{kind.kind} {obj['metadata']['name']}")
    kept = _remove_crds_if_unused(kube, selector, removed)
    for namespace in kube.list(kr.NAMESPACE, label_selector=selector):
        if kube.delete(kr.NAMESPACE, namespace["metadata"]["name"]):
            removed.append(f"Namespace {namespace['metadata']['name']}")
    _wait_gone(kube, ours, timeout)
    return removed, kept


def _remove_crds_if_unused(kube: kr.Kube, selector: str, removed: list[str]) -> list[str]:
    """CRDs are cluster-wide: delete ours only when no RayJob or RayService of anyone exists either."""
    for kind in (kr.RAYJOB, kr.RAYSERVICE):
        try:
            if kube.list(kind):
                return [f"KubeRay CRDs kept: {kind.plural} still exist"]
        except KubernetesError as exc:
            if exc.status != 404:
                raise
    for crd in kube.list(kr.CRD, label_selector=selector):
        if crd["metadata"]["name"] in _KUBERAY_CRDS and kube.delete(kr.CRD, crd["metadata"]["name"]):
            removed.append(f"CustomResourceDefinition {crd['metadata']['name']}")
    return []


def _check_features(status: OperatorStatus, running: OperatorDeployment | None, needs_auth: bool) -> None:
    if not needs_auth:
        return
    too_old = running and running.version and (parse_version(running.version) or (0, 0, 0)) < (1, 5, 1)
    if too_old or (status.crd_installed and not status.crd_has_auth_options):
        version = running.version if running and running.version else "installed"
        raise OperatorError(f"The {version} KubeRay operator does not support token authentication (needs v1.5.1 or "
                            "later). Set authMode to none, or ask the operator's owner to upgrade KubeRay.")


def _operator_image(deployment: dict[str, Any]) -> str | None:
    for container in deployment["spec"]["template"]["spec"].get("containers") or []:
        if "kuberay/operator" in (container.get("image") or ""):
            return container["image"]
    return None


def _describe(deployment: dict[str, Any]) -> OperatorDeployment:
    meta, status = deployment["metadata"], deployment.get("status") or {}
    image = _operator_image(deployment) or ""
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else None
    return OperatorDeployment(meta["namespace"], meta["name"], image, tag,
                              (status.get("availableReplicas") or 0) >= 1,
                              (meta.get("labels") or {}).get(LABEL_MANAGED_BY) == MANAGED_BY)


def _crd_has_auth(crd: dict[str, Any]) -> bool:
    for version in crd["spec"].get("versions") or []:
        if version.get("name") == "v1":
            spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            return "authOptions" in spec
    return False


def _wait_established(kube: kr.Kube, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = kube.get(kr.CRD, name) or {}
        if any(c.get("type") == "Established" and c.get("status") == "True"
               for c in (crd.get("status") or {}).get("conditions") or []):
            return
        time.sleep(0.2)
    raise OperatorError(f"The CRD {name} was not established within {timeout:.0f} s; check the API server.")


def _wait_ready(kube: kr.Kube, namespace: str, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment = kube.get(kr.DEPLOYMENT, name, namespace)
        if deployment and (deployment.get("status") or {}).get("availableReplicas"):
            return
        time.sleep(0.5)
    pods = kube.list(kr.POD, namespace)
    problems = [f"{p['metadata']['name']}: {pod_problem(p)}" for p in pods if pod_problem(p)]
    raise OperatorError(f"The KubeRay operator {namespace}/{name} was not ready within {timeout:.0f} s."
                        + ("".join(f"\n  - {p}" for p in problems) or " Check its pod's logs."))


def _wait_gone(kube: kr.Kube, deployments: list[OperatorDeployment], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for deployment in deployments:
        while time.monotonic() < deadline and kube.get(kr.DEPLOYMENT, deployment.name, deployment.namespace):
            time.sleep(0.3)
