"""Datasets and folders as places the client can list, peek into, probe and read: S3 or local paths.

Local paths work outside DSS and in tests, as long as every Ray node sees the same path (a
single-node cluster on this machine, or a shared filesystem). The same pyarrow calls serve both,
so the client checks exactly what the job will do.
"""
from __future__ import annotations

import contextlib
import os
import posixpath
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from dku_ray.errors import StorageError
from dku_ray.s3 import s3_client, s3_filesystem, storage_error
from dku_ray.s3_location import S3Credentials, S3Location, parse_s3_uri

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.fs as pafs


@dataclass(frozen=True)
class LocalPath:
    """An absolute path on the machine (and, for the job, on every Ray node)."""

    path: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", os.path.abspath(self.path).rstrip("/") or "/")

    @property
    def uri(self) -> str:
        return self.path

    def child(self, *parts: str) -> "LocalPath":
        return LocalPath(posixpath.join(self.path, *[p.strip("/") for p in parts if p]))

    def __str__(self) -> str:
        return self.path


Location = Union[S3Location, LocalPath]


def parse_location(value: object, credentials: S3Credentials | None = None, region: str | None = None,
                   endpoint_url: str | None = None) -> Location | None:
    """A Location for an s3:// URI, a local path or a Location; None for anything else (a DSS name)."""
    if isinstance(value, (S3Location, LocalPath)):
        return value
    if not isinstance(value, str):
        return None
    if value.startswith("s3://"):
        bucket, prefix = parse_s3_uri(value)
        return S3Location(bucket, prefix, region, endpoint_url, credentials)
    if value.startswith("file://"):
        return LocalPath(value[len("file://"):])
    if value.startswith(("/", "./", "../", "~")):
        return LocalPath(os.path.expanduser(value))
    return None


def filesystem(loc: Location) -> "pafs.FileSystem":
    import pyarrow.fs as pafs

    return s3_filesystem(loc) if isinstance(loc, S3Location) else pafs.LocalFileSystem()


def fs_path(loc: Location) -> str:
    return loc.path


def child(loc: Location, *parts: str) -> Location:
    return loc.child(*parts)


def _fail(exc: BaseException, what: str, loc: Location) -> StorageError:
    if isinstance(loc, S3Location):
        return storage_error(exc, what, loc.uri)
    return StorageError(f"{what} ({loc.uri}) failed: {exc}")


def _is_hidden(name: str) -> bool:
    return posixpath.basename(name).startswith(("_", "."))


def list_files(loc: Location) -> list[tuple[str, int]]:
    """(path, size) of every file at `loc` (a file or a tree), hidden files (`_*`, `.*`) excluded."""
    import pyarrow.fs as pafs

    fs = filesystem(loc)
    try:
        info = fs.get_file_info(loc.path)
        if info.type == pafs.FileType.File:
            return [(loc.path, int(info.size or 0))]
        infos = fs.get_file_info(pafs.FileSelector(loc.path, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise _fail(exc, "Listing the files", loc) from None
    return sorted((i.path, int(i.size or 0)) for i in infos
                  if i.type == pafs.FileType.File and not _is_hidden(i.path))


def read_schema(loc: Location, path: str) -> "pa.Schema":
    """The parquet schema of one file: reads its footer only."""
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path, filesystem=filesystem(loc))
    except OSError as exc:
        raise _fail(exc, "Reading the parquet schema", loc) from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid for a file that is not parquet
        raise StorageError(f"{path} is not a readable parquet file: {str(exc).splitlines()[0][:200]}") from None


def probe_writable(loc: Location) -> None:
    """Write then delete a small object, as the job will (StorageError if refused); leaves nothing behind."""
    name = f".dku_ray_write_probe_{uuid.uuid4().hex[:12]}"
    if isinstance(loc, S3Location):
        client = s3_client(loc)
        key = posixpath.join(loc.prefix, name) if loc.prefix else name
        try:
            client.put_object(Bucket=loc.bucket, Key=key, Body=b"dku_ray write probe; safe to delete\n")
        except Exception as exc:  # noqa: BLE001 - botocore ClientError / EndpointConnectionError
            raise _fail(exc, "Writing a test file into the folder", loc) from None
        try:
            client.delete_object(Bucket=loc.bucket, Key=key)
        except Exception as exc:  # noqa: BLE001
            raise _fail(exc, "Deleting the test file from the folder (Ray Train deletes old checkpoints)",
                        loc) from None
        return
    created = not os.path.exists(loc.path)
    probe = posixpath.join(loc.path, name)
    try:
        os.makedirs(loc.path, exist_ok=True)
        with open(probe, "wb") as out:
            out.write(b"dku_ray write probe; safe to delete\n")
        os.remove(probe)
    except OSError as exc:
        raise _fail(exc, "Writing a test file into the folder", loc) from None
    finally:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(loc.path)


def read_bytes(loc: Location, name: str = "") -> bytes:
    fs = filesystem(loc)
    path = posixpath.join(loc.path, name) if name else loc.path
    try:
        with fs.open_input_stream(path) as src:
            return src.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise _fail(exc, f"Reading {name or 'the file'}", loc) from None


def write_bytes(loc: Location, name: str, data: bytes) -> None:
    fs = filesystem(loc)
    try:
        if isinstance(loc, LocalPath):
            fs.create_dir(loc.path, recursive=True)
        with fs.open_output_stream(posixpath.join(loc.path, name)) as out:
            out.write(data)
    except OSError as exc:
        raise _fail(exc, f"Writing {name}", loc) from None


def list_names(loc: Location) -> list[str]:
    """Base names of the direct children of `loc` (files and directories); [] if it does not exist."""
    import pyarrow.fs as pafs

    try:
        infos = filesystem(loc).get_file_info(pafs.FileSelector(loc.path, allow_not_found=True))
    except OSError as exc:
        raise _fail(exc, "Listing", loc) from None
    return sorted(i.base_name for i in infos)
