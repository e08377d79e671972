"""The tunnel against the real control plane: kube-apiserver -> kwok "kubelet" port-forward -> local servers.

The `secure` RayCluster (token auth, real KubeRay operator) reaches a real local Ray head started
with the token KubeRay generated; the `open` one (no auth) reaches a small local HTTP server.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
from pathlib import Path

import pytest

from dku_ray import kube_rest as kr
from dku_ray.errors import ClusterNotFoundError, ExposureRefusedError, PortInUseError
from dku_ray.dashboard_tunnel import ClusterRef, open_tunnel, tunnel
from testenv.local_ray import free_port

from .support import LocalHTTP, blob, get_json, start_cluster, tunnel_threads, wait_for

ROOT = Path(__file__).resolve().parents[2]


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False  # something still listens
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))  # what any server would do next
    return True


def test_dashboard_api_through_the_tunnel_with_the_clusters_token(secure, ray_head, cluster_token):
    import dku_ray

    with dku_ray.tunnel(secure.ref) as url:
        assert url.startswith("http://127.0.0.1:") and url.auth_token == cluster_token
        assert url.headers == {"Authorization": f"Bearer {cluster_token}"}
        assert cluster_token not in repr(url) + repr(url.tunnel) + url.tunnel.exposure + url.tunnel.stats().summary()
        assert "only" in url.tunnel.exposure and "requires its auth token" in url.tunnel.exposure
        version = get_json(url, "/api/version", url.headers)
        assert version["ray_version"] == "2.60.0"
        with pytest.raises(urllib.error.HTTPError) as refused:  # the head really checks the token
            get_json(url, "/api/version")
        assert refused.value.code == 401
        stats = url.tunnel.stats()
        assert stats.state == "open" and stats.connections >= 2 and stats.bytes_down > 100
        assert stats.head_pod == secure.running_head()["metadata"]["name"]


@pytest.mark.slow
def test_job_with_a_working_dir_of_tens_of_mb_runs_through_the_tunnel(secure, ray_head, tmp_path, monkeypatch):
    from ray.job_submission import JobStatus, JobSubmissionClient

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the token comes from url.headers, nothing else
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    payload = os.urandom(24 * 1024 * 1024)  # incompressible: the zip upload really is ~24 MB
    (tmp_path / "payload.bin").write_bytes(payload)
    (tmp_path / "main.py").write_text("import hashlib\nprint('sha', hashlib.sha256(open('payload.bin','rb').read())"
                                      ".hexdigest())\n")
    with tunnel(secure.ref) as url:
        jobs = JobSubmissionClient(url, headers=url.headers)
        job = jobs.submit_job(entrypoint="python main.py", runtime_env={"working_dir": str(tmp_path)})
        status = wait_for(lambda: (s := jobs.get_job_status(job)).is_terminal() and s, 180, "job end", interval=1)
        logs = jobs.get_job_logs(job)
        assert status == JobStatus.SUCCEEDED, logs
        assert f"sha {hashlib.sha256(payload).hexdigest()}" in logs
        assert url.tunnel.stats().bytes_up > len(payload)


def test_byte_exact_transfers_on_many_concurrent_connections(open_cluster):
    body = os.urandom(8 * 1024 * 1024)
    with open_tunnel(open_cluster.ref) as tun:
        def round_trip(i: int) -> tuple[str, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", tun.port, timeout=60)
            conn.request("POST", "/echo", body=body[i:])
            echoed = conn.getresponse()
            digest, data = echoed.getheader("X-Sha256"), echoed.read()
            conn.request("GET", f"/blob/{3_000_000 + i}")
            assert conn.getresponse().read() == blob(3_000_000 + i)
            conn.close()
            return digest, data

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(round_trip, range(8)))
        for i, (digest, data) in enumerate(results):
            assert digest == hashlib.sha256(body[i:]).hexdigest() and data == body[i:]
        assert wait_for(lambda: tun.stats().active == 0, 10, "connections to end")
        stats = tun.stats()
        assert stats.connections == 8 and stats.failed == 0
        sent = sum(len(body) - i for i in range(8))  # request bodies; headers come on top
        assert sent < stats.bytes_up < sent + 8 * 1000
        assert sent + sum(3_000_000 + i for i in range(8)) < stats.bytes_down < sent + 27_000_000


def test_head_pod_replaced_while_the_tunnel_is_open(secure, ray_head, caplog):
    caplog.set_level(logging.INFO, logger="dku_ray.tunnel")
    with tunnel(secure.ref, check_interval=0.5) as url:
        assert get_json(url, "/api/version", url.headers)["ray_version"] == "2.60.0"
        old = secure.running_head()["metadata"]
        secure.clusters.kube.delete(kr.POD, old["name"], secure.namespace)
        # Asked right away, while the old head is going and the new one does not exist yet:
        # the request waits for the new head instead of failing.
        assert get_json(url, "/api/version", url.headers, timeout=90)["ray_version"] == "2.60.0"
        new = wait_for(lambda: (p := secure.running_head()["metadata"])["uid"] != old["uid"] and p, 60, "new head")
        wait_for(lambda: url.tunnel.stats().head_pod == new["name"], 30, "tunnel to follow the new head")
        for _ in range(3):
            assert get_json(url, "/api/version", url.headers)["ray_version"] == "2.60.0"
        stats = url.tunnel.stats()
        assert stats.head_pod_changes >= 1 and stats.state == "open"
        assert f"head pod {old['name']} is gone" in caplog.text
        assert f"forwarding to head pod {new['name']}" in caplog.text


def test_a_request_waits_for_a_head_that_does_not_listen_yet(clusters, tunnel_namespace, control_plane):
    late = start_cluster(clusters, tunnel_namespace, "late", "none", str(control_plane.kubeconfig))
    port = free_port()  # nothing listens there yet: the pod side refuses the connection
    handle = control_plane.forward_pod_port(tunnel_namespace, {"ray.io/cluster": "late", "ray.io/node-type": "head"},
                                            8265, target_port=port)
    server = None
    try:
        with open_tunnel(late.ref) as tun:
            timer = threading.Timer(3.0, lambda: servers.append(LocalHTTP("late-cluster", port)))
            servers: list[LocalHTTP] = []
            timer.start()
            began = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", tun.port, timeout=60)
            conn.request("POST", "/echo", body=b"sent once, before the server existed")
            assert conn.getresponse().read() == b"sent once, before the server existed"
            assert time.monotonic() - began >= 2.5
            timer.join()
            server = servers[0]
            stats = tun.stats()
            assert stats.reconnections == 1 and stats.failed == 0 and stats.connections == 1
    finally:
        handle.close()
        if server is not None:
            server.close()


def test_non_loopback_addresses_are_refused_without_opt_in_and_token_auth(secure, open_cluster):
    port = free_port()
    with pytest.raises(ExposureRefusedError, match="not a loopback address.*CVE-2023-48022"):
        open_tunnel(secure.ref, port=port, address="0.0.0.0")
    with pytest.raises(ExposureRefusedError, match=r"no token auth.*authMode: token"):
        open_tunnel(open_cluster.ref, port=port, address="0.0.0.0", allow_remote=True)
    assert port_is_free(port) and not tunnel_threads()  # refused before binding anything
    with open_tunnel(open_cluster.ref, address="localhost") as tun:  # a loopback name is fine
        assert "no token auth" in tun.exposure


def test_two_tunnels_to_two_clusters_and_a_taken_port(secure, ray_head, open_cluster):
    with open_tunnel(secure.ref) as one, open_tunnel(open_cluster.ref) as two, open_tunnel(secure.ref) as three:
        assert len({one.port, two.port, three.port}) == 3
        assert get_json(one.url, "/api/version", one.headers)["ray_version"] == "2.60.0"
        assert get_json(three.url, "/api/version", three.headers)["ray_version"] == "2.60.0"
        conn = http.client.HTTPConnection("127.0.0.1", two.port, timeout=30)
        conn.request("GET", "/whoami")
        assert conn.getresponse().read() == b"open-cluster"
        with pytest.raises(PortInUseError, match=f"Port {one.port} on 127.0.0.1 is already in use.*0 to get a free one"):
            open_tunnel(open_cluster.ref, port=one.port)


def test_closing_frees_the_port_ends_connections_and_threads(open_cluster):
    tun = open_tunnel(open_cluster.ref)
    port = tun.port
    try:
        idle = socket.create_connection(("127.0.0.1", port), timeout=30)  # a keep-alive connection left open
        idle.sendall(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
        assert recv_until(idle, b"open-cluster")
        downloading = socket.create_connection(("127.0.0.1", port), timeout=30)  # and one mid-download
        downloading.sendall(b"GET /blob/200000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert recv_until(downloading, b"\r\n\r\n")
    finally:
        began = time.monotonic()
        tun.close()
    assert time.monotonic() - began < 10
    idle.settimeout(5)
    assert idle.recv(4096) == b""  # closed by the tunnel
    idle.close()
    downloading.close()
    assert port_is_free(port)
    assert not tunnel_threads(), tunnel_threads()
    assert tun.stats().state == "closed"


def recv_until(sock: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before {marker!r}: {data[:200]!r}"
        data += chunk
    return data


def test_a_deleted_raycluster_is_reported(clusters, tunnel_namespace, control_plane):
    doomed = start_cluster(clusters, tunnel_namespace, "doomed", "none", str(control_plane.kubeconfig))
    with open_tunnel(doomed.ref, check_interval=0.3) as tun:
        tun.check()
        clusters.kube.delete(kr.RAYCLUSTER, "doomed", tunnel_namespace)
        wait_for(lambda: tun.stats().state == "cluster gone", 30, "the tunnel to notice")
        with pytest.raises(ClusterNotFoundError, match="no RayCluster 'doomed'"):
            tun.check()
        client = socket.create_connection(("127.0.0.1", tun.port), timeout=5)
        assert client.recv(10) == b""  # refused at once, not left hanging
        client.close()
    with pytest.raises(ClusterNotFoundError, match="no RayCluster 'doomed'.*start the cluster first"):
        open_tunnel(ClusterRef(str(control_plane.kubeconfig), "doomed", tunnel_namespace))


def test_command_line_prints_the_url_and_stops_on_ctrl_c(secure, ray_head, cluster_token):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python-lib")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dku_ray", "cluster", "dashboard", "--kubeconfig", secure.kubeconfig,
         "--namespace", secure.namespace, "--name", secure.name, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        url = proc.stdout.readline().strip()
        assert url == f"http://127.0.0.1:{port}", proc.stderr.read() if not url else url
        assert get_json(url, "/api/version", {"Authorization": f"Bearer {cluster_token}"})["ray_version"] == "2.60.0"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "only" in err and "kubectl -n" in err and cluster_token not in err
    assert port_is_free(port)


def test_submit_can_resolve_a_cluster_ref_to_a_tunnelled_endpoint(secure, ray_head, cluster_token):
    from dku_ray.cluster_endpoint import as_cluster_ref, cluster_endpoint
    from dku_ray.endpoint import RayEndpoint

    assert as_cluster_ref("http://127.0.0.1:8265") is None  # a URL is used as is
    with cluster_endpoint(secure.ref) as endpoint:  # pod IPs are not routable here: a tunnel
        assert isinstance(endpoint, RayEndpoint)
        assert endpoint.headers == {"Authorization": f"Bearer {cluster_token}"} and cluster_token not in repr(endpoint)
        assert get_json(endpoint.url, "/api/version", endpoint.headers)["ray_version"] == "2.60.0"
        port = int(endpoint.url.rsplit(":", 1)[1])
    assert port_is_free(port)
