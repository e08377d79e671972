"""Checks before a training job is submitted: every failure is a PreflightError, nothing has run.

What is checked, and why:
* options (typed values, early stopping has validation data);
* credentials not expired nor about to (the job would fail at its first write);
* the cluster: same Ray version and Python minor version as this client (Ray pickles functions
  and configs across them), and enough *free* CPUs/GPUs for every worker at once (a placement
  group that cannot be placed waits forever). No spare CPU is reserved for data loading: the
  workers read their own files inside their CPU budget. The spare-CPU rule matters only for a
  lazy Ray Data read, which deadlocks when the workers hold every CPU; this job does not use it;
* the data: parquet files exist, the label and the feature columns exist with usable types
  (parquet footers only, no data read); the folder accepts a write and a delete.
"""
from __future__ import annotations

import math
import platform
import posixpath
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from dku_ray.errors import DkuRayError, PreflightError, Problem, StorageError
from dku_ray.locations import Location, child, list_files, list_names, probe_writable, read_schema
from dku_ray.ray_jobs import RayJobs
from dku_ray.s3 import freshness_problem
from dku_ray.s3_location import S3Location
from dku_ray.training_options import TrainingOptions, requires_validation

MODEL_FILE = "model.ubj"


@dataclass
class PreflightReport:
    cluster: dict[str, Any] = field(default_factory=dict)
    train_files: int = 0
    train_bytes: int = 0
    columns: list[str] = field(default_factory=list)
    resume_checkpoint: Location | None = None
    duration_s: float = 0.0


def version_problems(cluster: Mapping[str, str | None], local_ray: str, local_python: str) -> list[Problem]:
    out = []
    remote_ray = cluster.get("ray")
    if remote_ray and remote_ray != local_ray:
        out.append(Problem("cluster", f"Ray {remote_ray} on the cluster but Ray {local_ray} here. Use a code env "
                                      f"with ray=={remote_ray}, or start the cluster with a Ray {local_ray} image."))
    remote_py = cluster.get("python")
    if remote_py and remote_py.split(".")[:2] != local_python.split(".")[:2]:
        out.append(Problem("cluster", f"Python {remote_py} on the cluster but Python {local_python} here; the minor "
                                      "versions must match. Use a code env and a Ray image with the same Python."))
    return out


def capacity_problems(nodes: Sequence[Mapping[str, tuple[float, float]]], options: TrainingOptions) -> list[Problem]:
    """Can every worker be placed now? Counts whole workers per node, as Ray places them."""
    cpw, gpw, want = options.cpus_per_worker, options.gpus_per_worker, options.num_workers
    fits = 0
    free_cpus, free_gpus, biggest = 0.0, 0.0, 0.0
    for node in nodes:
        used, total = node.get("CPU", (0.0, 0.0))
        cpu = max(0.0, total - used)
        gused, gtotal = node.get("GPU", (0.0, 0.0))
        gpu = max(0.0, gtotal - gused)
        free_cpus, free_gpus, biggest = free_cpus + cpu, free_gpus + gpu, max(biggest, cpu)
        n = math.floor(cpu / cpw + 1e-9)
        if gpw > 0:
            n = min(n, math.floor(gpu / gpw + 1e-9))
        fits += n
    if fits >= want:
        return []
    need = f"{want} worker(s) x {cpw:g} CPU" + (f" + {gpw:g} GPU" if gpw else "")
    have = f"{free_cpus:g} free CPU(s) on {len(nodes)} node(s), at most {biggest:g} on one node"
    if gpw:
        have += f", and {free_gpus:g} free GPU(s)"
    return [Problem("num_workers", f"the cluster cannot hold {need} now: it has {have}, room for {fits} worker(s). "
                                   "Lower num_workers or cpus_per_worker, wait for running jobs to finish, or add "
                                   "workers to the cluster.")]


def schema_problems(columns: Mapping[str, Any], label: str, options: TrainingOptions, what: str) -> list[Problem]:
    """Label and feature columns against a parquet schema ({name: arrow type})."""
    from dku_ray_job.plan import feature_kind

    out = []
    names = list(columns)
    if label not in columns:
        out.append(Problem("label", f"column {label!r} is not in the {what}; its columns are {names[:30]}"))
    for opt in ("features", "drop_features"):
        missing = [c for c in getattr(options, opt) or () if c not in columns]
        if missing:
            out.append(Problem(opt, f"columns {missing} are not in the {what}"))
    chosen = list(options.features) if options.features is not None else names
    unusable = [f"{c} ({columns[c]})" for c in chosen
                if c in columns and c != label and c not in options.drop_features and feature_kind(columns[c]) is None]
    if unusable:
        out.append(Problem("features", f"columns {unusable} have types XGBoost cannot use; drop them with "
                                       "drop_features=[...] or convert them to numbers or strings"))
    return out


def _dataset_problems(loc: Location, label: str, options: TrainingOptions, field_name: str,
                      report: PreflightReport | None) -> list[Problem]:
    files = list_files(loc)
    parquet = [(p, s) for p, s in files if p.endswith(".parquet")]
    if not parquet:
        others = [posixpath.basename(p) for p, _ in files[:5]]
        found = f"found {others}" if others else "it is empty or does not exist"
        return [Problem(field_name, f"{loc.uri} is not a parquet dataset ({found}). Training reads parquet files: in "
                                    "DSS, sync the dataset to an S3 dataset with format Parquet.")]
    schema = read_schema(loc, parquet[0][0])
    if report is not None:
        report.train_files, report.train_bytes = len(parquet), sum(s for _, s in parquet)
        report.columns = list(schema.names)
    return schema_problems({f.name: f.type for f in schema}, label, options, f"{field_name} {loc.uri}")


def resolve_checkpoint(loc: Location) -> Location:
    """The checkpoint directory to resume from: `loc` itself, or the latest checkpoint of a run directory."""
    names = list_names(loc)
    if MODEL_FILE in names and not any(n.startswith("checkpoint_") for n in names):
        return loc
    checkpoints = sorted(n for n in names if n.startswith("checkpoint_"))
    for name in reversed(checkpoints):
        candidate = child(loc, name)
        if MODEL_FILE in list_names(candidate):
            return candidate
    if MODEL_FILE in names:
        return loc
    raise StorageError(f"No checkpoint to resume from at {loc.uri}: expected {MODEL_FILE} there or in a "
                       "checkpoint_* directory of a run.")


def _storage(problems: list[Problem], field_name: str, check: Any) -> Any:
    try:
        return check()
    except (StorageError, DkuRayError) as exc:
        problems.append(Problem(field_name, str(exc)))
        return None


def run_preflight(jobs: RayJobs, options: TrainingOptions, label: str, train: Location, folder: Location,
                  valid: Location | None = None, resume: Location | None = None,
                  local_ray: str | None = None) -> PreflightReport:
    """All checks; raises one PreflightError listing every problem found."""
    t0 = time.perf_counter()
    report = PreflightReport()
    problems = list(options.problems()) + requires_validation(options, valid is not None)
    if not label or not isinstance(label, str):
        problems.append(Problem("label", "give the name of the label column"))
    places = [("dataset", train), ("folder", folder)] + ([("validation_dataset", valid)] if valid else []) \
        + ([("resume_from", resume)] if resume else [])
    for name, loc in places:
        if isinstance(loc, S3Location):
            if loc.credentials is None:
                problems.append(Problem(name, f"no S3 credentials for {loc.uri}: pass credentials=S3Credentials(...) "
                                              "or configure the AWS credential chain (env vars, profile)"))
            else:
                stale = freshness_problem(loc.credentials, name, options.credentials_margin_s)
                if stale:
                    problems.append(Problem(name, stale))
    if problems:  # no point reaching S3 or the cluster with bad options or dead credentials
        raise PreflightError(problems)
    if local_ray is None:
        import ray

        local_ray = ray.__version__
    try:
        report.cluster = dict(jobs.cluster_versions())
        problems += version_problems(report.cluster, local_ray, platform.python_version())
        nodes = jobs.node_resources()
        if nodes is not None:
            problems += capacity_problems(nodes, options)
        report.cluster["nodes"] = len(nodes) if nodes is not None else None
    except DkuRayError as exc:
        problems.append(Problem("cluster", str(exc)))
    problems += _storage(problems, "dataset", lambda: _dataset_problems(train, label, options, "dataset", report)) or []
    if valid is not None:
        problems += _storage(problems, "validation_dataset",
                             lambda: _dataset_problems(valid, label, options, "validation_dataset", None)) or []
    _storage(problems, "folder", lambda: probe_writable(folder))
    if resume is not None:
        report.resume_checkpoint = _storage(problems, "resume_from", lambda: resolve_checkpoint(resume))
    if problems:
        raise PreflightError(problems)
    report.duration_s = round(time.perf_counter() - t0, 3)
    return report
