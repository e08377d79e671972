"""How `submit()` reaches a Ray cluster's dashboard (the Jobs API): a URL plus HTTP headers.

`resolve_endpoint(cluster)` is the seam between training and cluster lifecycle: an explicit
dashboard URL or `RayEndpoint` is used as is; a cluster reference is handed to
`dku_ray.cluster_endpoint`, which yields an endpoint for as long as a tunnel must stay open.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from dku_ray.errors import DkuRayError

_HIDDEN_HEADERS = ("authorization", "x-ray-authorization", "cookie")


@dataclass(frozen=True)
class RayEndpoint:
    """A dashboard base URL and the headers to send (a bearer token when the cluster has token auth)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", self.url.rstrip("/"))
        object.__setattr__(self, "headers", dict(self.headers))

    @classmethod
    def with_token(cls, url: str, token: str | None) -> "RayEndpoint":
        return cls(url, {"Authorization": f"Bearer {token}"} if token else {})

    def __repr__(self) -> str:
        shown = {k: ("<redacted>" if k.lower() in _HIDDEN_HEADERS else v) for k, v in self.headers.items()}
        return f"RayEndpoint({self.url!r}, headers={shown})"


def _token_from_env() -> str | None:
    """The token a Ray client would use: RAY_AUTH_TOKEN, else the file in RAY_AUTH_TOKEN_PATH."""
    token = os.environ.get("RAY_AUTH_TOKEN")
    if token:
        return token.strip()
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip() or None
    return None


@contextlib.contextmanager
def resolve_endpoint(cluster: Any, token: str | None = None, dss_client: Any = None) -> Iterator[RayEndpoint]:
    """Yield the endpoint for `cluster`: a dashboard URL, a RayEndpoint, or a cluster reference.

    A reference (`dku_ray.ClusterRef`, `dku_ray.DSSClusterRef`, or "<DSS cluster>[/<namespace>]/<Ray
    cluster>") is resolved by the lifecycle code: Service DNS, pod IP, or a tunnel kept open until
    the context exits.
    """
    if isinstance(cluster, RayEndpoint):
        yield cluster
        return
    if isinstance(cluster, str) and cluster.startswith(("http://", "https://")):
        yield RayEndpoint.with_token(cluster, token or _token_from_env())
        return
    from dku_ray.cluster_endpoint import as_cluster_ref, cluster_endpoint  # the kubernetes side, only when needed

    try:
        ref = as_cluster_ref(cluster)
    except ValueError as exc:
        ref, reason = None, str(exc)
    else:
        reason = f"{type(cluster).__name__} is not a cluster reference"
    if ref is None:
        raise DkuRayError(
            f"Cannot reach the Ray cluster {cluster!r} ({reason}): pass the dashboard URL (e.g. "
            "'http://127.0.0.1:8265'), a ClusterRef(kubeconfig, name, namespace), or, in DSS, "
            "'<DSS cluster>/<Ray cluster>'.")
    with cluster_endpoint(ref, dss_client=dss_client) as endpoint:
        yield endpoint
