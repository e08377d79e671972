"""Filesystems and small file operations for the job (pyarrow.fs only, same code for S3 and local).

Region and endpoint are always passed explicitly: without them pyarrow falls back to SDK
heuristics (EC2 metadata, us-east-1), which is slow or wrong, and S3-compatible endpoints
would be impossible.
"""
from __future__ import annotations

import json
import posixpath
from typing import Any, Mapping

import pyarrow.fs as pafs

from dku_ray_job.config import Place, Store
from dku_ray_job.s3_errors import explain


class StorageFailure(RuntimeError):
    """An S3 or file operation failed; the message says why and what to do (no secrets)."""


def make_filesystem(store: Store, credentials: Mapping[str, Any] | None) -> pafs.FileSystem:
    if store.kind == "local":
        return pafs.LocalFileSystem()
    kwargs: dict[str, Any] = {"region": store.region or "us-east-1", "allow_bucket_creation": False,
                              "connect_timeout": 10, "request_timeout": 60}
    if store.endpoint_url:
        scheme, _, host = store.endpoint_url.partition("://")
        kwargs["endpoint_override"] = host.rstrip("/")
        kwargs["scheme"] = scheme
    if credentials:
        kwargs.update(access_key=credentials["access_key"], secret_key=credentials["secret_key"],
                      session_token=credentials.get("session_token") or None)
    else:
        kwargs["anonymous"] = False
    return pafs.S3FileSystem(**kwargs)


def uri(store: Store, path: str) -> str:
    return f"s3://{path}" if store.kind == "s3" else path


def join(path: str, *parts: str) -> str:
    return posixpath.join(path, *[p.strip("/") for p in parts if p])


def _is_data_file(name: str) -> bool:
    base = posixpath.basename(name)
    return not base.startswith(("_", ".")) and base.endswith(".parquet")


def list_parquet_files(fs: pafs.FileSystem, store: Store, place: Place) -> list[tuple[str, int]]:
    """(path, size) of the parquet files at `place` (a file or a directory tree), sorted by path."""
    where = uri(store, place.path)
    try:
        info = fs.get_file_info(place.path)
        if info.type == pafs.FileType.File:
            return [(place.path, int(info.size or 0))]
        infos = fs.get_file_info(pafs.FileSelector(place.path, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise StorageFailure(explain(exc, "Listing the dataset files", where)) from None
    files = sorted((i.path, int(i.size or 0)) for i in infos if i.type == pafs.FileType.File and _is_data_file(i.path))
    if not files:
        raise StorageFailure(f"No parquet file found at {where}. The dataset must be parquet files "
                             "(names ending in .parquet).")
    return files


def write_bytes(fs: pafs.FileSystem, store: Store, path: str, data: bytes) -> None:
    try:
        if store.kind == "local":
            fs.create_dir(posixpath.dirname(path), recursive=True)
        with fs.open_output_stream(path) as out:
            out.write(data)
    except OSError as exc:
        raise StorageFailure(explain(exc, "Writing", uri(store, path))) from None


def write_json(fs: pafs.FileSystem, store: Store, path: str, value: Any) -> None:
    write_bytes(fs, store, path, json.dumps(value, indent=1, default=str).encode())


def read_bytes(fs: pafs.FileSystem, store: Store, path: str) -> bytes:
    try:
        with fs.open_input_stream(path) as src:
            return src.read()
    except OSError as exc:
        raise StorageFailure(explain(exc, "Reading", uri(store, path))) from None


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_dir(fs: pafs.FileSystem, path: str) -> list[pafs.FileInfo]:
    return fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))


def delete_file(fs: pafs.FileSystem, path: str) -> None:
    try:
        fs.delete_file(path)
    except (OSError, FileNotFoundError):
        pass
