"""The job package's pure parts and data path, with real parquet files on local disk (no Ray)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from dku_ray_job import events
from dku_ray_job.config import ConfigError, parse_config
from dku_ray_job.credentials import Redactor, SecretBox, take_secrets
from dku_ray_job.data import load_worker_data, validation_mask
from dku_ray_job.plan import PlanError, assign_units, make_plan
from dku_ray_job.s3_errors import classify
from dku_ray_job.train_loop import ExpiryGuard
from testenv.moto_s3 import classification_table, write_parquet_parts


def _config(tmp_path: Path, label: str = "label", **extra: object):
    raw = {"format": 1, "run_id": "r1", "label": label,
           "stores": {"train": {"kind": "local"}, "folder": {"kind": "local"}},
           "train": {"store": "train", "path": str(tmp_path / "data")},
           "run_dir": {"store": "folder", "path": str(tmp_path / "out" / "runs" / "r1")}, **extra}
    return parse_config(raw)


def _write(tmp_path: Path, table: pa.Table, files: int = 3, row_group_size: int = 128_000) -> None:
    (tmp_path / "data").mkdir(exist_ok=True)
    write_parquet_parts(table, pafs.LocalFileSystem(), str(tmp_path / "data"), files, row_group_size)


def _fs(cfg) -> dict:
    return {name: pafs.LocalFileSystem() for name in cfg.stores}


def test_config_rejects_wrong_format_and_fields(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="format"):
        parse_config({"format": 99})
    with pytest.raises(ConfigError, match="num_workers"):
        _config(tmp_path, num_workers=0)
    with pytest.raises(ConfigError, match="train"):
        parse_config({"format": 1, "run_id": "r", "label": "y", "stores": {"a": {"kind": "local"}},
                      "train": {"store": "nope", "path": "/x"}, "run_dir": {"store": "a", "path": "/y"}})


def test_plan_binary_string_label_and_categories(tmp_path: Path) -> None:
    _write(tmp_path, classification_table(3000, label_kind="str", categorical=True))
    plan = make_plan(_config(tmp_path, num_workers=2), _fs(_config(tmp_path)))
    assert plan.task == "binary" and plan.objective == "binary:logistic"
    assert plan.classes == ["class_a", "class_b"]
    assert plan.categorical == {"cat": sorted(["center", "east", "north", "south", "west"])}
    assert plan.params["tree_method"] == "hist" and "logloss" in plan.params["eval_metric"]
    assert sorted(u.file_index for shard in plan.train_shards for u in shard) == [0, 1, 2]


def test_plan_regression_multiclass_and_ambiguous_integers(tmp_path: Path) -> None:
    table = classification_table(2000, n_classes=4)
    _write(tmp_path, table.append_column("amount", pa.array(np.linspace(0, 1, 2000))))
    fs = _fs(_config(tmp_path))
    with pytest.raises(PlanError, match="integer with 4 distinct values"):
        make_plan(_config(tmp_path), fs)
    multi = make_plan(_config(tmp_path, params={"objective": "multi:softprob"}), fs)
    assert multi.task == "multiclass" and multi.params["num_class"] == 4 and multi.classes == [0, 1, 2, 3]
    reg = make_plan(_config(tmp_path, label="amount", drop_features=["label"]), fs)
    assert reg.task == "regression" and reg.objective == "reg:squarederror" and reg.classes is None
    with pytest.raises(PlanError, match="binary but the label"):
        make_plan(_config(tmp_path, params={"objective": "binary:logistic"}), fs)


def test_plan_refuses_missing_label_and_unusable_columns(tmp_path: Path) -> None:
    table = classification_table(500).append_column("when", pa.array([None] * 500, pa.timestamp("s")))
    _write(tmp_path, table, files=1)
    fs = _fs(_config(tmp_path))
    with pytest.raises(PlanError, match="'target' is not in the dataset"):
        make_plan(_config(tmp_path, label="target"), fs)
    with pytest.raises(PlanError, match="when"):
        make_plan(_config(tmp_path), fs)
    assert make_plan(_config(tmp_path, drop_features=["when"]), fs).task == "binary"


def test_fewer_files_than_workers_splits_by_row_group_then_rows(tmp_path: Path) -> None:
    _write(tmp_path, classification_table(4000), files=1, row_group_size=1000)
    fs = pafs.LocalFileSystem()
    files = [(str(tmp_path / "data" / "part-00000.parquet"), 1)]
    shards = assign_units(fs, files, 3, "training dataset")
    assert sorted(u.row_groups for s in shards for u in s) == [(0,), (1,), (2,), (3,)]
    shards = assign_units(fs, files, 6, "training dataset")
    assert all(shards) and sum(len(s) for s in shards) == 8 and all(u.part for s in shards for u in s)
    with pytest.raises(PlanError, match="too few"):
        assign_units(fs, files, 3000, "training dataset")


def test_worker_data_split_is_the_same_whatever_the_worker_count(tmp_path: Path) -> None:
    _write(tmp_path, classification_table(6000, categorical=True), files=4)
    rows = {}
    for workers in (1, 2):
        cfg = _config(tmp_path, num_workers=workers)
        plan = make_plan(cfg, _fs(cfg))
        parts = [load_worker_data(plan, r, pafs.LocalFileSystem(), "x", None, "", 0.1, 0) for r in range(workers)]
        train_rows = sum(len(p[0].y) for p in parts)
        valid_rows = sum(len(p[1].y) for p in parts)
        rows[workers] = (train_rows, valid_rows, sorted(round(float(v), 6) for p in parts for v in p[1].x["f01"]))
        frame = parts[0][0].x
        assert list(frame.columns) == plan.features and str(frame["cat"].dtype) == "category"
        assert list(frame["cat"].cat.categories) == plan.categorical["cat"]
    assert rows[1] == rows[2] and rows[1][0] + rows[1][1] == 6000 and 450 < rows[1][1] < 750


def test_validation_mask_is_deterministic() -> None:
    from dku_ray_job.plan import Unit

    unit = Unit("f", 3, 0)
    assert (validation_mask(unit, 1000, 0.2, 5) == validation_mask(unit, 1000, 0.2, 5)).all()
    assert not validation_mask(unit, 1000, 0.0, 5).any()


def test_secrets_file_is_deleted_when_read_and_redacted_everywhere(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    secret = {"folder": {"access_key": "ASIAEXAMPLEKEY123", "secret_key": "s3cr3t/very+long", "session_token": "tok" * 20}}
    (tmp_path / ".dku_ray_credentials.json").write_text(json.dumps(secret))
    box = take_secrets()
    assert not (tmp_path / ".dku_ray_credentials.json").exists()
    assert box.get("folder")["secret_key"] == "s3cr3t/very+long"
    assert "s3cr3t" not in repr(box) and "s3cr3t" not in str({"secrets": box})
    assert Redactor(box.values())("key=ASIAEXAMPLEKEY123 s=s3cr3t/very+long") == "key=*** s=***"


@pytest.mark.parametrize("text, code", [
    ("AWS Error ACCESS_DENIED during CreateMultipartUpload operation: Access Denied", "access_denied"),
    ("AWS Error UNKNOWN (HTTP status 400) during ListObjectsV2 operation: Unable to parse ExceptionName: "
     "ExpiredToken Message: The provided token has expired.", "expired_token"),
    ("AWS Error INVALID_ACCESS_KEY_ID during ListObjectsV2 operation", "invalid_access_key"),
    ("AWS Error SIGNATURE_DOES_NOT_MATCH during ListObjectsV2 operation", "signature_mismatch"),
    ("Unable to parse ExceptionName: InvalidToken Message: The provided token is malformed", "invalid_token"),
    ("something else entirely", "other"),
])
def test_s3_error_classification(text: str, code: str) -> None:
    assert classify(text).code == code


def test_expiry_guard_stops_only_inside_the_margin() -> None:
    guard = ExpiryGuard(expiration=1000.0, margin_s=60.0)
    assert guard.reason(round_s=1.0, checkpoint_s=5.0, now=900.0) is None
    assert "expire" in guard.reason(round_s=1.0, checkpoint_s=5.0, now=940.0)
    assert ExpiryGuard(None, 60.0).reason(1.0, 5.0, now=10**10) is None


def test_event_lines_round_trip(capsys) -> None:
    from dku_ray.job_monitor import JobEvents, parse_event

    events.emit("round", rank=0, round=3, total=10, metrics={"valid-logloss": float("nan")})
    line = capsys.readouterr().out.strip()
    event = parse_event("(RayTrainWorker pid=1) " + line)
    assert event["kind"] == "round" and event["metrics"]["valid-logloss"] is None
    collected = JobEvents()
    collected.feed_text(line + "\n" + line)  # Ray Train V2 may print a worker's line twice
    assert len(collected.all("round")) == 1


def test_parquet_helper_writes_readable_parts(tmp_path: Path) -> None:
    _write(tmp_path, classification_table(1000), files=3)
    assert pq.read_table(str(tmp_path / "data")).num_rows == 1000
