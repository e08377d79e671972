"""Local, real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok) plus the real KubeRay operator, for dku_ray's tests and demo.

Binaries are built from pinned Go modules by testenv/build.sh into ~/.cache/dku-ray/testenv.
Importing this package does no work; start a `ControlPlane` (or use testenv.pytest_plugin).
"""

from .components import DEFAULT_NODES, FakeNode
from .controlplane import ControlPlane, ensure_built
from .kube import install_kuberay_crds, server_side_apply
from .portforward import PortForwardHandle
from .versions import Versions

__all__ = [
    "ControlPlane",
    "DEFAULT_NODES",
    "FakeNode",
    "PortForwardHandle",
    "Versions",
    "ensure_built",
    "install_kuberay_crds",
    "server_side_apply",
]
