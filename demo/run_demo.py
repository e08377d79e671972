"""The main job on an embedded default, on one machine: `make demo`.

1. Starts the local Kubernetes control plane (real kube-apiserver, scheduler, controller-manager,
   kwok nodes) from testenv/.
2. Starts a Ray cluster on it with dku_ray, which installs the real KubeRay operator from
   KubeRay's own manifests (the air-gapped "local directory" source) and waits until ready.
3. Prints the Inspect report, then stops the cluster and removes the operator.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "python-lib"), str(ROOT)]

from dku_ray import report_format as fmt  # noqa: E402
from dku_ray.cluster_values import parse_values  # noqa: E402
from dku_ray.lifecycle import RayClusterClient  # noqa: E402
from dku_ray.operator import OperatorSettings  # noqa: E402
from dku_ray.operator_manifests import ManifestSource  # noqa: E402
from testenv.controlplane import ControlPlane  # noqa: E402
from testenv.versions import kuberay_module_dir  # noqa: E402


def progress(message: str, fraction: float) -> None:
    print(f"  [{fraction:4.0%}] {message}", flush=True)


def main() -> int:
    began = time.monotonic()
    with ControlPlane() as plane:
        clusters = RayClusterClient.from_kubeconfig(str(plane.kubeconfig))
        parsed = parse_values({"name": "demo", "worker": {"replicas": 2, "cpu": 1, "memory": "2Gi"},
                               "head": {"cpu": 1, "memory": "2Gi"}})
        source = ManifestSource(str(kuberay_module_dir() / "config"))
        print("\n== Start Ray cluster")
        started = clusters.start(parsed.spec, OperatorSettings(source=source, version=parsed.spec.kuberay_version),
                                 timeout=300, progress=progress, warnings=parsed.warnings)
        print(fmt.start_text(started).split("\n\n")[0])
        print("\n== Inspect Ray cluster")
        print(fmt.report_text(clusters.inspect("demo")))
        print("== Stop Ray cluster")
        print(fmt.stop_text(clusters.stop("demo", remove_operator=True, progress=progress)))
    print(f"\nDemo finished in {time.monotonic() - began:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
