"""The job driver: plan, run Ray Train's XGBoostTrainer, write the results and the markers.

Every way out (success, error, SIGTERM from `stop_job`) leaves `status.json` and a marker in
the run directory when storage allows it, and a final `finished`/`failed` event in the log.
"""
from __future__ import annotations

import json
import os
import platform
import signal
import threading
import time
import traceback
from typing import Any

from dku_ray_job import events
from dku_ray_job.artifacts import (CARD_FILE, METRICS_FILE, MODEL_FILE, PLOT_FILE, STATUS_FILE, RunWriter,
                                   learning_curve_png, metrics_csv, model_card, versions)
from dku_ray_job.config import CONFIG_FILE, SECRETS_FILE, ConfigError, JobConfig, load_config
from dku_ray_job.credentials import Redactor, SecretBox, install_redaction, remove_secrets_file, take_secrets
from dku_ray_job.plan import PlanError, make_plan
from dku_ray_job.storage import StorageFailure, exists, make_filesystem, read_bytes, uri
from dku_ray_job.train_loop import HISTORY_FILE, train_loop_per_worker


class JobStopped(BaseException):
    """SIGTERM from Ray's stop_job: unwind, write the markers, exit."""


class JobFailure(RuntimeError):
    """A failure whose message is already written for people."""


HARD_EXIT = [False]
_STOP_REASON = ["the job was stopped (Ray stop_job, a timeout or Ctrl-C in the notebook)"]


def _on_sigterm(signum: int, frame: Any) -> None:
    raise JobStopped(_STOP_REASON[0])


class StartWatchdog(threading.Thread):
    """Fails the job when its workers cannot all start in time.

    Ray Train waits forever for a placement group the cluster cannot hold (resources taken by
    another job, a node lost); this turns that into a clear failure with markers.
    """

    def __init__(self, timeout_s: float, num_workers: int) -> None:
        super().__init__(name="dku-ray-start-watchdog", daemon=True)
        self.timeout_s, self.num_workers = timeout_s, num_workers
        self.done = threading.Event()

    def _workers_alive(self) -> int:
        import ray
        from ray.util.state import list_actors

        job_id = ray.get_runtime_context().get_job_id()
        actors = list_actors(filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE"),
                                      ("job_id", "=", job_id)], timeout=10, raise_on_missing_output=False)
        return len(actors)

    def run(self) -> None:
        deadline = time.time() + self.timeout_s
        while not self.done.wait(min(10.0, self.timeout_s)):
            try:
                if self._workers_alive() >= self.num_workers:
                    return
            except Exception:  # noqa: BLE001 - the state API may be briefly unavailable; keep waiting
                pass
            if time.time() > deadline:
                _STOP_REASON[0] = (f"the {self.num_workers} training workers could not all start within "
                                   f"{self.timeout_s:.0f} s (start_timeout_s): the cluster lacks free CPUs/GPUs "
                                   "for them, e.g. another job holds them. Nothing was trained.")
                os.kill(os.getpid(), signal.SIGTERM)
                return


def _message(exc: BaseException) -> str:
    """The most useful line for people, digging into Ray Train's wrapped worker errors."""
    if isinstance(exc, SystemExit):  # Ray's own SIGTERM handler, if it ran before ours was back
        return _STOP_REASON[0]
    known = (JobFailure, PlanError, StorageFailure, ConfigError, JobStopped)
    seen: list[BaseException] = [exc]
    for failure in (getattr(exc, "worker_failures", None) or {}).values():
        seen.append(failure)
    controller = getattr(exc, "controller_failure", None)
    if controller is not None:
        seen.append(controller)
    for err in list(seen):
        cause = getattr(err, "cause", None)
        if isinstance(cause, BaseException):
            seen.append(cause)
        if err.__cause__ is not None:
            seen.append(err.__cause__)
    for err in seen:
        if isinstance(err, known):
            return str(err)
    for err in seen:  # Ray wraps worker exceptions in RayTaskError subclasses of the original type
        for cls in known:
            if isinstance(err, cls) or cls.__name__ in type(err).__name__:
                return str(err).splitlines()[-1] if str(err) else cls.__name__
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"


def _check_versions(cfg: JobConfig) -> None:
    import ray

    client = cfg.client_versions
    problems = []
    if client.get("ray") and client["ray"] != ray.__version__:
        problems.append(f"Ray {client['ray']} on the client but {ray.__version__} on the cluster")
    here = ".".join(platform.python_version_tuple()[:2])
    if client.get("python") and ".".join(client["python"].split(".")[:2]) != here:
        problems.append(f"Python {client['python']} on the client but {platform.python_version()} on the cluster")
    if problems:
        raise JobFailure("Version mismatch: " + "; ".join(problems) + ". Use a code env and a Ray image with the "
                         "same Ray version and Python minor version.")


def _delete_own_package() -> bool:
    """Delete this job's working_dir zip (it holds the credentials file) from the cluster's GCS.

    Ray keeps an uploaded working_dir in GCS after the job ends (measured: still there long after
    the job finished). Done at the very end, because workers that start later on other nodes
    download it. Uses Ray's internal KV: there is no public API to delete a package.
    """
    import ray
    from ray._private.ray_constants import KV_NAMESPACE_PACKAGE
    from ray.experimental.internal_kv import _internal_kv_del

    uri = (ray.get_runtime_context().runtime_env or {}).get("working_dir") or ""
    if not uri.startswith("gcs://"):
        return False
    _internal_kv_del(uri, namespace=KV_NAMESPACE_PACKAGE)
    return True


def _sweep_secret_copies() -> None:
    """Delete the credentials file on every node that unpacked the working_dir (multi-node only)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1:
        return
    remover = ray.remote(num_cpus=0)(remove_secrets_file)
    refs = [remover.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
            for n in nodes]
    ray.wait(refs, num_returns=len(refs), timeout=30)


def _fit_interruptibly(trainer: Any) -> Any:
    """trainer.fit() in a helper thread, while this (main) thread stays ready for SIGTERM.

    Python signal handlers run only in the main thread between bytecodes; inside fit()'s blocking
    ray.get they would wait until Ray kills the job with SIGKILL, too late to write the markers.
    """
    box: dict[str, Any] = {}

    def fit() -> None:
        try:
            box["result"] = trainer.fit()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            box["error"] = exc

    thread = threading.Thread(target=fit, name="dku-ray-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
    if "error" in box:
        raise box["error"]
    return box["result"]


def _read_checkpoint(fs: Any, store: Any, path: str) -> tuple[bytes, dict[str, Any]]:
    model = read_bytes(fs, store, f"{path}/{MODEL_FILE}")
    meta = json.loads(read_bytes(fs, store, f"{path}/{HISTORY_FILE}"))
    return model, meta


def run(cfg: JobConfig, secrets: SecretBox, t_start: float) -> int:
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.xgboost import XGBoostTrainer

    filesystems = {name: make_filesystem(store, secrets.get(name)) for name, store in cfg.stores.items()}
    fstore, ffs = cfg.store(cfg.run_dir), filesystems[cfg.run_dir.store]
    writer = RunWriter(ffs, fstore, cfg.run_dir.path, cfg.run_id, cfg.job_id)
    timings: dict[str, float] = {}
    foreign = [False]  # the run directory belongs to another run: never write markers into it
    try:
        _check_versions(cfg)
        for name, store in cfg.stores.items():
            if store.expiration is not None and store.expiration - time.time() < cfg.credentials_margin_s:
                raise JobFailure(f"The S3 credentials for '{name}' expire in {store.expiration - time.time():.0f} s, "
                                 f"less than the {cfg.credentials_margin_s:.0f} s safety margin; nothing was "
                                 "trained. Submit again with fresh credentials.")
        if exists(ffs, writer.path(STATUS_FILE)):
            foreign[0] = True
            raise JobFailure(f"The run directory {writer.uri()} is already used; nothing was overwritten.")
        writer.status("RUNNING", started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        t0 = time.perf_counter()
        plan = make_plan(cfg, filesystems)
        timings["plan_s"] = round(time.perf_counter() - t0, 3)
        events.emit("plan", **plan.summary(), plan_s=timings["plan_s"])
        events.emit("ray_init")
        ray.init(log_to_driver=True, logging_level="WARNING")
        signal.signal(signal.SIGTERM, _on_sigterm)  # ray.init replaced it with a bare sys.exit
        parent, _, name = cfg.run_dir.path.rstrip("/").rpartition("/")
        resume = (cfg.resume_from.store, cfg.resume_from.path) if cfg.resume_from else None
        trainer = XGBoostTrainer(
            train_loop_per_worker,
            train_loop_config={"cfg": cfg, "plan": plan, "secrets": secrets, "resume": resume},
            scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.gpus_per_worker > 0,
                                         resources_per_worker={"CPU": cfg.cpus_per_worker,
                                                               **({"GPU": cfg.gpus_per_worker}
                                                                  if cfg.gpus_per_worker else {})}),
            run_config=RunConfig(name=name, storage_path=parent, storage_filesystem=ffs,
                                 checkpoint_config=CheckpointConfig(num_to_keep=max(2, cfg.keep_checkpoints)),
                                 failure_config=FailureConfig(max_failures=0)),
        )
        events.emit("fit_started")
        watchdog = StartWatchdog(cfg.start_timeout_s, cfg.num_workers)
        watchdog.start()
        t1 = time.perf_counter()
        try:
            result = _fit_interruptibly(trainer)
        finally:
            watchdog.done.set()
        timings["fit_s"] = round(time.perf_counter() - t1, 3)
        if result.checkpoint is None:
            raise JobFailure("Training ended without a final checkpoint.")
        model_bytes, meta = _read_checkpoint(ffs, fstore, result.checkpoint.path)
        history, outcome = meta.get("history", []), meta
        timings.update(outcome.get("timings", {}))
        checkpoint_uri = uri(fstore, result.checkpoint.path)
        stop_reason = outcome.get("stop_reason")
        if stop_reason:
            message = (f"Training stopped at round {outcome['rounds']} of {cfg.num_rounds}: {stop_reason}. The model so "
                       f"far is saved in {checkpoint_uri}; submit again with fresh credentials and "
                       f"resume_from='{checkpoint_uri}' to continue.")
            _write_partial(writer, history)
            writer.fail(message, rounds=outcome["rounds"], checkpoint=checkpoint_uri, reason="credentials_expiring")
            events.emit("failed", message=message, checkpoint=checkpoint_uri, reason="credentials_expiring")
            return 1
        t2 = time.perf_counter()
        writer.put(MODEL_FILE, model_bytes)
        writer.put(METRICS_FILE, metrics_csv(history).encode())
        png = learning_curve_png(history, f"{cfg.run_id} ({plan.objective})")
        if png:
            writer.put(PLOT_FILE, png)
        timings["artifacts_s"] = round(time.perf_counter() - t2, 3)
        timings["job_total_s"] = round(time.time() - t_start, 3)
        card = model_card(cfg, plan, outcome, history, timings)
        writer.put(CARD_FILE, json.dumps(card, indent=1, default=str).encode())
        writer.succeed(rounds=outcome["rounds"], checkpoint=checkpoint_uri, model=writer.uri(MODEL_FILE),
                       metrics=card["metrics"], plot=bool(png))
        events.emit("finished", run_dir=writer.uri(), model=writer.uri(MODEL_FILE), checkpoint=checkpoint_uri,
                    rounds=outcome["rounds"], metrics=card["metrics"], timings=timings, plot=bool(png))
        return 0
    except BaseException as exc:  # noqa: BLE001 - every way out must leave a marker
        if isinstance(exc, (JobStopped, SystemExit)):
            HARD_EXIT[0] = True  # the fit thread may still block in ray.get: skip Ray's atexit shutdown
        message = _message(exc)
        if not isinstance(exc, (JobStopped, JobFailure, PlanError, StorageFailure, ConfigError)):
            traceback.print_exc()
        if foreign[0]:
            events.emit("failed", message=message, checkpoint=None, marked=False, reason="error")
            return 1
        checkpoints = writer.checkpoints()
        latest = uri(fstore, checkpoints[-1]) if checkpoints else None
        if checkpoints:
            try:
                _write_partial(writer, _read_checkpoint(ffs, fstore, checkpoints[-1])[1].get("history", []))
            except (StorageFailure, OSError, ValueError):
                pass
        marked = writer.fail(message, checkpoint=latest,
                             reason="stopped" if isinstance(exc, (JobStopped, SystemExit)) else "error")
        events.emit("failed", message=message, checkpoint=latest, marked=marked,
                    reason="stopped" if isinstance(exc, (JobStopped, SystemExit)) else "error")
        return 1
    finally:
        try:
            if not ray.is_initialized():
                ray.init(log_to_driver=False, logging_level="WARNING")
            _sweep_secret_copies()
            _delete_own_package()
        except Exception as exc:  # noqa: BLE001 - best effort, but say so
            events.emit("warning", message=f"could not remove the job's credentials package from the cluster: "
                                           f"{type(exc).__name__}")


def _write_partial(writer: RunWriter, history: list) -> None:
    if history:
        writer.put(METRICS_FILE, metrics_csv(history).encode())


def main(argv: list[str], secrets: SecretBox | None = None) -> int:
    t_start = time.time()
    if secrets is None:
        secrets = take_secrets()  # first thing: the file must not outlive the start of the job
    install_redaction(Redactor(secrets.values()))
    signal.signal(signal.SIGTERM, _on_sigterm)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    path = argv[0] if argv else CONFIG_FILE
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        events.emit("failed", message=str(exc), reason="config")
        return 2
    events.emit("started", run_id=cfg.run_id, versions=versions(), pid=os.getpid(),
                cwd_has_secrets=os.path.exists(SECRETS_FILE))
    return run(cfg, secrets, t_start)


