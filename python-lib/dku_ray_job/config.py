"""The job description the client writes into the job's working_dir (`job.json`), parsed and checked.

It holds no secrets: credentials travel in a separate private file (see `credentials.py`).
The client validates everything first; the checks here only guard against a hand-edited or
mismatched file, so that a bad field fails with its name instead of deep inside training.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

FORMAT_VERSION = 1
SECRETS_FILE = ".dku_ray_credentials.json"  # in the working_dir; deleted by the job at start
CONFIG_FILE = "job.json"


class ConfigError(ValueError):
    """job.json is missing a field or has a wrong one."""


@dataclass(frozen=True)
class Store:
    """How to reach one storage: "s3" (bucket paths) or "local" (absolute paths on every node)."""

    kind: str
    region: str | None = None
    endpoint_url: str | None = None
    has_credentials: bool = False  # the secrets file has an entry under this store's name
    expiration: float | None = None  # epoch seconds when the credentials expire, if known


@dataclass(frozen=True)
class Place:
    """A path on a store: "bucket/prefix" for S3, an absolute path for local."""

    store: str
    path: str


@dataclass(frozen=True)
class JobConfig:
    run_id: str
    label: str
    train: Place
    run_dir: Place
    stores: Mapping[str, Store]
    valid: Place | None = None
    features: tuple[str, ...] | None = None
    drop_features: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    num_rounds: int = 100
    early_stopping_rounds: int | None = None
    validation_fraction: float = 0.1
    seed: int = 0
    num_workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    checkpoint_every: int = 10
    keep_checkpoints: int = 2
    resume_from: Place | None = None
    objective: str | None = None  # None: inferred from the label
    max_categories: int = 1000
    credentials_margin_s: float = 300.0
    progress_interval_s: float = 0.5
    start_timeout_s: float = 600.0
    client_versions: Mapping[str, str] = field(default_factory=dict)
    job_id: str = ""

    def store(self, place: Place) -> Store:
        return self.stores[place.store]


def _place(raw: Any, name: str, stores: Mapping[str, Store]) -> Place:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("path"), str) or raw.get("store") not in stores:
        raise ConfigError(f"{name}: expected {{'store': <one of {sorted(stores)}>, 'path': str}}, got {raw!r}")
    return Place(str(raw["store"]), raw["path"].strip("/") if stores[raw["store"]].kind == "s3" else raw["path"])


def _number(raw: Mapping[str, Any], key: str, kind: type, default: Any, minimum: float | None = None) -> Any:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    value = kind(value)
    if minimum is not None and value < minimum:
        raise ConfigError(f"{key}: must be >= {minimum}, got {value}")
    return value


def parse_config(raw: Mapping[str, Any]) -> JobConfig:
    """JobConfig from the decoded job.json; ConfigError naming the first bad field."""
    if raw.get("format") != FORMAT_VERSION:
        raise ConfigError(f"format: this job package reads format {FORMAT_VERSION}, got {raw.get('format')!r}; "
                          "the client and the job package come from different dku_ray versions")
    stores: dict[str, Store] = {}
    for name, spec in (raw.get("stores") or {}).items():
        if not isinstance(spec, Mapping) or spec.get("kind") not in ("s3", "local"):
            raise ConfigError(f"stores.{name}: kind must be 's3' or 'local', got {spec!r}")
        stores[name] = Store(spec["kind"], spec.get("region"), spec.get("endpoint_url"),
                             bool(spec.get("has_credentials")), spec.get("expiration"))
    if not isinstance(raw.get("label"), str) or not raw["label"]:
        raise ConfigError("label: expected a column name")
    if not isinstance(raw.get("run_id"), str) or not raw["run_id"]:
        raise ConfigError("run_id: expected a non-empty string")
    features = raw.get("features")
    if features is not None and not (isinstance(features, list) and all(isinstance(f, str) for f in features)):
        raise ConfigError("features: expected a list of column names or null")
    params = raw.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError("params: expected a mapping")
    return JobConfig(
        run_id=raw["run_id"],
        label=raw["label"],
        train=_place(raw.get("train"), "train", stores),
        valid=_place(raw["valid"], "valid", stores) if raw.get("valid") else None,
        run_dir=_place(raw.get("run_dir"), "run_dir", stores),
        stores=stores,
        features=tuple(features) if features is not None else None,
        drop_features=tuple(raw.get("drop_features") or ()),
        params=dict(params),
        num_rounds=_number(raw, "num_rounds", int, 100, 1),
        early_stopping_rounds=_number(raw, "early_stopping_rounds", int, None, 1),
        validation_fraction=_number(raw, "validation_fraction", float, 0.1, 0.0),
        seed=_number(raw, "seed", int, 0),
        num_workers=_number(raw, "num_workers", int, 2, 1),
        cpus_per_worker=_number(raw, "cpus_per_worker", float, 1.0, 0.0),
        gpus_per_worker=_number(raw, "gpus_per_worker", float, 0.0, 0.0),
        checkpoint_every=_number(raw, "checkpoint_every", int, 10, 0),
        keep_checkpoints=_number(raw, "keep_checkpoints", int, 2, 1),
        resume_from=_place(raw["resume_from"], "resume_from", stores) if raw.get("resume_from") else None,
        objective=raw.get("objective"),
        max_categories=_number(raw, "max_categories", int, 1000, 2),
        credentials_margin_s=_number(raw, "credentials_margin_s", float, 300.0, 0.0),
        progress_interval_s=_number(raw, "progress_interval_s", float, 0.5, 0.0),
        start_timeout_s=_number(raw, "start_timeout_s", float, 600.0, 1.0),
        client_versions=dict(raw.get("client_versions") or {}),
        job_id=str(raw.get("job_id") or ""),
    )


def load_config(path: str | Path) -> JobConfig:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the job description {path}: {exc}") from None
    return parse_config(raw)
