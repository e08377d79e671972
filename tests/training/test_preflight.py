"""Everything that must fail before a job runs, against the real local Ray head and moto S3 with
authentication enforced. Each failure is a PreflightError that names the field and says what to
do, and nothing is left in the folder."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

import dku_ray.submit as submit_module
from dku_ray.endpoint import RayEndpoint, resolve_endpoint
from dku_ray.errors import DkuRayError, PreflightError
from dku_ray.preflight import capacity_problems, version_problems
from dku_ray.s3_location import S3Credentials
from dku_ray.training_options import TrainingOptions
from testenv.local_ray import free_port
from testenv.moto_s3 import AwsErrorStub


def _folder(env) -> tuple[str, str]:
    prefix = f"preflight/{uuid.uuid4().hex[:8]}"
    return env.uri(env.folder_bucket, prefix), prefix


def _submit(env, head, dataset=None, folder=None, label="label", **kwargs):
    s3 = env.kwargs(kwargs.pop("credentials", None), kwargs.pop("endpoint_url", None))
    return submit_module.submit(dataset or env.uri(env.data_bucket, "binary"), label, folder,
                                cluster=kwargs.pop("cluster", head.dashboard_url), show_progress=False,
                                **s3, **kwargs)


def _expect(env, head, match: str, field: str | None = None, **kwargs) -> PreflightError:
    folder, prefix = _folder(env)
    with pytest.raises(PreflightError) as info:
        _submit(env, head, folder=kwargs.pop("folder", folder), **kwargs)
    text = str(info.value)
    assert match in text, text
    if field:
        assert field in info.value.fields, info.value.fields
    assert env.folder_keys(prefix) == [], "a failed preflight must not write into the folder"
    return info.value


def test_option_problems_are_listed_together() -> None:
    opts = TrainingOptions(num_rounds=0, validation_fraction=0.9, cpus_per_worker=0, params={"n_estimators": 5},
                           pip=("ray==2.60.0", "xgboost"), features=("a",), drop_features=("a",))
    fields = [p.field for p in opts.problems()]
    for name in ("num_rounds", "validation_fraction", "cpus_per_worker", "params.n_estimators", "pip",
                 "drop_features"):
        assert name in fields
    assert sum(f == "pip" for f in fields) == 2


def test_version_and_capacity_rules() -> None:
    assert version_problems({"ray": "2.60.0", "python": "3.11.2"}, "2.60.0", "3.11.7") == []
    assert "Python 3.12.1" in str(version_problems({"ray": "2.60.0", "python": "3.12.1"}, "2.60.0", "3.11.7")[0])
    nodes = [{"CPU": (1.0, 4.0)}, {"CPU": (0.0, 2.0), "GPU": (0.0, 1.0)}]
    assert capacity_problems(nodes, TrainingOptions(num_workers=5, cpus_per_worker=1)) == []
    assert capacity_problems(nodes, TrainingOptions(num_workers=2, cpus_per_worker=2)) == []  # 3 free + 2 free
    assert "room for 1" in str(capacity_problems(nodes, TrainingOptions(num_workers=2, cpus_per_worker=3))[0])
    assert "room for 1" in str(capacity_problems(nodes, TrainingOptions(num_workers=2, gpus_per_worker=1))[0])


def test_unknown_option_is_a_problem_not_a_type_error(s3env, ray_head) -> None:
    _expect(s3env, ray_head, "unknown option", "num_round", num_round=3)


def test_missing_label_column(s3env, ray_head) -> None:
    _expect(s3env, ray_head, "column 'churned' is not in the dataset", "label", label="churned")


def test_non_parquet_dataset(s3env, ray_head) -> None:
    _expect(s3env, ray_head, "is not a parquet dataset (found ['part-0.csv'])", "dataset",
            dataset=s3env.uri(s3env.data_bucket, "csv"))


def test_too_many_workers_for_the_cluster(s3env, ray_head) -> None:
    _expect(s3env, ray_head, "room for 2 worker(s)", "num_workers", num_workers=3)
    _expect(s3env, ray_head, "at most 2 on one node", "num_workers", num_workers=1, cpus_per_worker=3)


def test_every_problem_is_reported_at_once(s3env, ray_head) -> None:
    err = _expect(s3env, ray_head, "room for 2", label="churned", num_workers=4)
    assert {"label", "num_workers"} <= set(err.fields)


def test_ray_version_mismatch(s3env, ray_head, monkeypatch) -> None:
    import ray

    monkeypatch.setattr(ray, "__version__", "2.59.0")
    _expect(s3env, ray_head, "Ray 2.60.0 on the cluster but Ray 2.59.0 here", "cluster")


def test_unreachable_cluster_and_unknown_reference(s3env, ray_head) -> None:
    _expect(s3env, ray_head, "Check the URL", "cluster", cluster=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(DkuRayError, match="pass the dashboard URL"):
        with resolve_endpoint(42):
            pass
    with pytest.raises(DkuRayError, match="only works inside DSS"):  # a DSS cluster name, outside DSS
        with resolve_endpoint("my-dss-cluster/ray"):
            pass
    assert "s3cr3t" not in repr(RayEndpoint.with_token("http://x", "s3cr3t"))


def test_wrong_secret_key(s3env, ray_head) -> None:
    good = s3env.credentials
    bad = S3Credentials(good.access_key, "not-the-secret", good.session_token, good.expiration)
    err = _expect(s3env, ray_head, "the secret key does not match the access key", "dataset", credentials=bad)
    assert "not-the-secret" not in str(err) and good.session_token not in str(err)


def test_bogus_session_token_and_unknown_key(s3env, ray_head) -> None:
    good = s3env.credentials
    _expect(s3env, ray_head, "the session token is invalid", "dataset",
            credentials=S3Credentials(good.access_key, good.secret_key, "bogus-token", good.expiration))
    _expect(s3env, ray_head, "the access key id is not known", "dataset",
            credentials=S3Credentials("AKIAUNKNOWNKEY000000", "whatever", None))


def test_expired_credentials_fail_before_any_request(s3env, ray_head) -> None:
    good = s3env.credentials
    past = datetime.now(timezone.utc) - timedelta(minutes=5)
    expired = S3Credentials(good.access_key, good.secret_key, good.session_token, past)
    err = _expect(s3env, ray_head, "expired at", "dataset", credentials=expired)
    assert "folder" in err.fields
    soon = S3Credentials(good.access_key, good.secret_key, good.session_token,
                         datetime.now(timezone.utc) + timedelta(seconds=60))
    _expect(s3env, ray_head, "less than the 300 s safety margin", "dataset", credentials=soon)


def test_expired_token_reported_by_s3(s3env, ray_head) -> None:
    with AwsErrorStub("ExpiredToken", "The provided token has expired.") as stub:
        err = _expect(s3env, ray_head, "the STS session credentials have expired", "dataset",
                      endpoint_url=stub.endpoint_url, folder="s3://stub-bucket/folder")
    assert "resume_from" in str(err)  # the fix says how to continue a stopped run


def test_access_denied_on_folder_and_dataset(s3env, ray_head) -> None:
    _expect(s3env, ray_head, "S3 denied access", "folder", folder=s3env.uri(s3env.readonly_bucket, "out"))
    _expect(s3env, ray_head, "S3 denied access", "dataset", dataset=s3env.uri(s3env.forbidden_bucket, "binary"))


def test_token_auth_cluster(s3env, tmp_path) -> None:
    """A cluster with token auth: no token is a clear error; with the token, the checks reach the data."""
    from testenv.local_ray import LocalRayHead

    with LocalRayHead(num_cpus=1, object_store_memory=100_000_000, auth_token="dku-ray-test-token-0123456789") as head:
        folder, prefix = _folder(s3env)
        with pytest.raises(PreflightError, match="requires a Ray auth token"):
            _submit(s3env, head, folder=folder)
        with pytest.raises(PreflightError) as info:
            _submit(s3env, head, folder=folder, label="churned", num_workers=1,
                    cluster=RayEndpoint.with_token(head.dashboard_url, head.auth_token))
        assert info.value.fields == ["label"]  # the cluster checks passed with the token
        assert s3env.folder_keys(prefix) == []
