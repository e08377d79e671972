"""Turn an S3 failure (pyarrow OSError or botocore ClientError) into a cause and a fix.

Pure and dependency-free on purpose: the job uses it on the cluster, and `dku_ray.s3` uses the
same table on the client, so a user sees the same explanation wherever the error happens.
pyarrow reports AWS codes as "AWS Error ACCESS_DENIED" or, for codes its SDK does not know,
"Unable to parse ExceptionName: ExpiredToken"; botocore gives "ExpiredToken". We normalise all.
"""
from __future__ import annotations

import re
from typing import NamedTuple


class S3Failure(NamedTuple):
    code: str  # normalised: "access_denied", "expired_token", ... or "other"
    cause: str
    fix: str


_RULES: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("expired_token", ("expiredtoken", "tokenrefreshrequired", "requestexpired", "expiredtokenexception"),
     "the STS session credentials have expired",
     "Get fresh credentials (in DSS, run the cell again: DSS issues new STS credentials for each call) "
     "and submit again; a run that stopped can continue with resume_from=<its last checkpoint>."),
    ("invalid_token", ("invalidtoken", "invalidclienttokenid"),
     "the session token is invalid (malformed, or not issued with this access key)",
     "Pass the access key, secret key and session token from the same STS AssumeRole answer."),
    ("invalid_access_key", ("invalidaccesskeyid",),
     "the access key id is not known to this S3 endpoint",
     "Check the access key, and that the region / endpoint match the account that issued it."),
    ("signature_mismatch", ("signaturedoesnotmatch",),
     "the secret key does not match the access key",
     "Check the secret key (and the session token for STS credentials)."),
    ("clock_skew", ("requesttimetooskewed",),
     "the clock of the machine is too far from S3's clock",
     "Synchronise the clock (NTP) of the machine that runs the request."),
    ("access_denied", ("accessdenied", "allaccessdisabled", "forbidden"),
     "S3 denied access (the credentials are valid but not allowed to do this)",
     "Grant the role or user s3:ListBucket and s3:GetObject on the dataset, and s3:ListBucket, "
     "s3:GetObject, s3:PutObject and s3:DeleteObject on the folder (in DSS: the S3 connection's policy)."),
    ("no_such_bucket", ("nosuchbucket",),
     "the bucket does not exist",
     "Check the bucket name, and the region or endpoint of the connection."),
    ("unreachable", ("couldntconnecttoserver", "connectionrefused", "couldnotresolvehost",
                     "failedtoconnect", "curlcode7", "curlcode6", "endpointconnectionerror", "timedout"),
     "the S3 endpoint could not be reached",
     "Check the endpoint URL / region, and that the machine (or every Ray node) can reach it."),
)

_AWS_CODE = re.compile(r"AWS Error ([A-Z_]+)|ExceptionName: ([A-Za-z]+)|\(([A-Za-z]+)\) when calling|"
                       r"<Code>([A-Za-z]+)</Code>")


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def classify(error: BaseException | str) -> S3Failure:
    """The cause and fix of an S3 error; code "other" when it is not one we recognise."""
    text = error if isinstance(error, str) else _error_text(error)
    codes = [_norm(g) for m in _AWS_CODE.finditer(text) for g in m.groups() if g]
    flat = _norm(text)
    for code, needles, cause, fix in _RULES:
        if any(n in codes for n in needles):
            return S3Failure(code, cause, fix)
    for code, needles, cause, fix in _RULES:  # no parsed code: look for the words anywhere
        if any(n in flat for n in needles):
            return S3Failure(code, cause, fix)
    if re.search(r"HTTP status 403|\b403\b", text):
        code, _, cause, fix = next(r for r in _RULES if r[0] == "access_denied")
        return S3Failure(code, cause, fix)
    return S3Failure("other", "the S3 request failed", "See the error below.")


def _error_text(error: BaseException) -> str:
    response = getattr(error, "response", None)  # botocore ClientError
    if isinstance(response, dict):
        err = response.get("Error") or {}
        return f"({err.get('Code', '')}) when calling: {err.get('Message', '')} {error}"
    return str(error)


def explain(error: BaseException | str, what: str, uri: str) -> str:
    """One message for people: what failed, where, why, and what to do; the raw error last, shortened."""
    failure = classify(error)
    raw = (error if isinstance(error, str) else _error_text(error)).strip().splitlines()
    detail = raw[0][:300] if raw else ""
    return f"{what} ({uri}) failed: {failure.cause}. {failure.fix}" + (f"\n  S3 said: {detail}" if detail else "")
