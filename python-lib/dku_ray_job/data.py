"""Per-worker data loading: each training worker reads its own parquet files with pyarrow.

Why not Ray Data: at this size its read path measured 3-15x slower than pyarrow (planning,
listing and task start-up dominate), and a lazy Ray Dataset deadlocks when the training workers
hold every CPU. Reading in the worker needs no extra CPU and no object store round trip.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dku_ray_job.plan import Plan, PlanError, Unit
from dku_ray_job.s3_errors import explain
from dku_ray_job.storage import StorageFailure


@dataclass
class Part:
    """One worker's rows: features as a DataFrame (categoricals coded), label encoded."""

    x: Any  # pandas.DataFrame
    y: np.ndarray


@dataclass
class LoadStats:
    started: float  # epoch seconds, to line workers up in time
    connect_s: float  # first request of this process to the storage (client set-up, connection)
    read_s: float
    encode_s: float
    rows: int
    bytes_in_memory: int


def _read_unit(fs: pafs.FileSystem, unit: Unit, columns: list[str]) -> pa.Table:
    if unit.row_groups is None:
        return pq.read_table(unit.path, columns=columns, filesystem=fs)
    table = pq.ParquetFile(unit.path, filesystem=fs).read_row_groups(list(unit.row_groups), columns=columns)
    if unit.part is not None:
        k, m = unit.part
        n = table.num_rows
        lo, hi = k * n // m, (k + 1) * n // m
        table = table.slice(lo, hi - lo)
    return table


def read_units(fs: pafs.FileSystem, units: Sequence[Unit], columns: list[str], where: str) -> list[pa.Table]:
    """Read units in parallel threads: S3 latency, not CPU, bounds a single GET stream."""
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(units)))) as pool:
            return list(pool.map(lambda u: _read_unit(fs, u, columns), units))
    except OSError as exc:
        raise StorageFailure(explain(exc, "Reading the training data", where)) from None


def validation_mask(unit: Unit, n_rows: int, fraction: float, seed: int) -> np.ndarray:
    """Rows of this unit that go to validation; depends only on the file, not on the worker count."""
    if fraction <= 0:
        return np.zeros(n_rows, dtype=bool)
    key = [seed, unit.file_index, *(unit.row_groups or ()), *((unit.part or ())[:1])]
    return np.random.default_rng(key).random(n_rows) < fraction


def encode_label(column: pa.ChunkedArray | pa.Array, plan: Plan) -> np.ndarray:
    if column.null_count:
        raise PlanError(f"The label column {plan.label!r} has empty values; remove those rows first.")
    if plan.task == "regression":
        return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64)
    dtype = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    if pa.types.is_dictionary(column.type):
        column = column.cast(dtype)
    codes = pc.index_in(column, value_set=pa.array(plan.classes, type=dtype))
    if codes.null_count:
        raise PlanError(f"The label {plan.label!r} has values outside the classes {plan.classes[:10]} "
                        "seen when the job started; was the dataset rewritten during the job?")
    return np.asarray(codes.to_numpy(zero_copy_only=False), dtype=np.float32)


def to_frame(table: pa.Table, plan: Plan) -> Any:
    """Features as pandas, string columns as Categoricals with the plan's category order."""
    import pandas as pd

    numeric = [f for f in plan.features if f not in plan.categorical]
    frame = table.select(numeric).to_pandas(split_blocks=True, self_destruct=False) if numeric else pd.DataFrame(
        index=pd.RangeIndex(table.num_rows))
    for name, values in plan.categorical.items():
        col = table.column(name).cast(pa.string())
        codes = pc.index_in(col, value_set=pa.array(values, type=pa.string())).fill_null(-1)
        frame[name] = pd.Categorical.from_codes(np.asarray(codes.to_numpy(zero_copy_only=False)), categories=values)
    return frame[plan.features]


def load_worker_data(plan: Plan, rank: int, train_fs: pafs.FileSystem, train_where: str,
                     valid_fs: pafs.FileSystem | None, valid_where: str, fraction: float,
                     seed: int) -> tuple[Part, Part | None, LoadStats]:
    """This worker's training part and validation part (from the split or the separate dataset)."""
    columns = [plan.label, *plan.features]
    started = time.time()
    units = plan.train_shards[rank]
    tc = time.perf_counter()
    try:  # open the connection first, so that read_s measures the transfer, not the set-up
        train_fs.get_file_info(units[0].path)
    except OSError as exc:
        raise StorageFailure(explain(exc, "Reading the training data", train_where)) from None
    t0 = time.perf_counter()
    tables = read_units(train_fs, units, columns, train_where)
    valid_tables: list[pa.Table] = []
    if plan.valid_shards is not None and valid_fs is not None:
        valid_tables = read_units(valid_fs, plan.valid_shards[rank], columns, valid_where)
    t1 = time.perf_counter()
    if plan.valid_shards is None and fraction > 0:
        train_pieces, valid_tables = [], []
        for unit, table in zip(units, tables):
            mask = validation_mask(unit, table.num_rows, fraction, seed)
            train_pieces.append(table.filter(pa.array(~mask)))
            valid_tables.append(table.filter(pa.array(mask)))
        tables = train_pieces
    train = pa.concat_tables(tables, promote_options="permissive")
    in_memory = train.nbytes
    train_part = Part(to_frame(train, plan), encode_label(train.column(plan.label), plan))
    valid_part = None
    if valid_tables:
        valid = pa.concat_tables(valid_tables, promote_options="permissive")
        in_memory += valid.nbytes
        valid_part = Part(to_frame(valid, plan), encode_label(valid.column(plan.label), plan))
    t2 = time.perf_counter()
    rows = len(train_part.y) + (len(valid_part.y) if valid_part is not None else 0)
    return train_part, valid_part, LoadStats(started, round(t0 - tc, 3), round(t1 - t0, 3), round(t2 - t1, 3), rows, in_memory)
