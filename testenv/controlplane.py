"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (fake nodes/kubelets), plus the real KubeRay operator on demand.

Everything is a local process built from pinned Go modules (see build.sh); nothing runs in a
container and nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Sequence, cast

from kubernetes import client, config

from . import components as comp
from .kube import install_kuberay_crds, install_kwok_crds, kuberay_crd_dir
from .operator import OperatorSupervisor, ThirdPartyOperator
from .pki import Pki, write_kubeconfig
from .portforward import PodPortForwarder, PortForwardHandle
from .procs import ManagedProcess, reap_stale_runs, tail, wait_for
from .versions import BUILD_SCRIPT, Binaries, Versions, binaries, kuberay_module_dir


def ensure_built(bins: Binaries, build_if_missing: bool = True) -> None:
    """Run testenv/build.sh for missing components (a no-op when everything is cached)."""
    missing = bins.missing()
    if not missing:
        return
    if not build_if_missing:
        raise RuntimeError(f"testenv binaries missing for {missing}; run {BUILD_SCRIPT}")
    print(f"[testenv] building missing components {missing} with {BUILD_SCRIPT} "
          "(cold: ~12-15 min on 2 cores, cached afterwards)", file=sys.stderr, flush=True)
    try:
        out: int | None = sys.stderr.fileno()  # show progress live, also under pytest
    except (AttributeError, OSError, ValueError):
        out = None
    subprocess.run(["bash", str(BUILD_SCRIPT), *missing], check=True, stdout=out)


RUN_PREFIX = "dku-ray-testenv-"


def _default_run_root() -> str:
    shm = Path("/dev/shm")  # tmpfs: etcd's writes cost nothing
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else tempfile.gettempdir()


class ControlPlane:
    """Context manager running the whole control plane; see the module docstring."""

    def __init__(self, *, nodes: Sequence[comp.FakeNode] = comp.DEFAULT_NODES, run_dir: Path | None = None, keep_run_dir: bool | None = None, build_if_missing: bool = True,
                 supervise_operator: bool = True, verbose: bool = True) -> None:
        self.versions = Versions.load()  # pinned in testenv/versions.env, as build.sh builds them
        self.bins = binaries(self.versions)
        self.nodes = tuple(nodes)
        self._run_dir_arg = run_dir
        self.keep_run_dir = (os.environ.get("DKU_RAY_TESTENV_KEEP") == "1") if keep_run_dir is None else keep_run_dir
        self.build_if_missing = build_if_missing
        self.supervise_operator = supervise_operator
        self.verbose = verbose
        self.run_dir: Path | None = None
        self.layout: comp.Layout | None = None
        self.procs: dict[str, ManagedProcess] = {}
        self.operator: OperatorSupervisor | None = None
        self.port_forwards: PodPortForwarder | None = None
        self._third_party: ThirdPartyOperator | None = None
        self.failed = False
        self._stopped = False
        self.startup_seconds = 0.0
        self.timings: dict[str, float] = {}  # startup phase -> seconds since start

    # ----------------------------------------------------------------- public attributes
    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (system:masters client certificate, namespace `default`)."""
        assert self.layout is not None, "control plane not started"
        return self.layout.admin_kubeconfig

    @property
    def server(self) -> str:
        assert self.layout is not None, "control plane not started"
        return self.layout.server

    @property
    def kuberay_module_dir(self) -> Path:
        return kuberay_module_dir(self.versions)

    @property
    def crd_dir(self) -> Path:
        """The official KubeRay CRDs: config/crd/bases of the pinned ray-operator module."""
        return kuberay_crd_dir(self.versions)

    @property
    def kubectl_path(self) -> Path:
        return self.bins.kubectl

    def api_client(self) -> client.ApiClient:
        """A fresh ApiClient for the admin kubeconfig; never touches the global default config."""
        return config.new_client_from_config(str(self.kubeconfig), persist_config=False)

    def kubectl(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bins.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
                              capture_output=True, text=True, timeout=timeout, check=check)

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self) -> "ControlPlane":
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.failed = True
        self.stop()

    def _log(self, msg: str) -> None:
        if self.verbose:
            print(f"[testenv] {msg}", file=sys.stderr, flush=True)

    def start(self) -> "ControlPlane":
        ensure_built(self.bins, self.build_if_missing)
        t0 = time.monotonic()
        for attempt in range(1, 4):
            try:
                self._start()
                break
            except BaseException as exc:
                if isinstance(exc, Exception) and attempt < 3 and self._port_clash():
                    # free_port() only reserves nothing: another program took a port meanwhile
                    self._log("a chosen port was taken meanwhile (address already in use): retrying")
                    self._reset()
                    continue
                self.failed = True
                self._log("control plane failed to start")
                self.stop()  # prints the tail of every component's log
                raise
        self.startup_seconds = time.monotonic() - t0
        self._log(f"control plane ready in {self.startup_seconds:.1f}s: {self.server} "
                  f"(kubeconfig {self.kubeconfig}, run dir {self.run_dir}; phases {self.timings})")
        return self

    def _port_clash(self) -> bool:
        if self.run_dir is None:
            return False
        return any("address already in use" in tail(p, 200) for p in (self.run_dir / "logs").glob("*.log"))

    def _reset(self) -> None:
        """Undo a failed start quietly so that it can be retried from scratch."""
        self.stop()
        if self.run_dir is not None and self._run_dir_arg is None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir, self.layout, self._stopped, self.timings = None, None, False, {}

    def _start(self) -> None:
        if self._run_dir_arg is not None:
            self.run_dir = Path(self._run_dir_arg)
            self.run_dir.mkdir(parents=True, exist_ok=True)
        else:
            root = _default_run_root()
            for stale in reap_stale_runs(Path(root), RUN_PREFIX):
                self._log(f"cleaned up leftovers of an interrupted run: {stale}")
            self.run_dir = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=root))
        (self.run_dir / "owner").write_text(f"{os.getpid()}\n")
        t0 = time.monotonic()
        mark = lambda phase: self.timings.__setitem__(phase, round(time.monotonic() - t0, 2))  # noqa: E731
        lay = self.layout = self._make_layout(self.run_dir)
        logs = self.run_dir / "logs"
        logs.mkdir(exist_ok=True)
        mark("pki")

        self._spawn("etcd", comp.etcd_argv(lay), logs)
        self._spawn("kube-apiserver", comp.apiserver_argv(lay), logs)
        # the controller-manager and scheduler retry until the apiserver answers: start them now
        self._spawn("kube-controller-manager", comp.controller_manager_argv(lay), logs)
        self._spawn("kube-scheduler", comp.scheduler_argv(lay), logs)
        wait_for(self._apiserver_ready, timeout=90, interval=0.1, what="kube-apiserver /readyz", check=self.check_alive)
        mark("apiserver")

        api = self.api_client()
        try:
            install_kwok_crds(api, self.versions)
            core = client.CoreV1Api(api)
            for node in self.nodes:
                core.create_node(cast(Any, node.manifest()), _preload_content=False)
            cfg = comp.write_kwok_config(lay, self.run_dir / "kwok.yaml")
            self._spawn("kwok", comp.kwok_argv(lay, cfg), logs)
            wait_for(lambda: self._nodes_ready(core), timeout=60, interval=0.1, what="kwok nodes Ready",
                     check=self.check_alive)
            mark("nodes")
            # pods are refused until kube-controller-manager has created the namespace's SA
            wait_for(lambda: core.read_namespaced_service_account("default", "default", _preload_content=False),
                     timeout=60, interval=0.1, what="ServiceAccount default/default", check=self.check_alive)
            mark("default-sa")
        finally:
            api.close()
        self.port_forwards = PodPortForwarder(self.api_client).start()
        if self.supervise_operator:
            self.operator = OperatorSupervisor(self.api_client, lay, logs, self._log).start()

    def _make_layout(self, run: Path) -> comp.Layout:
        pki = Pki(run / "pki")
        ca = pki.create_ca()
        ports = comp.Ports()
        first_service_ip = "127.96.0.1"
        api_cert = pki.issue("apiserver", "kube-apiserver", server_sans=(
            "IP:127.0.0.1", f"IP:{first_service_ip}", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local"))
        admin = pki.issue("admin", "testenv-admin", ("system:masters",), client=True)
        kcm = pki.issue("kcm", "system:kube-controller-manager", ("system:masters",), client=True)
        sched = pki.issue("scheduler", "system:kube-scheduler", client=True)
        kubelet_client = pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client", client=True)
        kwok_serving = pki.issue("kwok-serving", "kwok", server_sans=("IP:127.0.0.1", "DNS:localhost"))
        sa_key, sa_pub = pki.service_account_keys()
        server = f"https://127.0.0.1:{ports.apiserver}"
        return comp.Layout(
            run_dir=run, bins=self.bins, versions=self.versions, ports=ports, ca=ca, apiserver_cert=api_cert,
            kubelet_client_cert=kubelet_client, kwok_serving_cert=kwok_serving, sa_key=sa_key, sa_pub=sa_pub,
            admin_kubeconfig=write_kubeconfig(run / "kubeconfig", server, ca.cert, admin, user="testenv-admin"),
            kcm_kubeconfig=write_kubeconfig(run / "kcm.kubeconfig", server, ca.cert, kcm, user="kcm"),
            scheduler_kubeconfig=write_kubeconfig(run / "scheduler.kubeconfig", server, ca.cert, sched,
                                                  user="scheduler"),
        )

    def _spawn(self, name: str, argv: list[str], log_dir: Path) -> ManagedProcess:
        assert self.run_dir is not None
        env = dict(os.environ, HOME=str(self.run_dir))  # kwok would otherwise read ~/.kwok/kwok.yaml
        proc = ManagedProcess(name, argv, log_dir, env=env, cwd=self.run_dir, pid_file=self.run_dir / "pids").start()
        self.procs[name] = proc
        return proc

    def check_alive(self) -> None:
        for proc in self.procs.values():
            proc.check_alive()

    def _apiserver_ready(self) -> bool:
        assert self.layout is not None
        ctx = ssl.create_default_context(cafile=str(self.layout.ca.cert))
        admin = self.layout.run_dir / "pki"
        ctx.load_cert_chain(str(admin / "admin.crt"), str(admin / "admin.key"))
        try:
            with urllib.request.urlopen(self.server + "/readyz", context=ctx, timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def _nodes_ready(self, core: client.CoreV1Api) -> bool:
        for node in self.nodes:
            status = core.read_node_status(node.name).status
            conds = (status.conditions if status else None) or []
            if not any(c.type == "Ready" and c.status == "True" for c in conds):
                return False
        return True

    def stop(self) -> None:
        """Stop every process this control plane started (reverse order); safe to call twice."""
        if self._stopped:
            return
        for part in (self.operator, self.port_forwards):
            if part is not None:
                try:
                    part.stop()
                except Exception as exc:  # noqa: BLE001 - keep stopping the rest
                    self._log(f"error stopping {part!r}: {exc!r}")
        self.operator = self.port_forwards = None
        for name in reversed(list(self.procs)):
            self.procs[name].stop()
        if self.failed and self.procs:
            self._log("failure: last log lines of each component:\n" + self.log_tails())
        self.procs.clear()
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir / "etcd-data", ignore_errors=True)
            if self.failed or self.keep_run_dir:
                (self.run_dir / "keep").touch()
                self._log(f"logs kept in {self.run_dir / 'logs'}")
            elif self._run_dir_arg is None:
                shutil.rmtree(self.run_dir, ignore_errors=True)
        self._stopped = self.run_dir is not None

    def log_tails(self, lines: int = 25) -> str:
        if self.run_dir is None:
            return ""
        return "\n".join(f"----- {p.name} -----\n{tail(p, lines)}"
                         for p in sorted((self.run_dir / "logs").glob("*.log")))

    # ----------------------------------------------------------------- KubeRay helpers
    def install_kuberay_crds(self, refresh_controller_manager: bool = True) -> list[str]:
        """Server-side apply the official KubeRay CRDs.

        The garbage collector learns about new kinds only at its 30 s discovery resync, so a
        RayCluster deleted soon after would keep its pods that long.  By default the
        controller-manager is restarted (~1 s) to model CRDs that were installed long ago.
        """
        api = self.api_client()
        try:
            names = install_kuberay_crds(api, self.versions)
        finally:
            api.close()
        if refresh_controller_manager:
            self.restart_controller_manager()
        return names

    def restart_controller_manager(self) -> None:
        """Restart kube-controller-manager (stateless), e.g. so its GC rediscovers API kinds now."""
        assert self.layout is not None and self.run_dir is not None, "control plane not started"
        self.procs.pop("kube-controller-manager").stop()
        self._spawn("kube-controller-manager", comp.controller_manager_argv(self.layout), self.run_dir / "logs")

    def install_operator_as_third_party(self, namespace: str = "kuberay-system", timeout: float = 120) -> str:
        """Install CRDs + RBAC + operator Deployment as a Helm user would; wait until it runs."""
        if self.operator is None:
            raise RuntimeError("the operator supervisor is disabled (supervise_operator=False)")
        self.install_kuberay_crds()
        self._third_party = ThirdPartyOperator(self.api_client, self.versions, namespace)
        self._third_party.install()
        self.operator.wait_running(timeout)
        return namespace

    def uninstall_third_party_operator(self, timeout: float = 60) -> None:
        if self._third_party is not None:
            self._third_party.uninstall()
            self._third_party = None
            if self.operator is not None:
                self.operator.wait_stopped(timeout)

    def forward_pod_port(self, namespace: str, pod_selector_labels: dict[str, str], pod_port: int,
                         target_host: str = "127.0.0.1", *, target_port: int) -> PortForwardHandle:
        """Make port-forward to `pod_port` of any pod matching the labels reach a local TCP address."""
        assert self.port_forwards is not None, "control plane not started"
        return self.port_forwards.add(namespace, pod_selector_labels, pod_port, target_host, target_port)
