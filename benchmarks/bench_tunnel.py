"""Throughput and small-request latency of the dashboard tunnel against `kubectl port-forward`.

Same run, same kube-apiserver, same kwok "kubelet", same local HTTP server behind the head pod's
port 8265. Paths (each a separate process, so that its CPU time can be read from /proc):

* `kubectl`: `kubectl port-forward pod/<head> P:8265` (the built kubectl; websocket + SPDY streams);
* `tunnel`: `python -m dku_ray cluster dashboard` (the product: spare streams on);
* `tunnel_no_spares`: the same tunnel with spare streams off (what a new connection costs without them);
* `stock_client`: `kubernetes.stream.portforward` relayed with two threads per connection
  (the client's own port-forward helper, for comparison);
* `direct`: the HTTP server itself, no Kubernetes in between (the ceiling).

Measured per run and path: a 50 MB download and upload over HTTP (MB/s), a small request on a
kept-alive connection (ms), and a small request on a new connection each time (ms; with a 20 ms
pause between requests, like a client polling, and back to back). CPU seconds of the forwarder,
kube-apiserver and kwok during the transfers show what limits the throughput.
Prints one JSON document: medians over the runs and ratios tunnel / kubectl.
Targets: throughput at least 0.5x kubectl's, small-request latency within 2x.

    .venv/bin/python benchmarks/bench_tunnel.py [--runs 5] [--size 50000000]
"""
from __future__ import annotations

import argparse
import http.client
import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "python-lib"), str(ROOT)]

BLOCK = os.urandom(1 << 20)
PATHS = ("kubectl", "tunnel", "tunnel_no_spares", "stock_client", "direct")
TICK = os.sysconf("SC_CLK_TCK")


class Handler(http.server.BaseHTTPRequestHandler):
    """GET /ping, GET /blob/<n> (n random-looking bytes), POST /sink (body read and dropped)."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms Nagle / delayed-ACK stall

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/ping":
            self._reply(b"pong")
            return
        size = int(self.path.rsplit("/", 1)[1])
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        view = memoryview(BLOCK)
        while size:
            chunk = min(size, len(BLOCK))
            self.wfile.write(view[:chunk])
            size -= chunk

    def do_POST(self) -> None:  # noqa: N802
        left = int(self.headers["Content-Length"])
        while left:
            data = self.rfile.read1(min(left, 1 << 20))
            if not data:
                return
            left -= len(data)
        self._reply(b"ok")

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def connect(port: int) -> http.client.HTTPConnection:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def download(port: int, size: int) -> float:
    conn = connect(port)
    began = time.perf_counter()
    conn.request("GET", f"/blob/{size}")
    resp = conn.getresponse()
    buf, got = bytearray(1 << 20), 0
    while (n := resp.readinto(buf)) > 0:
        got += n
    conn.close()
    assert got == size, (got, size)
    return size / (time.perf_counter() - began) / 1e6


def upload(port: int, size: int) -> float:
    def body():
        left = size
        while left:
            chunk = min(left, len(BLOCK))
            yield BLOCK[:chunk]
            left -= chunk

    conn = connect(port)
    began = time.perf_counter()
    conn.request("POST", "/sink", body=body(), headers={"Content-Length": str(size)})
    assert conn.getresponse().read() == b"ok"
    conn.close()
    return size / (time.perf_counter() - began) / 1e6


def ping_keepalive(port: int, count: int) -> float:
    conn = connect(port)
    samples = []
    for _ in range(count + 3):
        began = time.perf_counter()
        conn.request("GET", "/ping")
        assert conn.getresponse().read() == b"pong"
        samples.append(time.perf_counter() - began)
    conn.close()
    return 1000 * statistics.median(samples[3:])


def ping_new_connection(port: int, count: int, pause: float) -> float:
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        conn = connect(port)
        conn.request("GET", "/ping", headers={"Connection": "close"})
        assert conn.getresponse().read() == b"pong"
        conn.close()
        samples.append(time.perf_counter() - began)
        time.sleep(pause)
    return 1000 * statistics.median(samples)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen | None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"forwarder exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            conn = connect(port)
            conn.request("GET", "/ping")
            if conn.getresponse().read() == b"pong":
                conn.close()
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing answers on {port}")


def start_forwarders(kubectl: str, kubeconfig: str, namespace: str, pod: str, cluster: str,
                     server_port: int) -> dict[str, tuple[int, subprocess.Popen | None]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python-lib")}
    started: dict[str, tuple[int, subprocess.Popen | None]] = {"direct": (server_port, None)}
    for name in PATHS[:-1]:
        port = free_port()
        if name == "kubectl":
            argv = [kubectl, f"--kubeconfig={kubeconfig}", "-n", namespace, "port-forward", f"pod/{pod}", f"{port}:8265"]
        elif name == "tunnel":
            argv = [sys.executable, "-m", "dku_ray", "cluster", "dashboard", "--kubeconfig", kubeconfig,
                    "--namespace", namespace, "--name", cluster, "--port", str(port)]
        else:
            argv = [sys.executable, __file__, "--serve", name, kubeconfig, namespace, cluster, pod, str(port)]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, env=env, cwd=ROOT)
        wait_listening(port, proc)
        started[name] = (port, proc)
    return started


def serve(mode: str, kubeconfig: str, namespace: str, cluster: str, pod: str, port: int) -> None:
    """Child process: a forwarder variant that the product CLI does not offer; runs until stdin closes."""
    if mode == "tunnel_no_spares":
        from dku_ray.dashboard_tunnel import ClusterRef, open_tunnel

        forwarder = open_tunnel(ClusterRef(kubeconfig, cluster, namespace), port=port, spares=0)
        sys.stdin.read()
        forwarder.close()
        return
    from kubernetes import client, config
    from kubernetes.stream import portforward

    api = config.new_client_from_config(kubeconfig, persist_config=False)
    core, lock = client.CoreV1Api(api), threading.Lock()

    def pipe(src: Any, dst: Any) -> None:
        try:
            while data := src.recv(1 << 20):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def relay(local: socket.socket) -> None:
        with lock:  # portforward() swaps api_client.call_api while it connects: not thread safe
            forward = portforward(core.connect_get_namespaced_pod_portforward, pod, namespace, ports="8265")
        remote = forward.socket(8265)
        threading.Thread(target=pipe, args=(local, remote), daemon=True).start()
        pipe(remote, local)

    def exit_when_stdin_closes() -> None:
        sys.stdin.read()
        os._exit(0)

    listener = socket.create_server(("127.0.0.1", port))
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    while True:
        local, _ = listener.accept()
        threading.Thread(target=relay, args=(local,), daemon=True).start()


def create_head(plane: Any, namespace: str, cluster: str) -> str:
    """A RayCluster object and a pod labelled as its head (no operator needed: the tunnel finds pods by label)."""
    from kubernetes import client

    from dku_ray.cluster_values import parse_values
    from dku_ray.kube_client import KubeTarget, connect
    from dku_ray.render_cluster import render_raycluster

    kube, _ = connect(KubeTarget(str(plane.kubeconfig)))
    core = client.CoreV1Api(kube.api_client)
    core.create_namespace({"metadata": {"name": namespace}}, _preload_content=False)
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", namespace, _preload_content=False)
            break
        except client.exceptions.ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    spec = parse_values(params={"ray_cluster_name": cluster, "namespace": namespace, "ray_num_workers": 0,
                                "auth_mode": "none"}).spec
    kube.apply(render_raycluster(spec, namespace))
    pod = f"{cluster}-head-bench"
    core.create_namespaced_pod(namespace, {
        "metadata": {"name": pod, "labels": {"ray.io/cluster": cluster, "ray.io/node-type": "head"}},
        "spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.60.0",
                                 "ports": [{"containerPort": 8265}]}]}}, _preload_content=False)
    while core.read_namespaced_pod(pod, namespace).status.phase != "Running":
        time.sleep(0.2)
    kube.api_client.close()
    return pod


def measure(path: str, port: int, pids: dict[str, int | None], args: argparse.Namespace) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, run in (("download", download), ("upload", upload)):
        before = {k: cpu_seconds(p) for k, p in pids.items()}
        own = time.process_time()
        out[f"{name}_MBps"] = run(port, args.size)
        out[f"{name}_cpu_s_bench"] = time.process_time() - own  # client + HTTP server, this process
        for key, pid in pids.items():
            out[f"{name}_cpu_s_{key}"] = cpu_seconds(pid) - before[key]
    out["ping_keepalive_ms"] = ping_keepalive(port, args.pings)
    out["ping_new_conn_ms"] = ping_new_connection(port, args.pings, 0.02)
    out["ping_new_conn_burst_ms"] = ping_new_connection(port, args.pings, 0.0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=50_000_000)
    parser.add_argument("--pings", type=int, default=40)
    parser.add_argument("--serve", nargs=6, metavar=("MODE", "KUBECONFIG", "NS", "CLUSTER", "POD", "PORT"))
    args = parser.parse_args()
    if args.serve:
        mode, kubeconfig, namespace, cluster, pod, port = args.serve
        serve(mode, kubeconfig, namespace, cluster, pod, int(port))
        return 0

    from testenv.controlplane import ControlPlane

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    samples: dict[str, list[dict[str, float]]] = {p: [] for p in PATHS}
    with ControlPlane(verbose=False) as plane:
        plane.install_kuberay_crds()
        namespace, cluster = "bench-tunnel", "bench"
        pod = create_head(plane, namespace, cluster)
        handle = plane.forward_pod_port(namespace, {"ray.io/cluster": cluster, "ray.io/node-type": "head"}, 8265,
                                        target_port=server.server_address[1])
        forwarders = start_forwarders(str(plane.kubectl_path), str(plane.kubeconfig), namespace, pod, cluster,
                                      server.server_address[1])
        control = {"apiserver": plane.procs["kube-apiserver"].pid, "kwok": plane.procs["kwok"].pid}
        try:
            for run in range(args.runs):
                order = PATHS[run % len(PATHS):] + PATHS[:run % len(PATHS)]  # rotate: share the noise
                for path in order:
                    port, proc = forwarders[path]
                    pids = {**control, "forwarder": proc.pid if proc else None}
                    samples[path].append(measure(path, port, pids, args))
                print(f"run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
        finally:
            for _, proc in forwarders.values():
                if proc is not None:
                    proc.stdin.close()
                    proc.terminate()
                    proc.wait(timeout=20)
            handle.close()
    server.shutdown()
    print(json.dumps(report(samples, args), indent=2))
    return 0


def report(samples: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> dict[str, Any]:
    medians = {path: {key: round(statistics.median(run[key] for run in runs), 3) for key in runs[0]}
               for path, runs in samples.items()}
    ratio: Callable[[str, str], float] = lambda path, key: round(medians[path][key] / medians["kubectl"][key], 2)
    ratios = {path: {key: ratio(path, key) for key in ("download_MBps", "upload_MBps", "ping_keepalive_ms",
                                                        "ping_new_conn_ms", "ping_new_conn_burst_ms")}
              for path in ("tunnel", "tunnel_no_spares", "stock_client")}
    tunnel = ratios["tunnel"]
    return {
        "benchmark": "dashboard tunnel vs kubectl port-forward",
        "runs": args.runs, "transfer_bytes": args.size, "pings_per_sample": args.pings,
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]},
        "medians": medians,
        "ratios_vs_kubectl": ratios,
        "targets": {
            "throughput_at_least_0.5x": tunnel["download_MBps"] >= 0.5 and tunnel["upload_MBps"] >= 0.5,
            "small_request_latency_within_2x": tunnel["ping_keepalive_ms"] <= 2 and tunnel["ping_new_conn_ms"] <= 2,
        },
    }


if __name__ == "__main__":
    sys.exit(main())
