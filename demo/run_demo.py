"""The main job on an embedded default, all on this machine: `make demo`.

1. A real local Kubernetes control plane (kube-apiserver, etcd, controller-manager, scheduler,
   kwok nodes), from testenv/.
2. dku_ray starts a Ray cluster on it, installing the real KubeRay operator from KubeRay's own
   manifests (the air-gapped "local directory" source); token auth is on.
3. The head pod's dashboard port leads (kwok port-forward) to a real local Ray head started with the
   token KubeRay generated: the "pods" run nothing, so this head stands in for them.
4. moto serves S3 and STS; a 1M rows x 20 features parquet dataset is written to S3, and the
   training credentials are STS AssumeRole credentials, as a DSS S3 connection would give.
5. `dku_ray.submit()` gets a reference to the RayCluster (not a pod IP), reaches it through the
   dashboard tunnel, trains XGBoost with Ray Train, and the demo prints the metrics and where the
   model is. Everything is stopped at the end.

    .venv/bin/python demo/run_demo.py [--rows 1000000] [--rounds 50]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "python-lib"), str(ROOT)]
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep Ray on loopback
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")

import dku_ray  # noqa: E402
from dku_ray import report_format as fmt  # noqa: E402
from dku_ray.tunnel_pod import HeadPodFinder  # noqa: E402
from testenv.controlplane import ControlPlane  # noqa: E402
from testenv.local_ray import LocalRayHead  # noqa: E402
from testenv.moto_s3 import REGION, MotoS3, classification_table, write_parquet_parts  # noqa: E402
from testenv.versions import kuberay_module_dir  # noqa: E402

DATA, FOLDER, NAME = "demo-data", "demo-models", "demo"


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def progress(message: str, fraction: float) -> None:
    print(f"  [{fraction:4.0%}] {message}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    began = time.monotonic()
    with ControlPlane() as plane, MotoS3(enforce_auth=True) as moto:
        step("Start a Ray cluster on Kubernetes (installs the KubeRay operator)")
        clusters = dku_ray.RayClusterClient.from_kubeconfig(str(plane.kubeconfig))
        parsed = dku_ray.parse_values({"name": NAME, "worker": {"replicas": 2, "cpu": 1, "memory": "4Gi"},
                                       "head": {"cpu": 1, "memory": "4Gi"}})
        source = dku_ray.ManifestSource(str(kuberay_module_dir() / "config"))
        operator = dku_ray.OperatorSettings(source=source, version=parsed.spec.kuberay_version)
        started = clusters.start(parsed.spec, operator, timeout=300, progress=progress, warnings=parsed.warnings)
        print(fmt.report_text(started.report))

        step("Stand a real Ray head in for the pods (kwok forwards the head pod's port 8265 to it)")
        finder = HeadPodFinder(clusters.kube, NAME, started.namespace)
        token = finder.read_token(finder.auth())
        head = LocalRayHead(num_cpus=2, object_store_memory=1_500_000_000, auth_token=token).start()
        forward = plane.forward_pod_port(started.namespace, {"ray.io/cluster": NAME, "ray.io/node-type": "head"}, 8265,
                                         target_port=head.ports["dashboard"])
        try:
            step(f"Write {args.rows:,} rows x 20 features as parquet to S3 (moto), with STS credentials")
            for bucket in (DATA, FOLDER):
                moto.create_bucket(bucket)
            credentials = moto.assume_role(moto.create_role("demo-training", read_write=[DATA, FOLDER]), "demo")
            table = classification_table(args.rows, seed=42)
            write_parquet_parts(table, moto.filesystem(), f"{DATA}/transactions", n_files=4)
            print(f"  s3://{DATA}/transactions: {table.num_rows:,} rows, {table.num_columns} columns, 4 files")

            step("Train with dku_ray.submit(), reaching the cluster by reference through the dashboard tunnel")
            result = dku_ray.submit(
                f"s3://{DATA}/transactions", "label", f"s3://{FOLDER}/xgboost",
                cluster=dku_ray.ClusterRef(str(plane.kubeconfig), NAME, started.namespace),
                num_rounds=args.rounds, num_workers=2, cpus_per_worker=1, checkpoint_every=10,
                params={"objective": "binary:logistic", "tree_method": "hist", "max_depth": 6, "eta": 0.1,
                        "eval_metric": ["logloss", "auc", "error"]},
                credentials=credentials, region=REGION, endpoint_url=moto.endpoint_url)
            print_result(result)
            keep_artifacts(moto, result.run_dir, ROOT / "demo-output")
        finally:
            forward.close()
            head.stop()
            head.cleanup()
        step("Stop the Ray cluster and remove the operator dku_ray installed")
        print(fmt.stop_text(clusters.stop(NAME, remove_operator=True, progress=progress)))
    print(f"\nDemo finished in {time.monotonic() - began:.0f} s.")
    return 0


def print_result(result: "dku_ray.TrainingResult") -> None:
    print(f"\n  job {result.job_id}: {result.status} after {result.rounds} rounds")
    final = ", ".join(f"{k} {v:.4f}" for k, v in sorted(result.final_metrics.items()))
    print(f"  final metrics: {final}")
    timings = result.timings
    print("  timings: " + ", ".join(f"{k[:-2]} {timings[k]:.1f} s" for k in
                                    ("submit_s", "data_load_s", "train_s", "total_s") if k in timings))
    print(f"  model:       {result.model_uri}")
    print(f"  model card:  {result.model_card_uri}")
    print(f"  metrics:     {result.metrics_uri}")
    print(f"  plot:        {result.plot_uri}")
    print(f"  checkpoint:  {result.checkpoint_uri}")


def keep_artifacts(moto: MotoS3, run_dir: str, target: Path) -> None:
    """moto keeps S3 in memory: copy the run's files (not the checkpoints) here before it stops."""
    import pyarrow.fs as pafs

    fs = moto.filesystem()
    local = target / run_dir.rstrip("/").rsplit("/", 1)[1]
    local.mkdir(parents=True, exist_ok=True)
    for name in ("model.ubj", "model_card.json", "metrics.csv", "learning_curve.png", "status.json"):
        source = f"{run_dir[len('s3://'):]}/{name}"
        if fs.get_file_info(source).type == pafs.FileType.File:
            pafs.copy_files(source, str(local / name), source_filesystem=fs)
    print(f"  copied the run's model, card, metrics and plot to {local.relative_to(ROOT)}/")


if __name__ == "__main__":
    sys.exit(main())
