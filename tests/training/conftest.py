"""Session fixtures for the training tests: one real local Ray head, one moto server (S3 + IAM + STS
with authentication enforced), buckets, an IAM role and small parquet datasets.

Both servers are stopped at session end by their own PIDs, also when tests fail or the run is
interrupted (atexit as a last resort). Jobs stay small (20k rows, few rounds): the fixed
overhead of a Ray Train job dominates on this machine anyway.
"""
from __future__ import annotations

import atexit
import os
import signal
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from testenv.local_ray import LocalRayHead
from testenv.moto_s3 import REGION, MotoS3, classification_table, write_parquet_parts

TRAIN_ROWS = 20_000
HOLDOUT_ROWS = 10_000
FILES = 4


@dataclass
class S3Env:
    """Buckets, credentials and datasets on the session's moto server."""

    moto: MotoS3
    credentials: Any  # S3Credentials of the role: read-write on data + folder buckets, read-only on "readonly"
    data_bucket: str
    folder_bucket: str
    readonly_bucket: str
    forbidden_bucket: str
    holdout: Any  # pandas DataFrame of the binary dataset's holdout rows
    multiclass_holdout: Any

    def uri(self, bucket: str, prefix: str) -> str:
        return f"s3://{bucket}/{prefix}"

    def kwargs(self, credentials: Any = None, endpoint_url: str | None = None) -> dict[str, Any]:
        """The S3 keyword arguments of submit() for this moto server."""
        return {"credentials": credentials or self.credentials, "region": REGION,
                "endpoint_url": endpoint_url or self.moto.endpoint_url}

    def folder_keys(self, prefix: str) -> list[str]:
        return self.moto.list_keys(self.folder_bucket, prefix)


@pytest.fixture(scope="session", autouse=True)
def _sigterm_runs_teardown() -> Iterator[None]:
    """SIGTERM (e.g. `timeout`, CI cancel) would kill pytest before fixture teardown and leak the
    Ray head and moto; turn it into KeyboardInterrupt so that teardown runs."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, interrupt)
    yield
    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture(scope="session", autouse=True)
def _client_env() -> Iterator[None]:
    """The test process is the Ray client: loopback only, explicit auth mode, no EC2 metadata."""
    keys = ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_AUTH_MODE", "AWS_EC2_METADATA_DISABLED", "RAY_AUTH_TOKEN")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="disabled", AWS_EC2_METADATA_DISABLED="true")
    os.environ.pop("RAY_AUTH_TOKEN", None)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def ray_head() -> Iterator[LocalRayHead]:
    head = LocalRayHead(num_cpus=2, object_store_memory=300_000_000)
    atexit.register(head.stop)
    try:
        head.start()
        yield head
    finally:
        head.stop()
        atexit.unregister(head.stop)
        head.cleanup()


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoS3]:
    server = MotoS3(enforce_auth=True)
    atexit.register(server.stop)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        atexit.unregister(server.stop)


@pytest.fixture(scope="session")
def s3env(moto: MotoS3) -> S3Env:
    data, folder, readonly, forbidden = "dkr-data", "dkr-folder", "dkr-readonly", "dkr-forbidden"
    for bucket in (data, folder, readonly, forbidden):
        moto.create_bucket(bucket)
    role = moto.create_role("dku-ray-training", read_write=[data, folder], read_only=[readonly])
    credentials = moto.assume_role(role, "dku-ray-tests")
    admin_fs = moto.filesystem()
    binary = classification_table(TRAIN_ROWS + HOLDOUT_ROWS, seed=7)
    write_parquet_parts(binary.slice(0, TRAIN_ROWS), admin_fs, f"{data}/binary", FILES)
    write_parquet_parts(binary.slice(0, 2_000), admin_fs, f"{readonly}/binary", 1)
    write_parquet_parts(binary.slice(0, 2_000), admin_fs, f"{forbidden}/binary", 1)
    multi = classification_table(TRAIN_ROWS + HOLDOUT_ROWS, seed=11, n_classes=3, label_kind="str", categorical=True)
    write_parquet_parts(multi.slice(0, 16_000), admin_fs, f"{data}/multi/train", 3)
    write_parquet_parts(multi.slice(16_000, 4_000), admin_fs, f"{data}/multi/valid", 1)
    ints = classification_table(4_000, seed=3, n_classes=4)  # integer label with 4 values, no objective
    write_parquet_parts(ints, admin_fs, f"{data}/int4", 2)
    with admin_fs.open_output_stream(f"{data}/csv/part-0.csv") as out:
        out.write(binary.slice(0, 100).to_pandas().to_csv(index=False).encode())
    return S3Env(moto, credentials, data, folder, readonly, forbidden,
                 binary.slice(TRAIN_ROWS).to_pandas(), multi.slice(TRAIN_ROWS).to_pandas())
