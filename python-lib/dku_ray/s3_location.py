"""Where data lives on S3 and how to reach it: the value objects the DSS and S3 adapters exchange.

Secrets are kept out of `repr()` and `str()`, so a location can be logged or put in an
exception without leaking keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone


@dataclass(frozen=True)
class S3Credentials:
    """An access key pair, plus a session token for STS (AssumeRole) credentials."""

    access_key: str
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)
    expiration: datetime | None = None  # known for STS credentials; None means "does not expire" or unknown

    def __repr__(self) -> str:
        kind = "sts" if self.session_token else "keypair"
        expires = f", expires={self.expiration.isoformat()}" if self.expiration else ""
        return f"S3Credentials({kind}, access_key={self.access_key[:4]}…{expires})"

    def seconds_left(self, now: datetime | None = None) -> float | None:
        if self.expiration is None:
            return None
        now = now or datetime.now(timezone.utc)
        return (self.expiration - now).total_seconds()


@dataclass(frozen=True)
class S3Location:
    """`s3://bucket/prefix`, the region or S3-compatible endpoint to use, and the credentials for it."""

    bucket: str
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None  # e.g. "http://127.0.0.1:5555" or "https://minio.example.com"
    credentials: S3Credentials | None = None
    connection: str | None = None  # the DSS connection name, for messages

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", self.prefix.strip("/"))

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def path(self) -> str:
        """`bucket/prefix`, the form pyarrow filesystems expect."""
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    def child(self, *parts: str) -> "S3Location":
        prefix = "/".join(p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/"))
        return S3Location(self.bucket, prefix, self.region, self.endpoint_url, self.credentials, self.connection)

    def __str__(self) -> str:
        return self.uri


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """("bucket", "prefix") from "s3://bucket/prefix"; ValueError with the expected form otherwise."""
    if not uri.startswith("s3://") or len(uri) <= 5:
        raise ValueError(f"{uri!r} is not an S3 URI; expected s3://bucket/path")
    bucket, _, prefix = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} has no bucket; expected s3://bucket/path")
    return bucket, prefix.strip("/")
