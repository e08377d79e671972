"""A real, private Ray head for tests, the demo and benchmarks: `ray start --head --block` on
free loopback ports, in its own temp dir and process group.

Why not `ray stop`: it kills every Ray process on the machine by name, including other
engineers' clusters. We stop only what we started: the process group of our `ray start`, then any
process that still names our `--temp-dir` on its command line.

Why every port is explicit: two heads on one machine otherwise collide on fixed defaults (6379,
8265, 10001 and the dashboard agent's 52365), and the second one fails with "No available agent".
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Mapping

__all__ = ["LocalRayHead", "die_with_parent", "free_port", "ray_client_env"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_port_range(size: int) -> tuple[int, int]:
    """A run of `size` consecutive ports that are free now, for Ray's worker ports."""
    for _ in range(50):
        base = free_port()
        if base + size >= 65000:
            continue
        ok = True
        for port in range(base, base + size):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base, base + size - 1
    raise RuntimeError("no free range of worker ports on 127.0.0.1")


def die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when we die, even by SIGKILL (Linux only).

    The safety net for a test run killed hard: `ray start --block` then stops its cluster and
    moto_server exits, instead of running forever as orphans. libc is loaded here, in the parent,
    so that the child only makes one system call between fork and exec.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def set_pdeathsig() -> None:
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG

    return set_pdeathsig


def ray_client_env(auth_token: str | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a Ray process (head or client) needs to stay on loopback with a known auth mode.

    RAY_AUTH_MODE is always explicit: left unset, Ray 2.60 turns token auth on by itself when
    ~/.ray/auth_token exists, and clients then get HTTP 401.
    """
    env = dict(os.environ if base is None else base)
    # `python` in a job entrypoint must be this interpreter, as it is the image's Python on a real cluster.
    bin_dir = str(Path(sys.executable).parent)
    if not env.get("PATH", "").startswith(bin_dir + os.pathsep):
        env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # else Ray rebinds 127.0.0.1 to the eth0 address
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"  # else `ray start` drains 30 s on SIGTERM
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    if auth_token:
        env["RAY_AUTH_MODE"] = "token"
        env["RAY_AUTH_TOKEN"] = auth_token
    else:
        env["RAY_AUTH_MODE"] = "disabled"
        env.pop("RAY_AUTH_TOKEN", None)
    return env


class LocalRayHead:
    """One single-node Ray cluster owned by the caller; use as a context manager or start()/stop()."""

    def __init__(self, num_cpus: int = 2, num_gpus: int = 0, object_store_memory: int = 400_000_000,
                 auth_token: str | None = None, resources: Mapping[str, float] | None = None,
                 temp_root: str | None = None, startup_timeout: float = 90.0) -> None:
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.object_store_memory = object_store_memory
        self.auth_token = auth_token
        self.resources = dict(resources or {})
        self.startup_timeout = startup_timeout
        # Short path on purpose: Ray puts unix sockets under it (108-byte limit).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="dkray-", dir=temp_root or "/tmp"))
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.temp_dir / "ray-start.log"

    # -- addresses ---------------------------------------------------------------------------
    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['dashboard']}"

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.ports['gcs']}"

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers a Jobs API client needs for this head (the bearer token in token mode)."""
        return {"Authorization": f"Bearer {self.auth_token}"} if self.auth_token else {}

    def client_env(self) -> dict[str, str]:
        return ray_client_env(self.auth_token)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "LocalRayHead":
        worker_lo, worker_hi = _free_port_range(40)
        for name in ("gcs", "dashboard", "agent_http", "agent_grpc", "runtime_env_agent", "metrics",
                     "node_manager", "object_manager", "client_server"):
            port = free_port()
            while port in self.ports.values() or worker_lo <= port <= worker_hi:
                port = free_port()
            self.ports[name] = port
        ray_bin = str(Path(sys.executable).with_name("ray"))
        argv = [
            ray_bin, "start", "--head", "--block", "--disable-usage-stats",
            "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1",
            "--port", str(self.ports["gcs"]),
            "--dashboard-port", str(self.ports["dashboard"]),
            "--dashboard-agent-listen-port", str(self.ports["agent_http"]),
            "--dashboard-agent-grpc-port", str(self.ports["agent_grpc"]),
            "--runtime-env-agent-port", str(self.ports["runtime_env_agent"]),
            "--metrics-export-port", str(self.ports["metrics"]),
            "--node-manager-port", str(self.ports["node_manager"]),
            "--object-manager-port", str(self.ports["object_manager"]),
            "--ray-client-server-port", str(self.ports["client_server"]),
            "--min-worker-port", str(worker_lo), "--max-worker-port", str(worker_hi),
            "--num-cpus", str(self.num_cpus), "--num-gpus", str(self.num_gpus),
            "--object-store-memory", str(self.object_store_memory),
            "--temp-dir", str(self.temp_dir),
        ]
        if self.resources:
            argv += ["--resources", json.dumps(self.resources)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=self.client_env(), start_new_session=True,
                                         preexec_fn=die_with_parent())
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        """Wait for the dashboard *and* the job agent: the first submit fails until the agent registers."""
        deadline = time.monotonic() + self.startup_timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                nodes = self._get_json("/api/v0/nodes")
                alive = [n for n in nodes["data"]["result"]["result"] if n.get("state") == "ALIVE"]
                agents = self._get_json("/api/component_activities")  # answers once the head is wired up
                if alive and agents is not None and self._agent_ready():
                    return
                last = "node or job agent not ready"
            except (OSError, ValueError, KeyError) as exc:
                last = repr(exc)
            time.sleep(0.5)
        raise RuntimeError(f"local Ray head not ready after {self.startup_timeout:.0f}s ({last}):\n{self.log_tail()}")

    def _agent_ready(self) -> bool:
        """The job agent listens on the dashboard agent HTTP port once it has registered."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(1.0)
            return s.connect_ex(("127.0.0.1", self.ports["agent_http"])) == 0

    def _get_json(self, path: str) -> dict:
        req = urllib.request.Request(self.dashboard_url + path, headers=self.headers)
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read().decode())

    def stop(self) -> None:
        """Stop our processes only: our process group, then stragglers that name our temp dir."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            # SIGTERM to `ray start` alone: its reaper then terminates the group in ~2 s.
            # (SIGTERM to the whole group kills the reaper too and leaves `ray start` hanging.)
            try:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if proc is not None:
            _killpg(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._kill_stragglers()
        self.proc = None

    def _kill_stragglers(self, timeout: float = 10.0) -> None:
        marker = str(self.temp_dir)
        deadline = time.monotonic() + timeout
        sig = signal.SIGTERM
        while True:
            pids = self.own_pids(marker)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                if sig == signal.SIGKILL:
                    return
                sig, deadline = signal.SIGKILL, time.monotonic() + 5
            time.sleep(0.3)

    def own_pids(self, marker: str | None = None) -> list[int]:
        """PIDs whose command line mentions our temp dir (Ray passes it to every daemon)."""
        marker = marker or str(self.temp_dir)
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if marker in cmdline:
                pids.append(int(entry))
        return pids

    def cleanup(self) -> None:
        """Remove the temp dir (logs included); call after stop() when the logs are not needed."""
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def __enter__(self) -> "LocalRayHead":
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.stop()
        if exc_type is None:  # keep the logs when something went wrong
            self.cleanup()


def _killpg(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":  # manual use: python -m testenv.local_ray [--token]
    token = "dku-ray-local-token" if "--token" in sys.argv else None
    with LocalRayHead(auth_token=token) as head:
        print(f"Ray head up: dashboard {head.dashboard_url} (temp dir {head.temp_dir}); Ctrl-C to stop", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
