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
from dku_ray_job.credentials import Redactor, take_secrets
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


def test_job_package_never_imports_the_client_or_dss() -> None:
    """dku_ray_job runs on the cluster, where neither dku_ray nor the DSS packages exist."""
    import ast

    import dku_ray_job

    for path in Path(dku_ray_job.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name.split(".")[0] not in {"dku_ray", "dataiku", "dataikuapi"}, f"{path.name} imports {name}"


def test_bundle_keeps_secrets_out_of_the_entrypoint_env_and_config(tmp_path: Path) -> None:
    import os
    import stat

    from dku_ray.job_bundle import build_bundle
    from dku_ray.s3_location import S3Credentials, S3Location
    from dku_ray.training_options import TrainingOptions

    creds = S3Credentials("ASIAEXAMPLEKEY123", "s3cr3t-value-xyz", "session-token-value-" * 5)
    train = S3Location("bucket", "data", "eu-west-1", "https://minio.example:9000", creds)
    bundle = build_bundle("run-1", "dku-ray-run-1", 'we"ird $label', TrainingOptions(), train,
                          S3Location("bucket", "out/runs/run-1", "eu-west-1", None, creds))
    try:
        assert bundle.entrypoint == "python -m dku_ray_job job.json"  # no user value on the command line
        public = (bundle.working_dir / "job.json").read_text() + json.dumps(bundle.runtime_env)
        for secret in (creds.access_key, creds.secret_key, creds.session_token):
            assert secret not in public and secret not in bundle.entrypoint
        secret_file = bundle.working_dir / ".dku_ray_credentials.json"
        assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
        assert json.loads(secret_file.read_text())["train"]["secret_key"] == creds.secret_key
        config = json.loads((bundle.working_dir / "job.json").read_text())
        assert config["label"] == 'we"ird $label' and config["stores"]["train"]["endpoint_url"] == "https://minio.example:9000"
        assert config["stores"]["train"]["expiration"] is not None  # STS without expiry: assumed 1 h
        assert "pip" not in bundle.runtime_env and bundle.runtime_env["env_vars"]["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.1"
    finally:
        bundle.cleanup()
    assert not bundle.working_dir.exists()


def test_boolean_label_and_regression_model_round_trip(tmp_path: Path) -> None:
    """The job's encode path and the model card, scored back through TrainedModel (single process)."""
    import xgboost

    from dku_ray.locations import LocalPath
    from dku_ray.trained_model import TrainedModel
    from dku_ray_job.artifacts import model_card

    _write(tmp_path, classification_table(3000, label_kind="bool", categorical=True))
    cfg = _config(tmp_path)
    plan = make_plan(cfg, _fs(cfg))
    assert plan.task == "binary" and plan.classes == [False, True]
    table = classification_table(3000, categorical=True)
    amount = pa.array(np.asarray(table["f01"]) * 3.0 + 1.0)
    (tmp_path / "data").rename(tmp_path / "bool")
    _write(tmp_path, table.append_column("amount", amount).drop(["label"]))
    cfg = _config(tmp_path, label="amount", num_workers=1)
    plan = make_plan(cfg, _fs(cfg))
    assert plan.task == "regression"
    train, valid, _ = load_worker_data(plan, 0, pafs.LocalFileSystem(), "x", None, "", 0.2, 0)
    booster = xgboost.train(plan.params, xgboost.DMatrix(train.x, label=train.y, enable_categorical=True), 30)
    run = tmp_path / "run"
    run.mkdir()
    booster.save_model(str(run / "model.ubj"))
    card = model_card(cfg, plan, {"rounds": 30}, [{"round": 30, "train-rmse": 0.1}], {})
    (run / "model_card.json").write_text(json.dumps(card))
    model = TrainedModel.load(LocalPath(str(run)))
    frame = table.slice(0, 500).to_pandas()
    predicted = model.predict(frame)
    truth = frame["f01"].to_numpy() * 3.0 + 1.0
    assert np.corrcoef(predicted, truth)[0, 1] > 0.95
    with pytest.raises(ValueError, match="regression"):
        model.predict_proba(frame)
