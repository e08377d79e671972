"""Structured progress lines in the job's logs: `DKU_RAY_EVENT {json}`.

The client tails the job logs (Ray forwards the workers' stdout there) and parses these lines for
the progress bar, the timings and the failure message, so no extra channel is needed. Each line
carries an `id` because Ray Train V2 may print a worker's line twice.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import time
from typing import Any

PREFIX = "DKU_RAY_EVENT "
_counter = itertools.count()


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def emit(kind: str, rank: int | None = None, **fields: Any) -> None:
    """Print one event line (flushed, so that it reaches the client without delay)."""
    payload = {"kind": kind, "t": round(time.time(), 3), "id": f"{os.getpid()}-{next(_counter)}"}
    if rank is not None:
        payload["rank"] = rank
    payload.update(_clean(fields))
    print(PREFIX + json.dumps(payload, default=str, separators=(",", ":")), flush=True)
