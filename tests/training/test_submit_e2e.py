"""`dku_ray.submit()` end to end: real Ray head, real Ray Train V2 jobs, moto S3 with auth enforced.

Each job costs ~30-60 s on a 2-core machine (Ray Train's start-up dominates), so data is small.
"""
from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import threading
import time
import _thread
from datetime import datetime, timedelta, timezone

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import xgboost

from dku_ray.s3_location import S3Credentials
from dku_ray.submit import submit
from dku_ray.training_result import TrainingFailed
from dku_ray_job.data import validation_mask
from dku_ray_job.plan import Unit
from testenv.moto_s3 import write_parquet_parts

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _cluster_idle(ray_head):
    """A stopped job releases its CPUs a few seconds after Ray reports it STOPPED: start each test
    on an idle cluster so that the capacity preflight sees every CPU."""
    from dku_ray.endpoint import RayEndpoint
    from dku_ray.ray_jobs import RayJobs

    jobs = RayJobs(RayEndpoint(ray_head.dashboard_url))
    end = time.time() + 60
    while time.time() < end:
        nodes = jobs.node_resources(wait_s=0) or []
        if all(n.get("CPU", (0.0, 0.0))[0] == 0 for n in nodes):
            break
        time.sleep(1.0)
    yield


def _fast(**kwargs):
    return {"show_progress": True, "stream_logs": False, **kwargs}


@pytest.fixture(scope="module")
def happy_run(s3env, ray_head):
    """One successful binary run (20 rounds, checkpoints every 5), shared by the tests below."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = submit(s3env.uri(s3env.data_bucket, "binary"), "label", s3env.uri(s3env.folder_bucket, "happy"),
                        cluster=ray_head.dashboard_url, num_rounds=20, checkpoint_every=5, keep_checkpoints=5,
                        **s3env.kwargs(), **_fast())
    return result, out.getvalue()


def _baseline_accuracy(s3env, rounds: int) -> float:
    """Single-process xgboost on exactly the rows the job trained on (same files, same split)."""
    fs = s3env.moto.filesystem()
    infos = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(f"{s3env.data_bucket}/binary"))
                   if i.path.endswith(".parquet"))
    frames = []
    for index, path in enumerate(infos):
        table = pq.read_table(path, filesystem=fs)
        keep = ~validation_mask(Unit(path, index, 0), table.num_rows, 0.1, 0)
        frames.append(table.to_pandas()[keep])
    import pandas as pd

    train = pd.concat(frames)
    params = {"objective": "binary:logistic", "tree_method": "hist", "seed": 0, "nthread": 2}
    booster = xgboost.train(params, xgboost.DMatrix(train.drop(columns=["label"]), label=train["label"]), rounds)
    hold = s3env.holdout
    prob = booster.predict(xgboost.DMatrix(hold.drop(columns=["label"])))
    return float(((prob > 0.5).astype(int) == hold["label"].to_numpy()).mean())


def test_happy_path_end_to_end(happy_run, s3env, ray_head) -> None:
    result, output = happy_run
    assert result.status == "SUCCEEDED" and result.rounds == 20
    assert result.job_id.startswith("dku-ray-") and result.run_dir.startswith("s3://dkr-folder/happy/runs/")
    prefix = result.run_dir[len("s3://dkr-folder/"):]
    names = {k[len(prefix) + 1:] for k in s3env.folder_keys(prefix + "/")}
    for name in ("model.ubj", "model_card.json", "metrics.csv", "learning_curve.png", "status.json", "_SUCCESS",
                 "checkpoint_000005/model.ubj", "checkpoint_000015/model.ubj", "checkpoint_final/model.ubj"):
        assert name in names, sorted(names)
    assert "_FAILED" not in names
    assert [row["round"] for row in result.metrics_history] == list(range(1, 21))
    assert {"train-logloss", "valid-logloss", "valid-auc"} <= set(result.metrics_history[-1])
    assert {"train-logloss", "valid-logloss"} <= set(result.final_metrics)
    assert result.checkpoint_uri.endswith("/checkpoint_final")
    for key in ("preflight_s", "submit_s", "data_load_s", "train_s", "total_s", "to_first_round_s"):
        assert result.timings[key] > 0, key
    assert result.timings["total_s"] > result.timings["train_s"]
    assert "boosting rounds: 20/20" in output and "[dku_ray] finished: 20 rounds" in output
    card = result.model_card()
    assert card["label"] == {"column": "label", "task": "binary", "classes": [0, 1], "arrow_type": "int64",
                             "encoding": "class index in 'classes' (0..n-1)"}
    assert [f["name"] for f in card["features"]] == [f"f{i:02d}" for i in range(20)]
    assert card["versions"]["ray"] == card["versions"]["client"]["ray"]
    model = result.load_model()
    hold = s3env.holdout
    accuracy = float((model.predict(hold) == hold["label"].to_numpy()).mean())
    baseline = _baseline_accuracy(s3env, 20)
    assert accuracy > 0.85 and abs(accuracy - baseline) <= 0.01, (accuracy, baseline)


def test_credentials_are_not_exposed(happy_run, s3env, ray_head) -> None:
    result, output = happy_run
    creds = s3env.credentials
    secrets = [creds.secret_key, creds.session_token, creds.access_key]
    jobs_json = json.dumps(ray_head._get_json("/api/jobs/"))
    job = next(j for j in ray_head._get_json("/api/jobs/") if j["submission_id"] == result.job_id)
    assert job["runtime_env"]["working_dir"].startswith("gcs://_ray_pkg_")
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(job["runtime_env"]["env_vars"])
    assert "dku_ray_job" in job["entrypoint"]
    try:  # Ray Train V2's run state (shows train_loop_config) exists only with state tracking on
        train_runs = json.dumps(ray_head._get_json("/api/train/v2/runs/v1"))
    except OSError:
        train_runs = ""
    for secret in secrets:
        assert secret not in jobs_json and secret not in train_runs and secret not in output
    found = subprocess.run(["grep", "-rlF", "--binary-files=text", "-e", creds.secret_key, "-e", creds.session_token,
                            str(ray_head.temp_dir)], capture_output=True, text=True).stdout
    assert found == "", f"secrets found on the Ray node's disk: {found}"
    leftover = subprocess.run(["find", str(ray_head.temp_dir), "-name", ".dku_ray_credentials.json"],
                              capture_output=True, text=True).stdout
    assert leftover == ""
    # The working_dir zip (which carried the credentials file) is gone from the cluster's GCS too.
    probe = ("import ray, sys\n"
             f"ray.init(address={ray_head.gcs_address!r}, log_to_driver=False)\n"
             "from ray._private.runtime_env.packaging import package_exists\n"
             f"print(package_exists({job['runtime_env']['working_dir']!r}), "
             f"package_exists({job['runtime_env']['py_modules'][0]!r}))\n")
    out = subprocess.run([sys.executable, "-c", probe], env=ray_head.client_env(), capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.split() == ["False", "True"], out.stdout + out.stderr[-2000:]


def test_resume_continues_without_duplicating_trees(happy_run, s3env, ray_head) -> None:
    first, _ = happy_run
    checkpoint = f"{first.run_dir}/checkpoint_000015"
    result = submit(s3env.uri(s3env.data_bucket, "binary"), "label", s3env.uri(s3env.folder_bucket, "happy"),
                    cluster=ray_head.dashboard_url, num_rounds=25, checkpoint_every=0, resume_from=checkpoint,
                    **s3env.kwargs(), **_fast(show_progress=False))
    assert result.status == "SUCCEEDED" and result.rounds == 25
    model = result.load_model()
    assert model.booster.num_boosted_rounds() == 25
    fs = s3env.moto.filesystem()
    start = xgboost.Booster()
    start.load_model(bytearray(fs.open_input_stream(checkpoint[len("s3://"):] + "/model.ubj").read()))
    assert start.num_boosted_rounds() == 15
    assert model.booster[:15].get_dump() == start.get_dump()  # the first 15 trees are the checkpoint's
    rounds = [row["round"] for row in result.metrics_history]
    assert rounds == list(range(1, 26))  # history continued, no round twice
    card = result.model_card()
    assert card["start_round"] == 15 and card["resumed_from"] == checkpoint


def test_multiclass_string_labels_categorical_local_paths(s3env, ray_head, tmp_path) -> None:
    """Outside DSS with local paths; three string classes, a string feature, a separate validation set."""
    multi_fs = s3env.moto.filesystem()
    train = pq.read_table(f"{s3env.data_bucket}/multi/train", filesystem=multi_fs)
    valid = pq.read_table(f"{s3env.data_bucket}/multi/valid", filesystem=multi_fs)
    local = pafs.LocalFileSystem()
    write_parquet_parts(train, local, str(tmp_path / "train"), 3)
    write_parquet_parts(valid, local, str(tmp_path / "valid"), 1)
    result = submit(str(tmp_path / "train"), "label", str(tmp_path / "folder"), cluster=ray_head.dashboard_url,
                    validation_dataset=str(tmp_path / "valid"), num_rounds=40, early_stopping_rounds=3,
                    params={"max_depth": 4, "eta": 0.3}, checkpoint_every=0, **_fast(show_progress=False))
    assert result.status == "SUCCEEDED"
    card = result.model_card()
    assert card["label"]["task"] == "multiclass" and card["label"]["classes"] == ["class_a", "class_b", "class_c"]
    assert card["params"]["num_class"] == 3 and card["objective"] == "multi:softprob"
    cat = next(f for f in card["features"] if f["name"] == "cat")
    assert cat["kind"] == "categorical" and cat["categories"] == ["center", "east", "north", "south", "west"]
    model = result.load_model()
    hold = s3env.multiclass_holdout
    predicted = model.predict(hold)
    assert set(predicted) <= {"class_a", "class_b", "class_c"}
    accuracy = float((predicted == hold["label"].to_numpy()).mean())
    assert accuracy > 0.7, accuracy
    assert model.predict_proba(hold).shape == (len(hold), 3)
    assert (tmp_path / "folder" / "runs" / result.run_id / "_SUCCESS").exists()


def test_failure_in_the_job_leaves_a_failure_marker(s3env, ray_head) -> None:
    with pytest.raises(TrainingFailed) as info:
        submit(s3env.uri(s3env.data_bucket, "int4"), "label", s3env.uri(s3env.folder_bucket, "fails"),
               cluster=ray_head.dashboard_url, num_rounds=5, **s3env.kwargs(), **_fast(show_progress=False))
    err = info.value
    assert "integer with 4 distinct values" in str(err) and err.status == "FAILED"
    run = err.result.run_dir[len("s3://dkr-folder/"):]
    names = {k.rsplit("/", 1)[-1] for k in s3env.folder_keys(run + "/")}
    assert {"_FAILED", "status.json"} <= names and "model.ubj" not in names and "_SUCCESS" not in names
    status = json.loads(s3env.moto.client("s3").get_object(Bucket="dkr-folder", Key=f"{run}/status.json")["Body"].read())
    assert status["state"] == "FAILED" and "integer with 4 distinct values" in status["message"]


def _interrupt_when(job, predicate, timeout_s: float = 240.0) -> threading.Thread:
    def run() -> None:
        end = time.time() + timeout_s
        while time.time() < end:
            if predicate(job):
                _thread.interrupt_main()
                return
            time.sleep(0.2)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _assert_stopped_with_marker(s3env, ray_head, job) -> dict:
    assert job.jobs.status(job.job_id) == "STOPPED"
    run = job.run_dir.prefix
    names = {k.rsplit("/", 1)[-1] for k in s3env.folder_keys(run + "/")}
    assert "_FAILED" in names and "status.json" in names and "_SUCCESS" not in names, names
    return json.loads(s3env.moto.client("s3").get_object(Bucket="dkr-folder", Key=f"{run}/status.json")["Body"].read())


def test_keyboard_interrupt_while_waiting_stops_the_job(s3env, ray_head) -> None:
    job = submit(s3env.uri(s3env.data_bucket, "binary"), "label", s3env.uri(s3env.folder_bucket, "cancel"),
                 cluster=ray_head.dashboard_url, num_rounds=100_000, checkpoint_every=0, wait=False,
                 **s3env.kwargs())
    _interrupt_when(job, lambda j: "round" in j.events.first_seen)
    with pytest.raises(KeyboardInterrupt):
        job.wait(show_progress=False, stream_logs=False)
    status = _assert_stopped_with_marker(s3env, ray_head, job)
    assert status["state"] == "FAILED" and "stopped" in status["message"]


def test_timeout_stops_the_job(s3env, ray_head) -> None:
    with pytest.raises(TrainingFailed, match="did not finish within 50 s") as info:
        submit(s3env.uri(s3env.data_bucket, "binary"), "label", s3env.uri(s3env.folder_bucket, "timeout"),
               cluster=ray_head.dashboard_url, num_rounds=100_000, checkpoint_every=0, timeout_s=50,
               **s3env.kwargs(), **_fast(show_progress=False))
    assert info.value.status == "STOPPED"
    run = info.value.result.run_dir[len("s3://dkr-folder/"):]
    assert "_FAILED" in {k.rsplit("/", 1)[-1] for k in s3env.folder_keys(run + "/")}


def test_credentials_about_to_expire_stop_training_with_a_checkpoint(s3env, ray_head) -> None:
    """moto does not expire STS credentials, so we state an expiry; the job must stop before it."""
    good = s3env.credentials
    margin = 20.0
    expiring = S3Credentials(good.access_key, good.secret_key, good.session_token,
                             datetime.now(timezone.utc) + timedelta(seconds=margin + 75))
    with pytest.raises(TrainingFailed) as info:
        submit(s3env.uri(s3env.data_bucket, "binary"), "label", s3env.uri(s3env.folder_bucket, "expiring"),
               cluster=ray_head.dashboard_url, num_rounds=100_000, checkpoint_every=500, params={"max_depth": 2},
               credentials_margin_s=margin, **s3env.kwargs(credentials=expiring), **_fast(show_progress=False))
    err = info.value
    assert "the S3 credentials expire at" in str(err) and "resume_from=" in str(err)
    result = err.result
    assert result.checkpoint_uri and result.checkpoint_uri.endswith("/checkpoint_final")
    run = result.run_dir[len("s3://dkr-folder/"):]
    client = s3env.moto.client("s3")
    status = json.loads(client.get_object(Bucket="dkr-folder", Key=f"{run}/status.json")["Body"].read())
    assert status["state"] == "FAILED" and status["reason"] == "credentials_expiring"
    assert 0 < status["rounds"] < 100_000
    names = {k.rsplit("/", 1)[-1] for k in s3env.folder_keys(run + "/")}
    assert "_FAILED" in names and "metrics.csv" in names and "_SUCCESS" not in names
    saved = xgboost.Booster()
    saved.load_model(bytearray(client.get_object(Bucket="dkr-folder", Key=f"{run}/checkpoint_final/model.ubj")["Body"].read()))
    assert saved.num_boosted_rounds() == status["rounds"]
    assert time.time() < expiring.expiration.timestamp()  # it stopped before the credentials expired
