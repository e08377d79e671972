"""Helpers for the tunnel tests: waiting, a small local HTTP server, the cluster under test."""
from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from dku_ray import kube_rest as kr
from dku_ray.cluster_values import parse_values
from dku_ray.lifecycle import RayClusterClient
from dku_ray.operator import OperatorSettings
from dku_ray.dashboard_tunnel import ClusterRef

T = TypeVar("T")
HEAD = {"ray.io/node-type": "head"}


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # noqa: BLE001 - reported if it never succeeds
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


@dataclass
class RayClusterUnderTest:
    name: str
    namespace: str
    kubeconfig: str
    clusters: RayClusterClient

    @property
    def ref(self) -> ClusterRef:
        return ClusterRef(self.kubeconfig, self.name, self.namespace)

    def head_pods(self) -> list[dict[str, Any]]:
        return self.clusters.kube.list(kr.POD, self.namespace, label_selector=f"ray.io/cluster={self.name},ray.io/node-type=head")

    def running_head(self) -> dict[str, Any]:
        return wait_for(lambda: next((p for p in self.head_pods() if p["status"].get("phase") == "Running"
                                      and not p["metadata"].get("deletionTimestamp")), None), 120, f"{self.name} head pod")


class LocalHTTP:
    """GET /whoami -> the label; GET /blob/<n> -> n deterministic bytes; POST /echo -> the body back,
    with its sha256 in X-Sha256."""

    def __init__(self, label: str, port: int = 0) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path == "/whoami":
                    self._send(label.encode())
                elif self.path.startswith("/blob/"):
                    self._send(blob(int(self.path.rsplit("/", 1)[1])))
                else:
                    self.send_error(404)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                self._send(body, {"X-Sha256": hashlib.sha256(body).hexdigest()})

            def _send(self, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-local-http", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def blob(size: int) -> bytes:
    seed = hashlib.sha256(str(size).encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def get_json(url: str, path: str, headers: dict[str, str] | None = None, timeout: float = 30) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(url + path, headers=headers or {}), timeout=timeout) as resp:
        return json.loads(resp.read())


def tunnel_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("dku-ray-tunnel")]


def start_cluster(clusters: RayClusterClient, namespace: str, name: str, auth_mode: str,
                  kubeconfig: str) -> RayClusterUnderTest:
    spec = parse_values(params={"ray_num_workers": 0, "ray_head_ram": 2, "namespace": namespace,
                                "ray_cluster_name": name, "auth_mode": auth_mode}).spec
    clusters.start(spec, OperatorSettings(install=False), timeout=180)
    return RayClusterUnderTest(name, namespace, kubeconfig, clusters)
