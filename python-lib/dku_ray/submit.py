"""`dku_ray.submit()`: train distributed XGBoost on a Ray cluster from a DSS notebook (or anywhere).

    result = dku_ray.submit("train_parquet", label="churned", folder="Ab12Cd34",
                            cluster="http://127.0.0.1:8265", num_rounds=200, num_workers=4)
    model = result.load_model()

`dataset`/`folder` are DSS names (dataset name, managed folder id), `s3://` URIs or local paths.
Everything is checked before submitting (PreflightError); the job then runs Ray Train's
XGBoostTrainer and writes checkpoints, the model, its card, metrics and a plot into
`<folder>/runs/<run_id>/`.
"""
from __future__ import annotations

import contextlib
import secrets
import time
from typing import Any, Mapping, Sequence

from dku_ray.endpoint import RayEndpoint, resolve_endpoint
from dku_ray.errors import DSSError, PreflightError, Problem
from dku_ray.job_bundle import build_bundle
from dku_ray.locations import Location, child, list_names, parse_location
from dku_ray.preflight import run_preflight
from dku_ray.ray_jobs import RayJobs
from dku_ray.s3 import default_credentials
from dku_ray.s3_location import S3Credentials, S3Location
from dku_ray.training_options import TrainingOptions, column_names, options_from_kwargs
from dku_ray.training_result import TrainingJob, TrainingResult

__all__ = ["submit"]


def _dss_client(client: Any) -> Any:
    if client is not None:
        return client
    import dataiku  # only inside DSS

    return dataiku.api_client()


def _project_key(project_key: str | None) -> str | None:
    if project_key:
        return project_key
    try:
        import dataiku

        return dataiku.default_project_key()
    except Exception:  # noqa: BLE001 - outside DSS: names must then be "PROJECTKEY.name"
        return None


class _Resolver:
    """Turns what the user passed (DSS names, URIs, paths, locations) into Locations."""

    def __init__(self, credentials: S3Credentials | None, region: str | None, endpoint_url: str | None,
                 client: Any, project_key: str | None) -> None:
        self.credentials, self.region, self.endpoint_url = credentials, region, endpoint_url
        self.client, self.project_key = client, project_key
        self._default: list[S3Credentials | None] = []

    def _fill(self, loc: Location) -> Location:
        if isinstance(loc, S3Location) and loc.credentials is None:
            if not self._default:
                self._default.append(default_credentials())
            if self._default[0] is not None:
                return S3Location(loc.bucket, loc.prefix, loc.region, loc.endpoint_url, self._default[0], loc.connection)
        return loc

    def place(self, value: Any, kind: str) -> Location:
        loc = parse_location(value, self.credentials, self.region, self.endpoint_url)
        if loc is not None:
            return self._fill(loc)
        inner = getattr(value, "location", None)  # a dss_data.DatasetLocation
        if isinstance(inner, S3Location):
            return inner
        if not isinstance(value, str) or not value:
            raise PreflightError([Problem(kind, f"expected a DSS name, an s3:// URI or a local path, got {value!r}")])
        from dku_ray import dss_data

        client, project = _dss_client(self.client), _project_key(self.project_key)
        if kind == "folder":
            return dss_data.folder_location(client, project, value)
        return dss_data.dataset_location(client, project, value).location

    def resume(self, value: Any, folder: Location) -> Location | None:
        if value is None:
            return None
        if isinstance(value, TrainingResult):
            if value.checkpoint_location is None:
                raise PreflightError([Problem("resume_from", f"run {value.run_id} has no checkpoint")])
            return value.checkpoint_location
        loc = parse_location(value, self.credentials, self.region, self.endpoint_url)
        if isinstance(loc, S3Location) and loc.credentials is None and isinstance(folder, S3Location) \
                and loc.bucket == folder.bucket:
            # a checkpoint in the same bucket as the folder: the folder's access reaches it
            return S3Location(loc.bucket, loc.prefix, folder.region, folder.endpoint_url, folder.credentials,
                              folder.connection)
        if loc is None:
            raise PreflightError([Problem("resume_from", f"expected an s3:// URI, a local path or a TrainingResult, "
                                                         f"got {value!r}")])
        return self._fill(loc)


def _new_run_id(name: str | None) -> str:
    if name:
        return name
    return f"xgb-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def submit(
    dataset: Any,
    label: str,
    folder: Any,
    *,
    cluster: str | RayEndpoint | Any,
    params: Mapping[str, Any] | None = None,
    num_rounds: int = 100,
    early_stopping_rounds: int | None = None,
    validation_fraction: float = 0.1,
    validation_dataset: Any = None,
    num_workers: int = 2,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    checkpoint_every: int = 10,
    resume_from: Any = None,
    features: Sequence[str] | None = None,
    drop_features: Sequence[str] = (),
    wait: bool = True,
    timeout_s: float | None = None,
    show_progress: bool = True,
    stream_logs: bool = True,
    credentials: S3Credentials | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    token: str | None = None,
    client: Any = None,
    project_key: str | None = None,
    options: TrainingOptions | None = None,
    **more_options: Any,
) -> TrainingResult | TrainingJob:
    """Train XGBoost on `dataset` with Ray Train and write the results into `folder`.

    Returns a TrainingResult (wait=True) or a TrainingJob handle (wait=False). Raises PreflightError
    before anything runs when a check fails, TrainingFailed when the job fails, times out or is stopped.
    `credentials`/`region`/`endpoint_url` apply to `s3://` URIs; DSS names use their connection's.
    More options (seed, keep_checkpoints, credentials_margin_s, pip, run_name, ...): see TrainingOptions.
    """
    t_start = time.time()
    opts = options_from_kwargs(
        options, params=dict(params or {}), num_rounds=num_rounds, early_stopping_rounds=early_stopping_rounds,
        validation_fraction=validation_fraction, num_workers=num_workers, cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker, checkpoint_every=checkpoint_every, features=column_names(features),
        drop_features=column_names(drop_features) or (), timeout_s=timeout_s, **more_options)
    resolver = _Resolver(credentials, region, endpoint_url, client, project_key)
    try:
        train = resolver.place(dataset, "dataset")
        folder_loc = resolver.place(folder, "folder")
        valid = resolver.place(validation_dataset, "validation_dataset") if validation_dataset is not None else None
        resume = resolver.resume(resume_from, folder_loc)
    except DSSError as exc:
        raise PreflightError([Problem("dataset/folder", str(exc))]) from None
    run_id = _new_run_id(opts.run_name)
    run_dir = child(folder_loc, "runs", run_id)
    stack = contextlib.ExitStack()
    try:
        endpoint = stack.enter_context(resolve_endpoint(cluster, token, dss_client=client))
        jobs = RayJobs(endpoint)
        report = run_preflight(jobs, opts, label, train, folder_loc, valid, resume)
        if list_names(run_dir):
            raise PreflightError([Problem("run_name", f"{run_dir.uri} already exists; choose another run_name")])
        t_checked = time.time()
        bundle = build_bundle(run_id, f"dku-ray-{run_id}", label, opts, train, run_dir, valid,
                              report.resume_checkpoint)
        try:
            job_id = jobs.submit(bundle.entrypoint, bundle.runtime_env, bundle.submission_id,
                                 metadata={"dku_ray_run_id": run_id, "dku_ray_kind": "xgboost-train"})
        finally:
            bundle.cleanup()
        t_submitted = time.time()
        job = TrainingJob(jobs, job_id, run_id, run_dir, timeout_s=opts.timeout_s, t_start=t_start,
                          timings={"preflight_s": round(t_checked - t_start, 3),
                                   "submit_s": round(t_submitted - t_checked, 3)},
                          resources=stack.pop_all())
    finally:
        stack.close()
    if not wait:
        return job
    return job.wait(show_progress=show_progress, stream_logs=stream_logs)
