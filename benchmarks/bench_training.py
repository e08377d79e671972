"""Distributed XGBoost through `dku_ray.submit()` against single-process XGBoost, same data, same run.

Data: make_classification, 1M rows x 20 float features, 4 parquet files in moto S3 (STS credentials,
auth enforced). 50 rounds, hist, max_depth 6, eta 0.1, max_bin 256, train + valid evaluated every round.
One local Ray head with 2 CPUs; the jobs use 2 workers x 1 CPU. The baseline trains on exactly the
rows the job trains on (same files, same validation split), with `xgboost.train(nthread=2)` on a
QuantileDMatrix, like the job.

Measured (medians over --reps runs, after one warm-up job):
* training phase: the job's `xgboost.train` wall time (rank 0) vs the baseline's;
* data loading: parquet bytes / read time, the job's per-worker pyarrow reads (slowest worker, after
  its first request has opened the connection, as the baseline's listing does) vs
  `pyarrow.parquet.read_table` of the same files in one process; Ray Data's
  `read_parquet().materialize()` on the same cluster for reference (the path not taken);
* fixed overhead on a warm cluster: from the `submit()` call to the first boosting round seen by
  the client, with and without the job's data loading, plus a timeline of the phases;
* end to end: `submit()` call to result vs the baseline's read + prepare + train.
Targets: training <= 1.15x, load throughput >= 0.8x, overhead <= 10 s. Prints one JSON document.

    .venv/bin/python benchmarks/bench_training.py [--rows 1000000] [--rounds 50] [--reps 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "python-lib"), str(ROOT)]

os.environ.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="disabled", AWS_EC2_METADATA_DISABLED="true")

from testenv.local_ray import LocalRayHead  # noqa: E402
from testenv.moto_s3 import MotoS3, classification_table, write_parquet_parts  # noqa: E402

PARAMS = {"max_depth": 6, "eta": 0.1, "max_bin": 256}
DATA = "bench-data"
FOLDER = "bench-folder"


def med(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def baseline(moto: MotoS3, creds: Any, rounds: int) -> dict[str, float]:
    """Single process: read with pyarrow, same split as the job, QuantileDMatrix, xgboost.train(nthread=2)."""
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq
    import xgboost

    from dku_ray_job.data import validation_mask
    from dku_ray_job.plan import Unit

    fs = moto.filesystem(creds)
    files = sorted((i.path, i.size) for i in fs.get_file_info(pafs.FileSelector(f"{DATA}/train"))
                   if i.path.endswith(".parquet"))
    t0 = time.perf_counter()
    table = pq.read_table(f"{DATA}/train", filesystem=fs)
    read_s = time.perf_counter() - t0
    # the same per-file split as the job (pq.read_table returns the files in path order)
    masks = []
    for index, (path, _) in enumerate(files):
        rows = pq.ParquetFile(path, filesystem=fs).metadata.num_rows
        masks.append(validation_mask(Unit(path, index, 0), rows, 0.1, 0))
    import numpy as np

    mask = np.concatenate(masks)
    t1 = time.perf_counter()
    train, valid = table.filter(pa.array(~mask)), table.filter(pa.array(mask))
    xt, xv = train.drop(["label"]).to_pandas(), valid.drop(["label"]).to_pandas()
    dtrain = xgboost.QuantileDMatrix(xt, label=train["label"].to_numpy(), max_bin=256, nthread=2)
    dvalid = xgboost.QuantileDMatrix(xv, label=valid["label"].to_numpy(), ref=dtrain, max_bin=256, nthread=2)
    prep_s = time.perf_counter() - t1
    params = {"objective": "binary:logistic", "tree_method": "hist", "eval_metric": ["logloss", "auc", "error"],
              "seed": 0, "nthread": 2, **PARAMS}
    t2, c2 = time.perf_counter(), time.process_time()
    xgboost.train(params, dtrain, rounds, evals=[(dtrain, "train"), (dvalid, "valid")], verbose_eval=False)
    train_s, cpu_s = time.perf_counter() - t2, time.process_time() - c2
    size = sum(s for _, s in files)
    return {"read_s": round(read_s, 3), "read_mb_s": round(size / 1e6 / read_s, 1), "prepare_s": round(prep_s, 3),
            "train_s": round(train_s, 3), "train_cpu_s": round(cpu_s, 3),
            "total_s": round(time.perf_counter() - t0, 3), "bytes": size}


_READER = """
import json, sys, time
import pyarrow.fs as pafs
from dku_ray_job.data import read_units
from dku_ray_job.plan import Unit
k, s, t, ep = sys.argv[1:5]
units = [Unit(p, int(i), 1) for p, i in (x.split("|") for x in sys.argv[5].split(","))]
fs = pafs.S3FileSystem(access_key=k, secret_key=s, session_token=t, endpoint_override=ep, scheme="http",
                       region="us-east-1")
fs.get_file_info(units[0].path)
t0 = time.perf_counter()
read_units(fs, units, [f"f{i:02d}" for i in range(20)] + ["label"], "bench")
print(json.dumps({"read_s": time.perf_counter() - t0}))
"""


def reader_outside_ray(moto: MotoS3, creds: Any, workers: int = 2) -> float:
    """MB/s of the job's reader in `workers` plain processes (OMP_NUM_THREADS=1, as Ray sets it), same
    file split as the job: tells the reader's own speed from the cost of running inside Ray."""
    import pyarrow.fs as pafs

    from dku_ray_job.plan import assign_units

    fs = moto.filesystem(creds)
    files = sorted((i.path, i.size) for i in fs.get_file_info(pafs.FileSelector(f"{DATA}/train"))
                   if i.path.endswith(".parquet"))
    shards = assign_units(fs, files, workers, "bench")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "python-lib"))
    args = [creds.access_key, creds.secret_key, creds.session_token, f"127.0.0.1:{moto.port}"]
    procs = [subprocess.Popen([sys.executable, "-c", _READER, *args, ",".join(f"{u.path}|{u.file_index}" for u in shard)],
                              env=env, stdout=subprocess.PIPE, text=True) for shard in shards]
    slowest = max(json.loads(p.communicate(timeout=300)[0])["read_s"] for p in procs)
    return round(sum(s for _, s in files) / 1e6 / slowest, 1)


def ray_data_read(head: LocalRayHead, moto: MotoS3, creds: Any, reps: int) -> list[float]:
    """MB/s of ray.data.read_parquet(...).materialize() from a driver on the same cluster."""
    script = f"""
import json, time, pyarrow.fs as pafs, ray
ray.init(address={head.gcs_address!r}, log_to_driver=False)
ray.data.DataContext.get_current().enable_progress_bars = False
fs = pafs.S3FileSystem(access_key={creds.access_key!r}, secret_key={creds.secret_key!r},
                       session_token={creds.session_token!r}, endpoint_override="127.0.0.1:{moto.port}",
                       scheme="http", region="us-east-1")
size = sum(i.size for i in fs.get_file_info(pafs.FileSelector("{DATA}/train")))
for _ in range({reps}):
    t = time.perf_counter()
    ds = ray.data.read_parquet("{DATA}/train", filesystem=fs).materialize()
    print("MBS", size / 1e6 / (time.perf_counter() - t), flush=True)
    del ds
"""
    out = subprocess.run([sys.executable, "-c", script], env=head.client_env(), capture_output=True, text=True,
                         timeout=900)
    return [round(float(line.split()[1]), 1) for line in out.stdout.splitlines() if line.startswith("MBS")]


def job(head: LocalRayHead, moto: MotoS3, creds: Any, rounds: int, checkpoint_every: int, dataset: str) -> dict:
    from dku_ray.submit import submit

    t0 = time.time()
    handle = submit(f"s3://{dataset}", "label", f"s3://{FOLDER}/out", cluster=head.dashboard_url,
                    credentials=creds, region="us-east-1", endpoint_url=moto.endpoint_url, num_rounds=rounds,
                    params=dict(PARAMS), num_workers=2, cpus_per_worker=1, checkpoint_every=checkpoint_every,
                    show_progress=False, stream_logs=False, wait=False)
    res = handle.wait(show_progress=False, stream_logs=False)
    ev = {e["kind"]: e for e in reversed(handle.events.events)}  # first event of each kind
    seen = handle.events.first_seen
    t = res.timings
    load_s = (t.get("plan_s") or 0) + (t.get("data_load_s") or 0)
    started = ev.get("started", {}).get("t")
    timeline = {"preflight_done": t.get("preflight_s"),
                "submitted": round(t["preflight_s"] + t["submit_s"], 3),
                "driver_started": round(started - t0, 3) if started else None,
                "plan_done": round(ev["plan"]["t"] - t0, 3) if "plan" in ev else None,
                "data_loaded": round(ev["data_loaded"]["t"] - t0, 3) if "data_loaded" in ev else None,
                "first_round_in_job": round(ev["round"]["t"] - t0, 3) if "round" in ev else None,
                "first_round_seen": round(seen["round"] - t0, 3) if "round" in seen else None,
                "result": t["total_s"]}
    return {"status": res.status, "train_s": t.get("train_s"), "train_cpu_s_rank0": t.get("train_cpu_s_rank0"),
            "connect_s": t.get("connect_s"), "read_s": t.get("read_s"), "data_load_s": t.get("data_load_s"), "plan_s": t.get("plan_s"),
            "to_first_round_s": t.get("to_first_round_s"),
            "overhead_s": round(t["to_first_round_s"] - load_s, 3) if t.get("to_first_round_s") else None,
            "total_s": t.get("total_s"), "fit_s": t.get("fit_s"), "artifacts_s": t.get("artifacts_s"),
            "submit_s": t.get("submit_s"), "preflight_s": t.get("preflight_s"), "timeline": timeline}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    report: dict[str, Any] = {"rows": args.rows, "rounds": args.rounds, "reps": args.reps, "params": PARAMS,
                              "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()}
    with MotoS3(enforce_auth=True) as moto, LocalRayHead(num_cpus=2, object_store_memory=1_500_000_000) as head:
        for bucket in (DATA, FOLDER):
            moto.create_bucket(bucket)
        creds = moto.assume_role(moto.create_role("bench", read_write=[DATA, FOLDER]), "bench")
        t = time.perf_counter()
        write_parquet_parts(classification_table(args.rows, seed=42), moto.filesystem(), f"{DATA}/train", 4)
        write_parquet_parts(classification_table(20_000, seed=1), moto.filesystem(), f"{DATA}/warm", 2)
        report["data_write_s"] = round(time.perf_counter() - t, 1)
        job(head, moto, creds, 5, 0, f"{DATA}/warm")  # warm-up: runtime env caches, imports in page cache
        base: list[dict] = []
        outside: list[float] = []
        runs: dict[str, list[dict]] = {"checkpoint_every_10": [], "final_checkpoint_only": []}
        for _ in range(args.reps):  # interleaved, so that every path shares the machine's noise
            base.append(baseline(moto, creds, args.rounds))
            runs["checkpoint_every_10"].append(job(head, moto, creds, args.rounds, 10, f"{DATA}/train"))
            outside.append(reader_outside_ray(moto, creds))
            runs["final_checkpoint_only"].append(job(head, moto, creds, args.rounds, 0, f"{DATA}/train"))
        ray_data = ray_data_read(head, moto, creds, args.reps)
    size = base[0]["bytes"]
    b = {k: med([r[k] for r in base]) for k in ("read_s", "read_mb_s", "prepare_s", "train_s", "train_cpu_s", "total_s")}
    report["baseline"] = b
    report["ray_data_read_mb_s"] = {"runs": ray_data, "median": med(ray_data)}
    report["job_reader_outside_ray_mb_s"] = {"runs": outside, "median": med(outside),
                                             "vs_pyarrow": ratio(med(outside), b["read_mb_s"])}
    for name, rs in runs.items():
        m = {k: med([r[k] for r in rs]) for k in ("train_s", "train_cpu_s_rank0", "connect_s", "read_s", "data_load_s",
                                                  "to_first_round_s", "overhead_s", "total_s", "submit_s",
                                                  "preflight_s", "fit_s", "artifacts_s")}
        m["read_mb_s"] = round(size / 1e6 / m["read_s"], 1) if m["read_s"] else None
        m["ratios"] = {"train_vs_baseline": ratio(m["train_s"], b["train_s"]),
                       "read_throughput_vs_pyarrow": ratio(m["read_mb_s"], b["read_mb_s"]),
                       "ray_data_throughput_vs_pyarrow": ratio(med(ray_data), b["read_mb_s"]),
                       "e2e_vs_baseline_total": ratio(m["total_s"], b["total_s"])}
        m["timeline_of_median_run"] = sorted(rs, key=lambda r: r["total_s"])[len(rs) // 2]["timeline"]
        m["statuses"] = [r["status"] for r in rs]
        report[name] = m
    report["targets"] = {"train_ratio_max": 1.15, "read_ratio_min": 0.8, "overhead_max_s": 10.0}
    report["load_avg_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
