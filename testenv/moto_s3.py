"""S3 + IAM + STS on loopback with moto, for dku_ray's training tests, demo and benchmarks.

`MotoS3` runs `moto_server` as a child process (its own process group, stopped by PID). With
`enforce_auth=True` moto checks signatures, session tokens and IAM policies once its first few
calls are spent: we spend them on an admin IAM user, so every later request is authenticated
like on AWS. That is what lets tests see real AccessDenied / SignatureDoesNotMatch errors.
moto does not check STS expiry; `AwsErrorStub` answers every request with one AWS error
(e.g. ExpiredToken) so that the error mapping is tested through the real client stacks.

Data helpers write synthetic classification data as parquet parts (make_classification).
"""
from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from testenv.local_ray import die_with_parent, free_port

if TYPE_CHECKING:  # heavy or project imports stay out of import time
    import pyarrow as pa
    import pyarrow.fs as pafs

    from dku_ray.s3_location import S3Credentials, S3Location

__all__ = ["REGION", "MotoS3", "AwsErrorStub", "classification_table", "write_parquet_parts"]

REGION = "us-east-1"
_BOOTSTRAP = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
_NO_AUTH_CALLS = 3  # create_user, put_user_policy, create_access_key


class MotoS3:
    """A moto server on 127.0.0.1 with helpers for buckets, IAM roles and STS AssumeRole."""

    def __init__(self, enforce_auth: bool = True, log_dir: Path | None = None) -> None:
        self.enforce_auth = enforce_auth
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = (log_dir or Path("/tmp")) / f"moto-{os.getpid()}-{id(self):x}.log"
        self.admin: dict[str, str] = dict(_BOOTSTRAP)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MotoS3":
        self.port = free_port()
        env = dict(os.environ, AWS_EC2_METADATA_DISABLED="true", MOTO_ALLOW_NONEXISTENT_REGION="false")
        if self.enforce_auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_NO_AUTH_CALLS)
        else:
            env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
        moto_bin = str(Path(sys.executable).with_name("moto_server"))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([moto_bin, "-H", "127.0.0.1", "-p", str(self.port)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True, preexec_fn=die_with_parent())
        try:
            self._wait_ready()
            if self.enforce_auth:
                self._create_admin()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.endpoint_url + "/moto-api/", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"moto_server not ready after {timeout:.0f}s; see {self.log_path}")

    def _create_admin(self) -> None:
        """Spend moto's unauthenticated calls on an admin user; everything after is checked."""
        iam = self.client("iam", _BOOTSTRAP)
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="admin")["AccessKey"]
        self.admin = {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None

    def __enter__(self) -> "MotoS3":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- AWS helpers -----------------------------------------------------------------------
    def client(self, service: str, keys: dict[str, str] | None = None,
               credentials: "S3Credentials | None" = None) -> Any:
        import boto3

        if credentials is not None:
            keys = {"aws_access_key_id": credentials.access_key, "aws_secret_access_key": credentials.secret_key,
                    "aws_session_token": credentials.session_token}
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=REGION, **(keys or self.admin))

    def create_bucket(self, name: str) -> str:
        self.client("s3").create_bucket(Bucket=name)
        return name

    def create_role(self, name: str, read_write: Sequence[str] = (), read_only: Sequence[str] = ()) -> str:
        """An IAM role allowed s3:* on `read_write` buckets and Get/List on `read_only` ones; returns its ARN."""
        statements = []
        if read_write:
            statements.append({"Effect": "Allow", "Action": ["s3:*"],
                               "Resource": [r for b in read_write for r in (f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*")]})
        if read_only:
            statements.append({"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"],
                               "Resource": [r for b in read_only for r in (f"arn:aws:s3:::{b}", f"arn:aws:s3:::{b}/*")]})
        iam = self.client("iam")
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
        iam.put_role_policy(RoleName=name, PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": statements or [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}))
        return arn

    def assume_role(self, role_arn: str, session_name: str = "dku-ray-test", duration_s: int = 3600) -> "S3Credentials":
        from dku_ray.s3_location import S3Credentials

        c = self.client("sts").assume_role(RoleArn=role_arn, RoleSessionName=session_name,
                                           DurationSeconds=duration_s)["Credentials"]
        return S3Credentials(c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"],
                             c["Expiration"].astimezone(timezone.utc))

    def location(self, bucket: str, prefix: str = "", credentials: "S3Credentials | None" = None) -> "S3Location":
        from dku_ray.s3_location import S3Location

        return S3Location(bucket, prefix, region=REGION, endpoint_url=self.endpoint_url, credentials=credentials)

    def filesystem(self, credentials: "S3Credentials | None" = None) -> "pafs.S3FileSystem":
        """A pyarrow S3FileSystem on this server (admin keys unless `credentials`)."""
        import pyarrow.fs as pafs

        if credentials is not None:
            keys = dict(access_key=credentials.access_key, secret_key=credentials.secret_key,
                        session_token=credentials.session_token)
        else:
            keys = dict(access_key=self.admin["aws_access_key_id"], secret_key=self.admin["aws_secret_access_key"])
        return pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{self.port}", scheme="http", region=REGION, **keys)

    def list_keys(self, bucket: str, prefix: str = "") -> list[str]:
        s3 = self.client("s3")
        keys: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys


class AwsErrorStub:
    """An HTTP endpoint that answers every S3 request with one AWS error, e.g. an expired STS token."""

    def __init__(self, code: str = "ExpiredToken", message: str = "The provided token has expired.",
                 status: int = 400) -> None:
        self.code, self.message, self.status = code, message, status
        self.port = 0
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "AwsErrorStub":
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, body: bool) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                payload = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{stub.code}</Code>'
                           f"<Message>{stub.message}</Message><RequestId>stub</RequestId></Error>").encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(payload) if body else 0))
                self.end_headers()
                if body:
                    self.wfile.write(payload)

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                self._answer(True)

            do_PUT = do_POST = do_DELETE = do_GET  # noqa: N815

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(False)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "AwsErrorStub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def classification_table(n_rows: int, n_features: int = 20, seed: int = 42, *, n_classes: int = 2,
                         label: str = "label", label_kind: str = "int", categorical: bool = False) -> "pa.Table":
    """make_classification as a pyarrow Table: f00..fNN float64 plus the label.

    label_kind: "int" (0..k-1), "bool" (binary only) or "str" ("class_a", "class_b", ...).
    categorical: add a string column `cat` derived from f00 (so it carries signal), for XGBoost's
    native categorical support.
    """
    import numpy as np
    import pyarrow as pa
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=n_rows, n_features=n_features, n_informative=min(12, n_features),
                               n_redundant=min(4, max(0, n_features - 12)), n_classes=n_classes, flip_y=0.05,
                               class_sep=0.8, random_state=seed)
    cols: dict[str, Any] = {f"f{i:02d}": x[:, i] for i in range(n_features)}
    if categorical:
        names = np.array(["north", "south", "east", "west", "center"])
        bins = np.digitize(x[:, 0], [-1.0, -0.3, 0.3, 1.0])
        cols["cat"] = pa.array(names[bins].tolist(), pa.string())
    if label_kind == "int":
        cols[label] = y.astype(np.int64)
    elif label_kind == "bool":
        if n_classes != 2:
            raise ValueError("label_kind='bool' needs n_classes=2")
        cols[label] = y.astype(bool)
    elif label_kind == "str":
        cols[label] = pa.array([f"class_{chr(97 + int(v))}" for v in y], pa.string())
    else:
        raise ValueError(f"unknown label_kind {label_kind!r}")
    return pa.table(cols)


def write_parquet_parts(table: "pa.Table", filesystem: "pafs.FileSystem", path: str, n_files: int = 4,
                        row_group_size: int = 128_000) -> list[str]:
    """Write `table` as `n_files` parquet objects under `path` (bucket/prefix); returns their paths."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    if isinstance(filesystem, pafs.LocalFileSystem):
        filesystem.create_dir(path, recursive=True)
    per = -(-table.num_rows // n_files)
    paths = []
    for i in range(n_files):
        part = table.slice(i * per, per)
        if part.num_rows == 0:
            break
        target = f"{path.rstrip('/')}/part-{i:05d}.parquet"
        pq.write_table(part, target, filesystem=filesystem, compression="snappy", row_group_size=row_group_size)
        paths.append(target)
    return paths


if __name__ == "__main__":  # manual use: python -m testenv.moto_s3
    with MotoS3() as moto:
        print(f"moto up at {moto.endpoint_url} (admin key {moto.admin['aws_access_key_id'][:4]}…); Ctrl-C to stop",
              flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
