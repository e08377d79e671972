"""Everything sent with a training job: the working_dir (job.json + private credentials file), the
job package, the runtime_env and the quoted entrypoint.

How credentials travel: in `.dku_ray_credentials.json` (mode 0600) inside a per-job temporary
working_dir. Ray zips it into the cluster's GCS and shows only `gcs://_ray_pkg_<hash>.zip` on the
dashboard; the job reads and deletes the file first thing. Never in `env_vars` (the dashboard's
`GET /api/jobs/` returns those in clear to non-browser clients) nor in the entrypoint.

No pip by default: the job needs only what a Ray image with xgboost has (ray[train], xgboost,
pyarrow, pandas; matplotlib optional), so a run starts without a virtualenv build. `pip=` adds
pinned packages; Ray itself is never installed by the job (options refuse it).
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from dku_ray.locations import LocalPath, Location
from dku_ray.s3 import effective_expiration
from dku_ray.s3_location import S3Location
from dku_ray.training_options import TrainingOptions

CONFIG_FILE = "job.json"
SECRETS_FILE = ".dku_ray_credentials.json"  # must match dku_ray_job.config.SECRETS_FILE
FORMAT_VERSION = 1

# Set for every job. Why:
JOB_ENV_VARS = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",  # V2 report() waits for this poll; 2 s by default
    "RAY_TRAIN_V2_ENABLED": "1",  # the API the job is written for, whatever the cluster's default
    "RAY_DEDUP_LOGS": "0",  # dedup merges progress lines that differ only by numbers
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",  # else every worker print reaches the job log twice
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",  # one process less to start; no retries to drive (max_failures=0)
    "RAY_JOB_STOP_WAIT_TIME_S": "30",  # time for the job to write its failure marker on stop
    "AWS_EC2_METADATA_DISABLED": "true",  # never ask EC2 metadata for credentials or region
    "PYTHONUNBUFFERED": "1",
}


@dataclass
class JobBundle:
    run_id: str
    submission_id: str
    working_dir: Path
    entrypoint: str
    runtime_env: dict[str, Any]
    config: dict[str, Any]

    def cleanup(self) -> None:
        """Remove the local working_dir (and its credentials file) once Ray has uploaded it."""
        shutil.rmtree(self.working_dir, ignore_errors=True)


def job_package_dir() -> str:
    import dku_ray_job

    return str(Path(dku_ray_job.__file__).resolve().parent)


def _store(loc: Location, options: TrainingOptions) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(store spec for job.json, credentials entry for the secrets file)."""
    if isinstance(loc, LocalPath):
        return {"kind": "local"}, None
    creds = loc.credentials
    expires = effective_expiration(creds, options.assumed_sts_lifetime_s)
    spec = {"kind": "s3", "region": loc.region, "endpoint_url": loc.endpoint_url, "has_credentials": creds is not None,
            "expiration": expires.timestamp() if expires else None}
    secret = None
    if creds is not None:
        secret = {"access_key": creds.access_key, "secret_key": creds.secret_key, "session_token": creds.session_token}
    return spec, secret


def _place(store: str, loc: Location) -> dict[str, str]:
    return {"store": store, "path": loc.path}


def build_config(run_id: str, submission_id: str, label: str, options: TrainingOptions, train: Location,
                 run_dir: Location, valid: Location | None = None, resume: Location | None = None,
                 client_versions: Mapping[str, str] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(job.json content, secrets file content); the first never holds a secret."""
    stores: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    for name, loc in (("train", train), ("folder", run_dir), ("valid", valid), ("resume", resume)):
        if loc is None:
            continue
        stores[name], secret = _store(loc, options)
        if secret:
            secrets[name] = secret
    config = {
        "format": FORMAT_VERSION,
        "run_id": run_id,
        "job_id": submission_id,
        "label": label,
        "stores": stores,
        "train": _place("train", train),
        "valid": _place("valid", valid) if valid is not None else None,
        "run_dir": _place("folder", run_dir),
        "resume_from": _place("resume", resume) if resume is not None else None,
        "features": list(options.features) if options.features is not None else None,
        "drop_features": list(options.drop_features),
        "params": dict(options.params),
        "objective": options.params.get("objective"),
        "num_rounds": options.num_rounds,
        "early_stopping_rounds": options.early_stopping_rounds,
        "validation_fraction": 0.0 if valid is not None else options.validation_fraction,
        "seed": options.seed,
        "num_workers": options.num_workers,
        "cpus_per_worker": options.cpus_per_worker,
        "gpus_per_worker": options.gpus_per_worker,
        "checkpoint_every": options.checkpoint_every,
        "keep_checkpoints": options.keep_checkpoints,
        "max_categories": options.max_categories,
        "credentials_margin_s": options.credentials_margin_s,
        "progress_interval_s": options.progress_interval_s,
        "start_timeout_s": options.start_timeout_s,
        "client_versions": dict(client_versions or {}),
    }
    return config, secrets


def client_versions() -> dict[str, str]:
    import pyarrow
    import ray
    import xgboost

    return {"ray": ray.__version__, "python": platform.python_version(), "xgboost": xgboost.__version__,
            "pyarrow": pyarrow.__version__}


def build_bundle(run_id: str, submission_id: str, label: str, options: TrainingOptions, train: Location,
                 run_dir: Location, valid: Location | None = None, resume: Location | None = None) -> JobBundle:
    config, secrets = build_config(run_id, submission_id, label, options, train, run_dir, valid, resume,
                                   client_versions())
    work = Path(tempfile.mkdtemp(prefix=f"dku-ray-{run_id}-"))
    try:
        (work / CONFIG_FILE).write_text(json.dumps(config, indent=1))
        fd = os.open(work / SECRETS_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(secrets, fh)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    runtime_env: dict[str, Any] = {
        "working_dir": str(work),
        "py_modules": [job_package_dir()],
        "excludes": ["__pycache__", "*.pyc"],
        "env_vars": dict(JOB_ENV_VARS),
    }
    if options.pip:
        runtime_env["pip"] = {"packages": list(options.pip), "pip_check": False}
    entrypoint = shlex.join(["python", "-m", "dku_ray_job", CONFIG_FILE])
    return JobBundle(run_id, submission_id, work, entrypoint, runtime_env, config)


def location_uri(loc: Location | None) -> str | None:
    if loc is None:
        return None
    return loc.uri if isinstance(loc, (S3Location, LocalPath)) else str(loc)
