"""What each Ray Train worker runs: load its data, boost, report progress and checkpoints.

Two choices against the measured Ray 2.60 pitfalls:
* `ray.train.report()` is called only for checkpoints, not every round. In Train V2 each report
  waits for the controller's poll (`RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`, 2 s by default), so a
  per-round report (what `RayTrainReportCallback` does) costs ~2 s per round. Per-round metrics
  go to the job log as events instead, and into the checkpoint's history.
* Decisions that change the number of rounds (credential expiry) are all-reduced, so that every
  rank stops at the same round; a rank that stops alone would hang its peers in the collective.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

import numpy as np
import xgboost
from xgboost import collective

from dku_ray_job import events
from dku_ray_job.credentials import Redactor, SecretBox, install_redaction, remove_secrets_file
from dku_ray_job.data import load_worker_data
from dku_ray_job.plan import Plan, PlanError
from dku_ray_job.storage import make_filesystem, uri

MODEL_FILE = "model.ubj"  # the name RayTrainReportCallback.get_model() expects in a checkpoint
HISTORY_FILE = "history.json"
FINAL_CHECKPOINT = "checkpoint_final"


class ExpiryGuard:
    """Stops training while the folder credentials can still write the checkpoint and results."""

    def __init__(self, expiration: float | None, margin_s: float) -> None:
        self.expiration = expiration
        self.margin_s = margin_s

    def reason(self, round_s: float, checkpoint_s: float, now: float | None = None) -> str | None:
        if self.expiration is None:
            return None
        left = self.expiration - (now if now is not None else time.time())
        need = self.margin_s + round_s + checkpoint_s
        if left >= need:
            return None
        when = time.strftime("%H:%M:%S UTC", time.gmtime(self.expiration))
        return (f"the S3 credentials expire at {when}, in {max(0.0, left):.0f} s, which is less than the "
                f"{need:.0f} s needed for one more round, a checkpoint and the {self.margin_s:.0f} s safety margin")


def _all_max(values: list[float]) -> list[float]:
    """Element-wise max over the ranks (identity when training on one worker)."""
    arr = np.asarray(values, dtype=np.float64)
    if collective.get_world_size() > 1:
        arr = collective.allreduce(arr, collective.Op.MAX)
    return [float(v) for v in arr]


class RoundReporter(xgboost.callback.TrainingCallback):
    """Per-round history and progress events, periodic checkpoints, the expiry guard."""

    def __init__(self, rank: int, total_rounds: int, history: list[dict[str, Any]], checkpoint_every: int,
                 guard: ExpiryGuard, progress_interval_s: float) -> None:
        super().__init__()
        self.rank = rank
        self.total_rounds = total_rounds
        self.history = history
        self.checkpoint_every = checkpoint_every
        self.guard = guard
        self.progress_interval_s = progress_interval_s
        self.stop_reason: str | None = None
        self.last_checkpoint_round = -1
        self.checkpoint_s = 5.0  # first estimate; measured after the first checkpoint
        self._round_s = 0.0
        self._last_t = time.perf_counter()
        self._last_emit = 0.0

    def before_training(self, model: xgboost.Booster) -> xgboost.Booster:
        self._last_t = time.perf_counter()
        return model

    def after_iteration(self, model: xgboost.Booster, epoch: int, evals_log: dict) -> bool:
        now = time.perf_counter()
        took, self._last_t = now - self._last_t, now
        self._round_s = took if self._round_s == 0 else 0.7 * self._round_s + 0.3 * took
        rounds = model.num_boosted_rounds()
        metrics = {f"{data}-{name}": float(values[-1]) for data, per in evals_log.items() for name, values in per.items()}
        self.history.append({"round": rounds, **metrics, "round_s": round(took, 4)})
        reason = self.guard.reason(self._round_s, self.checkpoint_s)
        # same config on every rank, so either all ranks all-reduce here or none does
        stop = self.guard.expiration is not None and _all_max([1.0 if reason else 0.0])[0] > 0
        if self.rank == 0 and (now - self._last_emit >= self.progress_interval_s or rounds >= self.total_rounds or stop):
            self._last_emit = now
            events.emit("round", rank=0, round=rounds, total=self.total_rounds, metrics=metrics)
        if stop:
            self.stop_reason = reason or "another worker found that the S3 credentials expire too soon"
            return True
        if self.checkpoint_every and rounds % self.checkpoint_every == 0 and rounds < self.total_rounds:
            self.checkpoint(model, f"checkpoint_{rounds:06d}", {"round": rounds, **metrics})
        return False

    def checkpoint(self, model: xgboost.Booster, name: str, metrics: dict[str, Any],
                   extra: dict[str, Any] | None = None) -> None:
        """Every rank must call ray.train.report (it is a barrier); rank 0 alone uploads the files."""
        import ray.train

        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if self.rank == 0:
                model.save_model(os.path.join(tmp, MODEL_FILE))
                with open(os.path.join(tmp, HISTORY_FILE), "w") as fh:
                    json.dump({"history": self.history, **(extra or {})}, fh, default=str)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt, checkpoint_dir_name=name)
        self.checkpoint_s = max(self.checkpoint_s if self.last_checkpoint_round >= 0 else 0.0,
                                time.perf_counter() - t0)
        self.last_checkpoint_round = model.num_boosted_rounds()
        if self.rank == 0:
            events.emit("checkpoint", rank=0, round=self.last_checkpoint_round, name=name,
                        upload_s=round(time.perf_counter() - t0, 3))


def _load_start_model(config: dict[str, Any], filesystems: dict) -> tuple[xgboost.Booster | None, list]:
    """The model to continue from: Ray's own restart checkpoint first, else the user's resume_from."""
    import ray.train

    restart = ray.train.get_checkpoint()
    if restart is not None:
        with restart.as_directory() as d:
            return _read_checkpoint_dir(d)
    resume = config.get("resume")
    if not resume:
        return None, []
    store_name, path = resume
    fs = filesystems[store_name]
    model_bytes = fs.open_input_stream(f"{path}/{MODEL_FILE}").read()
    booster = xgboost.Booster()
    booster.load_model(bytearray(model_bytes))
    history: list = []
    try:
        history = json.loads(fs.open_input_stream(f"{path}/{HISTORY_FILE}").read()).get("history", [])
    except (OSError, FileNotFoundError, ValueError):
        pass
    return booster, history


def _read_checkpoint_dir(d: str) -> tuple[xgboost.Booster, list]:
    booster = xgboost.Booster(model_file=os.path.join(d, MODEL_FILE))
    history: list = []
    path = os.path.join(d, HISTORY_FILE)
    if os.path.exists(path):
        with open(path) as fh:
            history = json.load(fh).get("history", [])
    return booster, history


def _early_stopping(params: dict[str, Any], rounds: int) -> xgboost.callback.EarlyStopping:
    metrics = params.get("eval_metric")
    first = metrics[0] if isinstance(metrics, (list, tuple)) and metrics else metrics
    return xgboost.callback.EarlyStopping(rounds=rounds, data_name="valid", metric_name=first or None,
                                          save_best=True)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train

    events.emit("worker_started", rank=ray.train.get_context().get_world_rank())
    remove_secrets_file()  # this node unpacked the working_dir too
    secrets: SecretBox = config["secrets"]
    install_redaction(Redactor(secrets.values()))
    cfg = config["cfg"]
    plan: Plan = config["plan"]
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    filesystems = {name: make_filesystem(store, secrets.get(name)) for name, store in cfg.stores.items()}
    tstore = cfg.store(cfg.train)
    vplace = cfg.valid
    train_part, valid_part, stats = load_worker_data(
        plan, rank, filesystems[cfg.train.store], uri(tstore, cfg.train.path),
        filesystems[vplace.store] if vplace else None, uri(cfg.store(vplace), vplace.path) if vplace else "",
        0.0 if vplace else cfg.validation_fraction, cfg.seed)
    nthread = max(1, int(cfg.cpus_per_worker))
    params = dict(plan.params)
    params.setdefault("nthread", nthread)
    t0 = time.perf_counter()
    max_bin = int(params.get("max_bin", 256))
    dtrain = xgboost.QuantileDMatrix(train_part.x, label=train_part.y, enable_categorical=True, max_bin=max_bin,
                                     nthread=nthread)
    evals = [(dtrain, "train")]
    if valid_part is not None:
        evals.append((xgboost.QuantileDMatrix(valid_part.x, label=valid_part.y, ref=dtrain, enable_categorical=True,
                                              max_bin=max_bin, nthread=nthread), "valid"))
    dmatrix_s = time.perf_counter() - t0
    worst = _all_max([stats.read_s, stats.encode_s, dmatrix_s, stats.connect_s])
    events.emit("data_loaded", rank=rank, rows=stats.rows, read_started=round(stats.started, 3),
                connect_s=stats.connect_s, read_s=stats.read_s, encode_s=stats.encode_s,
                dmatrix_s=round(dmatrix_s, 3), bytes=stats.bytes_in_memory,
                max_read_s=worst[0], max_encode_s=worst[1], max_dmatrix_s=worst[2], max_connect_s=worst[3])
    start, history = _load_start_model(config, filesystems)
    done = start.num_boosted_rounds() if start is not None else 0
    if done > cfg.num_rounds:
        raise PlanError(f"The checkpoint to resume from already has {done} rounds, more than num_rounds="
                        f"{cfg.num_rounds}; ask for more rounds to continue it.")
    history = [h for h in history if h.get("round", 0) <= done]  # drop rounds the checkpoint does not contain
    folder = cfg.stores[cfg.run_dir.store]
    reporter = RoundReporter(rank, cfg.num_rounds, history, cfg.checkpoint_every,
                             ExpiryGuard(folder.expiration, cfg.credentials_margin_s), cfg.progress_interval_s)
    callbacks: list[xgboost.callback.TrainingCallback] = [reporter]
    if cfg.early_stopping_rounds and valid_part is not None:
        callbacks.append(_early_stopping(params, cfg.early_stopping_rounds))
    if rank == 0:
        events.emit("train_started", rank=0, start_round=done, total=cfg.num_rounds)
    t1, c1 = time.perf_counter(), time.process_time()
    booster = xgboost.train(params, dtrain, num_boost_round=cfg.num_rounds - done, evals=evals, xgb_model=start,
                            callbacks=callbacks, verbose_eval=False)
    train_s, train_cpu_s = time.perf_counter() - t1, time.process_time() - c1
    outcome = {
        "stop_reason": reporter.stop_reason,
        "rounds": booster.num_boosted_rounds(),
        "start_round": done,
        "best_iteration": booster.attr("best_iteration"),
        "timings": {"connect_s": worst[3], "read_s": worst[0], "encode_s": worst[1], "dmatrix_s": round(worst[2], 3),
                    "train_s": round(train_s, 3), "train_cpu_s_rank0": round(train_cpu_s, 3)},
        "rows_per_worker": stats.rows,
    }
    last = history[-1] if history else {}
    if rank == 0:
        events.emit("train_finished", rank=0, **outcome)
    reporter.checkpoint(booster, FINAL_CHECKPOINT, {k: v for k, v in last.items() if k != "round_s"}, outcome)
