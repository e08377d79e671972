"""The "Ray Dashboard Port-Forward" macro: DSS config in, a running tunnel, an HTML summary out.

The macro runs until it is aborted (or for the chosen duration). A DSS macro only shows its
result at the end, so the URL to open, the exposure and, every `report_every` seconds, the
uptime, connections, reconnections and bytes go to the macro's log; the progress callback gets
the uptime in seconds (against the duration when there is one).
"""
from __future__ import annotations

import html
import logging
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from .errors import Problem, SpecError
from .dashboard_tunnel import ClusterRef, Tunnel, open_tunnel
from .tunnel_exposure import is_loopback
from .tunnel_stats import TunnelStats, format_duration, format_size

log = logging.getLogger("dku_ray.tunnel")


@dataclass(frozen=True)
class DashboardParams:
    """The macro's parameters, checked (names as in runnable.json)."""

    cluster_id: str
    ray_cluster_name: str = "ray"
    namespace: str | None = None
    local_port: int = 0
    bind_address: str = "127.0.0.1"
    allow_non_loopback: bool = False
    duration_s: float | None = None  # None: until aborted

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "DashboardParams":
        problems: list[Problem] = []
        cluster_id = str(config.get("k8s_cluster_name") or "").strip()
        if not cluster_id:
            problems.append(Problem("k8s_cluster_name", "pick the Elastic AI cluster the Ray cluster runs on"))
        name = str(config.get("ray_cluster_name") or "ray").strip()
        port = _number(config.get("local_port"), 0, "local_port", problems)
        if port is not None and (port != int(port) or not 0 <= port <= 65535):
            problems.append(Problem("local_port", f"{port} is not a port number (0 to 65535; 0 picks a free port)"))
        minutes = _number(config.get("duration_minutes"), 0, "duration_minutes", problems)
        if minutes is not None and minutes < 0:
            problems.append(Problem("duration_minutes", "must be 0 (run until aborted) or more"))
        if problems:
            raise SpecError(problems, title="Invalid port-forward settings")
        return cls(cluster_id, name, str(config.get("namespace") or "").strip() or None, int(port or 0),
                   str(config.get("bind_address") or "127.0.0.1").strip(), bool(config.get("allow_non_loopback")),
                   float(minutes) * 60 if minutes else None)


def _number(value: Any, default: float, field: str, problems: list[Problem]) -> float | None:
    if value is None or value == "":
        return default
    try:
        return float(value)  # DSS may send an INT as a float
    except (TypeError, ValueError):
        problems.append(Problem(field, f"{value!r} is not a number"))
        return None


def progress_target(config: Mapping[str, Any]) -> tuple[int, str] | None:
    """(duration in seconds, "NONE") when the macro has a fixed duration; None otherwise."""
    try:
        params = DashboardParams.from_config(config)
    except SpecError:
        return None
    return (max(1, int(params.duration_s)), "NONE") if params.duration_s else None


def run_dashboard_macro(config: Mapping[str, Any], progress: Callable[[Any], None], *, dss: Any = None,
                        stop: threading.Event | None = None, report_every: float = 30.0) -> str:
    """Open the tunnel for the DSS cluster in `config`, keep it open, return the HTML summary."""
    from .dss_cluster import dss_client, kubeconfig_for_dss_cluster

    params = DashboardParams.from_config(config)
    kubeconfig = kubeconfig_for_dss_cluster(dss if dss is not None else dss_client(), params.cluster_id)
    stop = stop or threading.Event()
    with _log_to_stderr(), _stop_on_sigterm(stop):
        tunnel = open_tunnel(ClusterRef(kubeconfig, params.ray_cluster_name, params.namespace),
                             port=params.local_port, address=params.bind_address,
                             allow_remote=params.allow_non_loopback)
        try:
            log.warning("Ray dashboard of %s/%s (DSS cluster %s): open %s", tunnel.namespace, tunnel.name,
                        params.cluster_id, tunnel.url)
            log.warning("%s", tunnel.exposure)
            if not is_loopback(tunnel.address):
                log.warning("From other machines: http://%s:%d", socket.getfqdn(), tunnel.port)
            if tunnel.auth.token:
                log.warning("The dashboard asks for the cluster's token: kubectl -n %s get secret %s -o "
                            "jsonpath='{.data.auth_token}' | base64 -d", tunnel.namespace, tunnel.auth.secret_name)
            ended = _serve(tunnel, params, progress, stop, report_every)
        finally:
            tunnel.close()
        stats = tunnel.stats()
        log.warning("Tunnel closed (%s): %s", ended, stats.summary())
    return summary_html(tunnel, stats, ended)


def _serve(tunnel: Tunnel, params: DashboardParams, progress: Callable[[Any], None], stop: threading.Event,
           report_every: float) -> str:
    """Wait until the duration ends, the macro is stopped, or the cluster disappears (raises)."""
    started = time.monotonic()
    last_report = started
    last_state = ""
    while True:
        now = time.monotonic()
        if params.duration_s is not None and now - started >= params.duration_s:
            return f"the chosen duration of {_minutes(params.duration_s)} ended"
        if stop.wait(min(1.0, params.duration_s - (now - started)) if params.duration_s else 1.0):
            return "stopped on request"
        tunnel.check()  # ClusterNotFoundError when the RayCluster was deleted
        stats = tunnel.stats()
        progress(int(stats.uptime_s))
        if now - last_report >= report_every or stats.state != last_state:
            log.warning("Tunnel: %s", stats.summary())
            last_report, last_state = now, stats.state


def summary_html(tunnel: Tunnel, stats: TunnelStats, ended: str) -> str:
    rows = [
        ("Dashboard URL", tunnel.url),
        ("Ray cluster", f"{tunnel.namespace}/{tunnel.name} ({tunnel.auth.describe()})"),
        ("Who could connect", tunnel.exposure),
        ("Ended because", ended),
        ("Uptime", format_duration(stats.uptime_s)),
        ("Connections", f"{stats.connections} ({stats.failed} failed)"),
        ("Reconnections", str(stats.reconnections)),
        ("Head pod", f"{stats.head_pod or '-'} ({stats.head_pod_changes} change(s) while open)"),
        ("Bytes", f"{format_size(stats.bytes_up)} sent to the cluster, {format_size(stats.bytes_down)} received"),
    ]
    cells = "".join(f"<tr><th style='text-align:left;padding:2px 12px 2px 0'>{html.escape(k)}</th>"
                    f"<td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<div class='dku-ray-tunnel'><h4>Ray dashboard tunnel closed</h4><table>{cells}</table></div>"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


@contextmanager
def _log_to_stderr() -> Iterator[None]:
    """DSS keeps a macro's stderr as its log; show our INFO lines there unless logging is set up."""
    logger = logging.getLogger("dku_ray")
    if logger.handlers or logging.getLogger().handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


@contextmanager
def _stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """Aborting the macro may send SIGTERM: close the tunnel cleanly instead of dying mid-way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
