"""What a run leaves in the folder, and the markers that say whether it can be trusted.

Layout of `<folder>/runs/<run_id>/`: Ray Train's `checkpoint_*` directories, then on success
`model.ubj`, `model_card.json`, `metrics.csv`, `learning_curve.png`, `status.json` and `_SUCCESS`
(written last). On failure: `status.json` (state FAILED, the message, the last checkpoint) and
`_FAILED`, plus the metrics so far. A run directory without either marker is still running or
was killed so hard that neither the job nor the client could write one.
"""
from __future__ import annotations

import csv
import io
import platform
import time
from typing import Any, Mapping, Sequence

import pyarrow.fs as pafs

from dku_ray_job.config import JobConfig, Store
from dku_ray_job.storage import StorageFailure, join, list_dir, uri, write_bytes, write_json

SUCCESS_MARKER = "_SUCCESS"
FAILED_MARKER = "_FAILED"
STATUS_FILE = "status.json"
MODEL_FILE = "model.ubj"
CARD_FILE = "model_card.json"
METRICS_FILE = "metrics.csv"
PLOT_FILE = "learning_curve.png"


def versions() -> dict[str, str]:
    import pyarrow
    import ray
    import xgboost

    return {"ray": ray.__version__, "xgboost": xgboost.__version__, "pyarrow": pyarrow.__version__,
            "python": platform.python_version()}


def metrics_csv(history: Sequence[Mapping[str, Any]]) -> str:
    keys = sorted({k for row in history for k in row if k not in ("round", "round_s")})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["round", *keys, "round_s"])
    for row in history:
        writer.writerow([row.get("round"), *[row.get(k, "") for k in keys], row.get("round_s", "")])
    return out.getvalue()


def learning_curve_png(history: Sequence[Mapping[str, Any]], title: str) -> bytes | None:
    """One panel per metric, train and validation together; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = sorted({k.split("-", 1)[1] for row in history for k in row if "-" in k})
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
    rounds = [row["round"] for row in history]
    for ax, name in zip(axes[0], names):
        for data in ("train", "valid"):
            key = f"{data}-{name}"
            if any(key in row for row in history):
                ax.plot(rounds, [row.get(key) for row in history], label=data)
        ax.set_title(name)
        ax.set_xlabel("boosting round")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def model_card(cfg: JobConfig, plan: Any, outcome: Mapping[str, Any], history: Sequence[Mapping[str, Any]],
               timings: Mapping[str, Any]) -> dict[str, Any]:
    """Everything needed to use the model later without the job: features, label encoding, params."""
    final = {k: v for k, v in (history[-1] if history else {}).items() if k not in ("round", "round_s")}
    features = []
    for name in plan.features:
        entry: dict[str, Any] = {"name": name, "kind": "categorical" if name in plan.categorical else "numeric"}
        if name in plan.categorical:
            entry["categories"] = plan.categorical[name]
        features.append(entry)
    store = cfg.store(cfg.train)
    return {
        "format": "dku_ray.model_card/1",
        "run_id": cfg.run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model_file": MODEL_FILE,
        "label": {"column": cfg.label, "task": plan.task, "classes": plan.classes, "arrow_type": plan.label_type,
                  "encoding": "class index in 'classes' (0..n-1)" if plan.classes is not None else "numeric"},
        "features": features,
        "objective": plan.objective,
        "params": plan.params,
        "num_rounds_requested": cfg.num_rounds,
        "rounds": outcome.get("rounds"),
        "start_round": outcome.get("start_round"),
        "best_iteration": outcome.get("best_iteration"),
        "early_stopping_rounds": cfg.early_stopping_rounds,
        "metrics": final,
        "data": {"train": uri(store, cfg.train.path),
                 "valid": uri(cfg.store(cfg.valid), cfg.valid.path) if cfg.valid else None,
                 "validation_fraction": 0.0 if cfg.valid else cfg.validation_fraction, "seed": cfg.seed,
                 "train_files": plan.train_files, "train_bytes": plan.train_bytes},
        "resources": {"num_workers": cfg.num_workers, "cpus_per_worker": cfg.cpus_per_worker,
                      "gpus_per_worker": cfg.gpus_per_worker},
        "resumed_from": uri(cfg.store(cfg.resume_from), cfg.resume_from.path) if cfg.resume_from else None,
        "timings": dict(timings),
        "versions": {**versions(), "client": dict(cfg.client_versions)},
    }


class RunWriter:
    """Writes into the run directory; failure markers are best effort and never raise."""

    def __init__(self, fs: pafs.FileSystem, store: Store, run_dir: str, run_id: str, job_id: str) -> None:
        self.fs, self.store, self.run_dir = fs, store, run_dir
        self.run_id, self.job_id = run_id, job_id

    def path(self, name: str) -> str:
        return join(self.run_dir, name)

    def uri(self, name: str = "") -> str:
        return uri(self.store, self.path(name) if name else self.run_dir)

    def put(self, name: str, data: bytes) -> None:
        write_bytes(self.fs, self.store, self.path(name), data)

    def status(self, state: str, **fields: Any) -> None:
        body = {"state": state, "run_id": self.run_id, "job_id": self.job_id, "written_by": "job",
                "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **fields}
        write_json(self.fs, self.store, self.path(STATUS_FILE), body)

    def succeed(self, **fields: Any) -> None:
        self.status("SUCCEEDED", **fields)
        self.put(SUCCESS_MARKER, b"")

    def fail(self, message: str, **fields: Any) -> bool:
        """Write status FAILED and `_FAILED`; False if even that was impossible (e.g. expired credentials)."""
        try:
            self.status("FAILED", message=message, **fields)
            self.put(FAILED_MARKER, message.encode())
            return True
        except (StorageFailure, OSError):
            return False

    def checkpoints(self) -> list[str]:
        """Checkpoint directories of this run, oldest first (`checkpoint_final` sorts last)."""
        try:
            infos = list_dir(self.fs, self.run_dir)
        except OSError:
            return []
        names = sorted(i.base_name for i in infos
                       if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_"))
        return [self.path(n) for n in names]
