"""S3 adapter for the client: pyarrow filesystems from `S3Location`, credentials, error mapping.

Region and endpoint go to pyarrow explicitly (S3-compatible endpoints work; no EC2 metadata
guessing). S3 failures become `StorageError`s whose message says the cause and the fix; the
table of causes is shared with the job (`dku_ray_job.s3_errors`) so both sides say the same.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from dku_ray.errors import StorageError
from dku_ray.s3_location import S3Credentials, S3Location
from dku_ray_job.s3_errors import classify, explain

if TYPE_CHECKING:
    import pyarrow.fs as pafs

DEFAULT_REGION = "us-east-1"


def s3_filesystem(location: S3Location) -> "pafs.S3FileSystem":
    """A pyarrow S3FileSystem for `location`, with its region, endpoint and credentials."""
    import pyarrow.fs as pafs

    kwargs: dict = {"region": location.region or DEFAULT_REGION, "connect_timeout": 10, "request_timeout": 60}
    if location.endpoint_url:
        scheme, _, host = location.endpoint_url.partition("://")
        kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme or "https")
    creds = location.credentials
    if creds is not None:
        kwargs.update(access_key=creds.access_key, secret_key=creds.secret_key, session_token=creds.session_token)
    return pafs.S3FileSystem(**kwargs)


def s3_client(location: S3Location) -> object:
    """A boto3 S3 client for `location` (for the few calls where pyarrow's directory emulation
    would leave marker objects behind, such as the write probe)."""
    import boto3
    from botocore.config import Config

    creds = location.credentials
    keys = {}
    if creds is not None:
        keys = {"aws_access_key_id": creds.access_key, "aws_secret_access_key": creds.secret_key,
                "aws_session_token": creds.session_token}
    return boto3.client("s3", region_name=location.region or DEFAULT_REGION, endpoint_url=location.endpoint_url,
                        config=Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 2}), **keys)


def storage_error(exc: BaseException, what: str, uri: str) -> StorageError:
    """A StorageError that names the operation, the place, the cause and the fix (never a secret)."""
    err = StorageError(explain(exc, what, uri))
    err.code = classify(exc).code  # type: ignore[attr-defined]
    return err


def default_credentials() -> S3Credentials | None:
    """Credentials from the standard AWS chain (env vars, profile) for plain s3:// URIs outside DSS.

    The Ray cluster cannot use this machine's chain, so the resolved keys are shipped to the job.
    """
    try:
        import boto3
    except ImportError:
        return None
    creds = boto3.Session().get_credentials()
    if creds is None:
        return None
    frozen = creds.get_frozen_credentials()
    expiry = getattr(creds, "_expiry_time", None)
    return S3Credentials(frozen.access_key, frozen.secret_key, frozen.token or None,
                         expiry.astimezone(timezone.utc) if isinstance(expiry, datetime) else None)


def effective_expiration(creds: S3Credentials | None, assumed_lifetime_s: float | None,
                         now: datetime | None = None) -> datetime | None:
    """When the credentials must be considered expired.

    STS credentials from DSS come without their expiration; we then assume they expire
    `assumed_lifetime_s` after now (AWS's default AssumeRole duration is 1 h) rather than never.
    """
    if creds is None:
        return None
    if creds.expiration is not None:
        return creds.expiration
    if creds.session_token and assumed_lifetime_s:
        return (now or datetime.now(timezone.utc)) + timedelta(seconds=assumed_lifetime_s)
    return None


def freshness_problem(creds: S3Credentials | None, what: str, margin_s: float,
                      now: datetime | None = None) -> str | None:
    """A message when the credentials are expired or expire within the safety margin, else None."""
    if creds is None or creds.expiration is None:
        return None
    left = creds.seconds_left(now)
    if left is None:
        return None
    when = creds.expiration.strftime("%Y-%m-%d %H:%M:%S UTC")
    if left <= 0:
        return (f"the S3 credentials for the {what} expired at {when}. Get fresh credentials (in DSS, run the cell "
                "again) and submit again.")
    if left < margin_s:
        return (f"the S3 credentials for the {what} expire at {when}, in {left:.0f} s, less than the "
                f"{margin_s:.0f} s safety margin (credentials_margin_s). Get fresh credentials and submit again.")
    return None
