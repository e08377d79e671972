"""How `submit()` reaches a Ray cluster's dashboard (the Jobs API): a URL plus HTTP headers.

`resolve_endpoint(cluster)` is the seam between training and cluster lifecycle. Today it accepts
an explicit dashboard URL or a `RayEndpoint`. A Kubernetes / DSS cluster reference is resolved by
a resolver that the lifecycle code registers with `register_cluster_resolver()`: it yields an
endpoint for as long as its tunnel must stay open, and closes the tunnel afterwards.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterator, Mapping

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


ClusterResolver = Callable[[Any], "ContextManager[RayEndpoint] | None"]
_resolvers: list[ClusterResolver] = []


def register_cluster_resolver(resolver: ClusterResolver) -> None:
    """Add a resolver for cluster references that are not URLs (e.g. a KubeRay cluster behind a tunnel).

    The resolver returns None when it does not handle `cluster`, else a context manager yielding a
    RayEndpoint that stays valid until the context exits.
    """
    if resolver not in _resolvers:
        _resolvers.append(resolver)


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
def resolve_endpoint(cluster: Any, token: str | None = None) -> Iterator[RayEndpoint]:
    """Yield the endpoint for `cluster`: a dashboard URL, a RayEndpoint, or a registered reference."""
    if isinstance(cluster, RayEndpoint):
        yield cluster
        return
    if isinstance(cluster, str) and cluster.startswith(("http://", "https://")):
        yield RayEndpoint.with_token(cluster, token or _token_from_env())
        return
    for resolver in list(_resolvers):
        managed = resolver(cluster)
        if managed is not None:
            with managed as endpoint:
                yield endpoint
            return
    raise DkuRayError(
        f"Cannot reach the Ray cluster {cluster!r}: pass the dashboard URL (e.g. 'http://127.0.0.1:8265', "
        "as shown by the 'Ray Dashboard Port-Forward' macro) or a RayEndpoint. Cluster names are resolved only "
        "once the cluster lifecycle module has registered its resolver (dku_ray.endpoint.register_cluster_resolver)."
    )
