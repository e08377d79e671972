"""Command lines and config files of the control-plane components (no process handling here).

Addressing, chosen so nothing can leave the machine: every server binds 127.0.0.1; Service
ClusterIPs and fake pod IPs are allocated from loopback ranges (127.96.0.0/16, 127.244.0.0/16),
so an accidental connection to one stays on loopback.  The price: EndpointSlices for these IPs
are rejected by validation (loopback not allowed), so Services have no endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .pki import CertPair
from .procs import free_port
from .versions import Binaries, Versions, kwok_module_dir

SERVICE_CIDR = "127.96.0.0/16"
POD_CIDR = "127.244.0.0/16"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_NODE_ANNOTATION_VALUE = "fake"


@dataclass(frozen=True)
class FakeNode:
    """A node that kwok pretends to run; its allocatable is what the scheduler packs against."""

    name: str
    cpu: str = "8"
    memory: str = "32Gi"
    pods: str = "110"

    def manifest(self) -> dict:
        res = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods}
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {
                "name": self.name,
                "annotations": {KWOK_NODE_ANNOTATION: KWOK_NODE_ANNOTATION_VALUE},
                "labels": {"type": "kwok", "kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                           "kubernetes.io/arch": "amd64"},
            },
            "spec": {},
            "status": {"allocatable": res, "capacity": res},
        }


DEFAULT_NODES: tuple[FakeNode, ...] = (FakeNode("kwok-node-0"), FakeNode("kwok-node-1"))


@dataclass
class Ports:
    etcd_client: int = field(default_factory=free_port)
    etcd_peer: int = field(default_factory=free_port)
    apiserver: int = field(default_factory=free_port)
    kwok: int = field(default_factory=free_port)


@dataclass
class Layout:
    """Everything the command lines refer to: run dir, ports, certificates, kubeconfigs."""

    run_dir: Path
    bins: Binaries
    versions: Versions
    ports: Ports
    ca: CertPair
    apiserver_cert: CertPair
    kubelet_client_cert: CertPair
    kwok_serving_cert: CertPair
    sa_key: Path
    sa_pub: Path
    admin_kubeconfig: Path
    kcm_kubeconfig: Path
    scheduler_kubeconfig: Path

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"


def etcd_argv(lay: Layout) -> list[str]:
    client = f"http://127.0.0.1:{lay.ports.etcd_client}"
    peer = f"http://127.0.0.1:{lay.ports.etcd_peer}"
    return [
        str(lay.bins.etcd), "--name=testenv", f"--data-dir={lay.run_dir / 'etcd-data'}",
        f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=testenv={peer}", "--initial-cluster-state=new",
        "--unsafe-no-fsync",  # throw-away data: durability is not needed, speed is
        "--log-level=warn",
    ]


def apiserver_argv(lay: Layout) -> list[str]:
    return [
        str(lay.bins.kube_apiserver),
        f"--etcd-servers=http://127.0.0.1:{lay.ports.etcd_client}",
        "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={lay.ports.apiserver}",
        f"--tls-cert-file={lay.apiserver_cert.cert}", f"--tls-private-key-file={lay.apiserver_cert.key}",
        f"--client-ca-file={lay.ca.cert}",
        "--authorization-mode=Node,RBAC",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={lay.sa_pub}", f"--service-account-signing-key-file={lay.sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # The apiserver reaches "kubelets" (kwok) for port-forward/logs/exec over verified TLS.
        f"--kubelet-client-certificate={lay.kubelet_client_cert.cert}",
        f"--kubelet-client-key={lay.kubelet_client_cert.key}",
        f"--kubelet-certificate-authority={lay.ca.cert}",
        "--kubelet-preferred-address-types=InternalIP",
        # the built-in 'kubernetes' Endpoints cannot hold a loopback address
        "--endpoint-reconciler-type=none",
        "--allow-privileged=true", "--profiling=false",
        "--enable-admission-plugins=NodeRestriction",
    ]


def controller_manager_argv(lay: Layout) -> list[str]:
    return [
        str(lay.bins.kube_controller_manager),
        f"--kubeconfig={lay.kcm_kubeconfig}", "--leader-elect=false", "--secure-port=0",
        "--use-service-account-credentials=false",
        f"--service-account-private-key-file={lay.sa_key}", f"--root-ca-file={lay.ca.cert}",
        f"--cluster-signing-cert-file={lay.ca.cert}", f"--cluster-signing-key-file={lay.ca.key}",
        "--controllers=*", "--concurrent-gc-syncs=5",
        "--node-monitor-grace-period=60s",
    ]


def scheduler_argv(lay: Layout) -> list[str]:
    return [
        str(lay.bins.kube_scheduler),
        f"--kubeconfig={lay.scheduler_kubeconfig}", "--leader-elect=false", "--secure-port=0",
    ]


def kwok_argv(lay: Layout, config: Path) -> list[str]:
    return [str(lay.bins.kwok), f"--kubeconfig={lay.admin_kubeconfig}", f"--config={config}"]


# kwok ships no stages by default: these are the ones kwokctl itself uses (kustomize/stage/...).
KWOK_STAGE_FILES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


def write_kwok_config(lay: Layout, path: Path) -> Path:
    """KwokConfiguration + the upstream stage files (read from the kwok module, not copied)."""
    port = lay.ports.kwok
    options = f"""apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  cidr: {POD_CIDR}
  nodeIP: 127.0.0.1
  nodePort: {port}
  serverAddress: 127.0.0.1:{port}
  tlsCertFile: {lay.kwok_serving_cert.cert}
  tlsPrivateKeyFile: {lay.kwok_serving_cert.key}
  manageAllNodes: false
  manageNodesWithAnnotationSelector: {KWOK_NODE_ANNOTATION}={KWOK_NODE_ANNOTATION_VALUE}
  nodeLeaseDurationSeconds: 40
  # a config file gets no defaults for these (kwok's own kustomize/kwok/kwok.yaml sets them too)
  nodeLeaseParallelism: 4
  podPlayStageParallelism: 4
  nodePlayStageParallelism: 4
  podsOnNodeSyncParallelism: 4
  enablePodsOnNodeSyncListPager: false
  enablePodsOnNodeSyncStreamWatch: true
  enableCRDs: [PortForward, ClusterPortForward]
  enableDebuggingHandlers: true  # the kubelet API: portForward (and logs/exec if configured)
"""
    stage_dir = kwok_module_dir(lay.versions) / "kustomize" / "stage"
    docs = [options] + [(stage_dir / rel).read_text() for rel in KWOK_STAGE_FILES]
    path.write_text("\n---\n".join(d.strip("\n") for d in docs) + "\n")
    return path


def operator_argv(lay: Layout, probe_port: int) -> list[str]:
    return [
        str(lay.bins.ray_operator),
        "--enable-leader-election=false",
        "--metrics-addr=0",  # controller-runtime: "0" disables the metrics server
        f"--health-probe-bind-address=127.0.0.1:{probe_port}",
        "--log-stdout-encoder=console",
    ]
