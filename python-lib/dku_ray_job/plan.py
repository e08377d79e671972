"""Decide, once in the driver, everything the workers must agree on before they read any data.

Workers read their own files (see `data.py`), so the label encoding, the category lists of the
string features and the split of the files between workers must be fixed centrally: a worker
that saw only "north" and "south" would otherwise code categories differently from its peer.
The driver reads only the parquet footers, the label column and the string columns for this.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dku_ray_job.config import JobConfig, Place, Store
from dku_ray_job.storage import StorageFailure, list_parquet_files, uri
from dku_ray_job.s3_errors import explain


class PlanError(ValueError):
    """The data cannot be trained on as asked; the message says what to change."""


@dataclass(frozen=True)
class Unit:
    """A piece of the data one worker reads: a whole file, some row groups, or a slice of them."""

    path: str
    file_index: int
    weight: int
    row_groups: tuple[int, ...] | None = None
    part: tuple[int, int] | None = None  # (k, m): the k-th of m equal row slices


@dataclass
class Plan:
    label: str
    features: list[str]
    categorical: dict[str, list[str]]
    task: str  # "binary" | "multiclass" | "regression"
    classes: list[Any] | None
    objective: str
    params: dict[str, Any]
    train_shards: list[list[Unit]]
    valid_shards: list[list[Unit]] | None
    train_files: int
    train_bytes: int
    label_type: str
    feature_types: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"features": len(self.features), "categorical": sorted(self.categorical), "task": self.task,
                "classes": self.classes, "objective": self.objective, "train_files": self.train_files,
                "train_bytes": self.train_bytes, "units_per_worker": [len(s) for s in self.train_shards]}


def _task_of(objective: str) -> str:
    if objective.startswith("binary:"):
        return "binary"
    if objective.startswith("multi:"):
        return "multiclass"
    return "regression"


def feature_kind(dtype: pa.DataType) -> str | None:
    """"q" (number), "c" (category) or None (unusable)."""
    if pa.types.is_dictionary(dtype):
        dtype = dtype.value_type
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype) \
            or pa.types.is_decimal(dtype):
        return "q"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "c"
    return None


def _select_features(cfg: JobConfig, schema: pa.Schema) -> tuple[list[str], dict[str, str]]:
    names = list(schema.names)
    if cfg.label not in names:
        raise PlanError(f"The label column {cfg.label!r} is not in the dataset; columns are {names[:30]}.")
    missing = [f for f in (cfg.features or ()) + cfg.drop_features if f not in names]
    if missing:
        raise PlanError(f"Columns {missing} are not in the dataset; columns are {names[:30]}.")
    chosen = list(cfg.features) if cfg.features is not None else names
    chosen = [c for c in chosen if c != cfg.label and c not in cfg.drop_features]
    if not chosen:
        raise PlanError("No feature column is left after removing the label and drop_features.")
    kinds, bad = {}, []
    for name in chosen:
        kind = feature_kind(schema.field(name).type)
        if kind is None:
            bad.append(f"{name} ({schema.field(name).type})")
        kinds[name] = kind
    if bad:
        raise PlanError(f"Columns {bad} have types XGBoost cannot use. Drop them with drop_features=[...] "
                        "or convert them to numbers or strings.")
    return chosen, kinds


def _label_classes(column: pa.ChunkedArray, label: str) -> tuple[list[Any], pa.DataType]:
    if column.null_count:
        raise PlanError(f"The label column {label!r} has {column.null_count} empty values; "
                        "remove those rows first (e.g. a Filter recipe).")
    dtype = column.type
    if pa.types.is_dictionary(dtype):
        column, dtype = column.cast(dtype.value_type), dtype.value_type
    values = pc.unique(column).to_pylist()
    return sorted(values), dtype


def _decide_task(cfg: JobConfig, classes: list[Any], dtype: pa.DataType) -> tuple[str, str, list[Any] | None]:
    """(task, objective, classes or None) from the explicit objective, else from the label values."""
    label, n = cfg.label, len(classes)
    numeric = pa.types.is_integer(dtype) or pa.types.is_floating(dtype)
    objective = cfg.objective or cfg.params.get("objective")
    if objective:
        task = _task_of(str(objective))
        if task == "regression":
            if not (numeric or pa.types.is_boolean(dtype)):
                raise PlanError(f"Objective {objective} needs a numeric label; {label!r} is {dtype}.")
            return task, str(objective), None
    elif pa.types.is_boolean(dtype) or pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        task = "binary" if n <= 2 else "multiclass"
    elif n == 2 and all(float(v).is_integer() for v in classes):
        task = "binary"
    elif pa.types.is_floating(dtype):
        return "regression", "reg:squarederror", None
    else:
        raise PlanError(f"The label {label!r} is an integer with {n} distinct values: say whether it is classes "
                        "(params={'objective': 'multi:softprob'}) or a quantity (params={'objective': "
                        "'reg:squarederror'}).")
    if n < 2:
        raise PlanError(f"The label {label!r} has a single value ({classes[:1]}); a classifier needs two or more.")
    if task == "binary" and n > 2:
        raise PlanError(f"Objective {objective} is binary but the label {label!r} has {n} values "
                        f"({classes[:10]}); use params={{'objective': 'multi:softprob'}}.")
    if pa.types.is_floating(dtype) and not all(float(v).is_integer() for v in classes):
        raise PlanError(f"The label {label!r} has fractional values; classification needs class values.")
    default = "binary:logistic" if task == "binary" else "multi:softprob"
    return task, str(objective or default), classes


def _default_params(task: str, n_classes: int) -> dict[str, Any]:
    metrics = {"binary": ["logloss", "auc", "error"], "multiclass": ["mlogloss", "merror"],
               "regression": ["rmse"]}[task]
    params: dict[str, Any] = {"tree_method": "hist", "eval_metric": metrics}
    if task == "multiclass":
        params["num_class"] = n_classes
    return params


def _lpt(units: Sequence[Unit], n_workers: int) -> list[list[Unit]]:
    """Longest-processing-time assignment: biggest unit to the least loaded worker."""
    shards: list[list[Unit]] = [[] for _ in range(n_workers)]
    loads = [0] * n_workers
    for unit in sorted(units, key=lambda u: (-u.weight, u.file_index)):
        i = loads.index(min(loads))
        shards[i].append(unit)
        loads[i] += unit.weight
    return [sorted(s, key=lambda u: (u.file_index, u.row_groups or (), u.part or ())) for s in shards]


def assign_units(fs: pafs.FileSystem, files: list[tuple[str, int]], n_workers: int, what: str) -> list[list[Unit]]:
    """Split files between workers; below one file per worker, split by row groups, then by rows."""
    if len(files) >= n_workers:
        return _lpt([Unit(p, i, size) for i, (p, size) in enumerate(files)], n_workers)
    units: list[Unit] = []
    for i, (path, _) in enumerate(files):
        meta = pq.ParquetFile(path, filesystem=fs).metadata
        units += [Unit(path, i, meta.row_group(g).num_rows, (g,)) for g in range(meta.num_row_groups)
                  if meta.row_group(g).num_rows > 0]
    if 0 < len(units) < n_workers:
        m = math.ceil(n_workers / len(units))
        units = [Unit(u.path, u.file_index, u.weight // m, u.row_groups, (k, m)) for u in units for k in range(m)]
    total = sum(u.weight for u in units)
    if total < n_workers * 2:
        raise PlanError(f"The {what} has {total} rows, too few for {n_workers} workers.")
    return _lpt(units, n_workers)


def _read_columns(fs: pafs.FileSystem, store: Store, place: Place, files: list[tuple[str, int]],
                  columns: list[str]) -> pa.Table:
    try:
        return pq.read_table([p for p, _ in files], columns=columns, filesystem=fs)
    except OSError as exc:
        raise StorageFailure(explain(exc, "Reading the label and category columns", uri(store, place.path))) from None


def make_plan(cfg: JobConfig, filesystems: dict[str, pafs.FileSystem]) -> Plan:
    tstore, tfs = cfg.store(cfg.train), filesystems[cfg.train.store]
    train_files = list_parquet_files(tfs, tstore, cfg.train)
    try:
        schema = pq.read_schema(train_files[0][0], filesystem=tfs)
    except OSError as exc:
        raise StorageFailure(explain(exc, "Reading the parquet schema", uri(tstore, train_files[0][0]))) from None
    features, kinds = _select_features(cfg, schema)
    cats = [f for f in features if kinds[f] == "c"]
    tables = [_read_columns(tfs, tstore, cfg.train, train_files, [cfg.label, *cats])]
    valid_files = None
    if cfg.valid is not None:
        vstore, vfs = cfg.store(cfg.valid), filesystems[cfg.valid.store]
        valid_files = list_parquet_files(vfs, vstore, cfg.valid)
        vschema = pq.read_schema(valid_files[0][0], filesystem=vfs)
        absent = [c for c in [cfg.label, *features] if c not in vschema.names]
        if absent:
            raise PlanError(f"The validation dataset lacks columns {absent} of the training dataset.")
        tables.append(_read_columns(vfs, vstore, cfg.valid, valid_files, [cfg.label, *cats]))
    first_type = tables[0].schema.field(cfg.label).type
    try:
        label_col = pa.chunked_array([c for t in tables for c in t.column(cfg.label).cast(first_type).chunks],
                                     type=first_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise PlanError(f"The label {cfg.label!r} has different types in the training and validation "
                        "datasets.") from None
    classes, dtype = _label_classes(label_col, cfg.label)
    task, objective, classes = _decide_task(cfg, classes, dtype)
    categorical: dict[str, list[str]] = {}
    for name in cats:
        values = sorted({v for t in tables for v in pc.unique(t.column(name).cast(pa.string())).to_pylist() if v is not None})
        if len(values) > cfg.max_categories:
            raise PlanError(f"Column {name!r} has {len(values)} distinct strings (more than max_categories="
                            f"{cfg.max_categories}); drop it or encode it as numbers.")
        categorical[name] = values
    params = _default_params(task, len(classes or ()))
    params.update(cfg.params)
    params["objective"] = objective
    if task == "multiclass":
        params["num_class"] = len(classes or ())
    params.setdefault("seed", cfg.seed)
    if cfg.gpus_per_worker > 0:
        params.setdefault("device", "cuda")
    train_shards = assign_units(tfs, train_files, cfg.num_workers, "training dataset")
    valid_shards = assign_units(filesystems[cfg.valid.store], valid_files, cfg.num_workers, "validation dataset") \
        if cfg.valid is not None and valid_files else None
    return Plan(label=cfg.label, features=features, categorical=categorical, task=task,
                classes=_jsonable(classes), objective=objective, params=params, train_shards=train_shards,
                valid_shards=valid_shards, train_files=len(train_files),
                train_bytes=sum(s for _, s in train_files), label_type=str(dtype),
                feature_types={f: kinds[f] for f in features})


def _jsonable(values: list[Any] | None) -> list[Any] | None:
    if values is None:
        return None
    return [v.item() if hasattr(v, "item") else v for v in values]
