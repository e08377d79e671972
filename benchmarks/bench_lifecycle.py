"""Wall time of Start without the wait (apply), Inspect and Stop against the local control plane.

Baseline in the same run: the equivalent `kubectl` calls (server-side apply of the same object,
get of the RayCluster and its pods, delete without waiting) through the same API server.
Prints one JSON document with medians over several runs and the ratio to kubectl.
Targets (issue 3): Inspect under 0.5 s, apply under 1 s, excluding operator and pod time.

    .venv/bin/python benchmarks/bench_lifecycle.py [--runs 7]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "python-lib"), str(ROOT)]

from dku_ray import kube_rest as kr  # noqa: E402
from dku_ray.cluster_values import parse_values  # noqa: E402
from dku_ray.lifecycle import RayClusterClient  # noqa: E402
from dku_ray.operator import OperatorSettings  # noqa: E402
from dku_ray.render_cluster import render_raycluster  # noqa: E402
from testenv.controlplane import ControlPlane  # noqa: E402


def timed(fn: Callable[[], object]) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def median_ms(samples: list[float]) -> float:
    return round(1000 * statistics.median(samples), 1)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    results: dict[str, list[float]] = {k: [] for k in (
        "apply", "inspect", "stop_request", "stop_total", "kubectl_apply", "kubectl_inspect", "kubectl_delete")}
    with ControlPlane(verbose=False) as plane:
        plane.install_operator_as_third_party("bench-operator")
        client = RayClusterClient.from_kubeconfig(str(plane.kubeconfig))
        client.poll_seconds = 0.2
        settings = OperatorSettings(install=False)
        work = Path(tempfile.mkdtemp(prefix="bench-lifecycle-"))
        for run in range(args.runs):
            spec = parse_values({"name": f"bench-{run}", "worker": {"replicas": 2, "memory": 1}}).spec
            results["apply"].append(timed(lambda: client.start(spec, settings, wait=False)))
            client.wait_ready(spec.name, timeout=180)
            results["inspect"].append(timed(lambda: client.inspect(spec.name)))
            began = time.perf_counter()
            client.kube.delete(kr.RAYCLUSTER, spec.name, "default")
            results["stop_request"].append(time.perf_counter() - began)
            results["stop_total"].append(timed(lambda: client.stop(spec.name)) + results["stop_request"][-1])

            twin = render_raycluster(parse_values({"name": f"kubectl-{run}", "worker": {"replicas": 2}}).spec, "default")
            manifest = work / f"kubectl-{run}.json"
            manifest.write_text(json.dumps(twin))
            results["kubectl_apply"].append(timed(lambda: plane.kubectl(
                "apply", "--server-side", "--field-manager", "bench", "-f", str(manifest))))
            client.wait_ready(f"kubectl-{run}", timeout=180)
            results["kubectl_inspect"].append(timed(lambda: plane.kubectl(
                "get", "raycluster,pods", "-l", f"ray.io/cluster=kubectl-{run}", "-o", "json")))
            results["kubectl_inspect"][-1] += timed(lambda: plane.kubectl("get", "raycluster", f"kubectl-{run}", "-o", "json"))
            results["kubectl_delete"].append(timed(lambda: plane.kubectl(
                "delete", "raycluster", f"kubectl-{run}", "--wait=false")))
            client.stop(f"kubectl-{run}")
    report = {
        "benchmark": "lifecycle", "runs": args.runs, "unit": "ms (median)",
        "dku_ray": {k: median_ms(results[k]) for k in ("apply", "inspect", "stop_request", "stop_total")},
        "kubectl": {k: median_ms(results[f"kubectl_{k}"]) for k in ("apply", "inspect", "delete")},
        "ratio_vs_kubectl": {
            "apply": round(statistics.median(results["apply"]) / statistics.median(results["kubectl_apply"]), 2),
            "inspect": round(statistics.median(results["inspect"]) / statistics.median(results["kubectl_inspect"]), 2),
            "stop_request": round(statistics.median(results["stop_request"]) /
                                  statistics.median(results["kubectl_delete"]), 2),
        },
        "targets_met": {"apply_under_1s": statistics.median(results["apply"]) < 1.0,
                        "inspect_under_0.5s": statistics.median(results["inspect"]) < 0.5},
        "notes": "stop_total includes waiting until the pods are gone (kwok's graceful deletion); "
                 "kubectl times include its process start; inspect = RayCluster + pods + events (+ operator detect)",
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
