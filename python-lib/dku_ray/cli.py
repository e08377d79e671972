"""Command line: `python -m dku_ray cluster start|inspect|stop|dashboard ...` with a plain kubeconfig.

The same options as the DSS macros (the flags map to the macros' parameter names), for admins
and CI. Exit codes: 0 done, 1 failed, 2 bad input, 3 timed out / not ready, 4 no such cluster.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from .errors import DkuRayError, Problem, SpecError, WaitTimeoutError

# flag -> flat parameter name of the macros (see cluster_values.FLAT_PARAMS)
_SPEC_FLAGS = {
    "--kuberay-version": "kuberay_version", "--ray-version": "ray_version", "--image-tag": "image_tag",
    "--image-repository": "image_repository", "--head-cpu": "ray_head_cpu", "--head-ram": "ray_head_ram",
    "--head-num-cpus": "ray_head_num_cpus", "--workers": "ray_num_workers", "--worker-cpu": "ray_worker_cpu",
    "--worker-ram": "ray_worker_ram", "--worker-gpu": "ray_worker_gpu", "--min-workers": "ray_worker_min",
    "--max-workers": "ray_worker_max", "--auth-mode": "auth_mode",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m dku_ray", description="Ray clusters on Kubernetes (KubeRay).")
    commands = parser.add_subparsers(dest="command", required=True)
    cluster = commands.add_parser("cluster", help="start, inspect or stop a Ray cluster")
    actions = cluster.add_subparsers(dest="action", required=True)
    for name, help_text in (("start", "create or update a Ray cluster"), ("inspect", "report a Ray cluster's state"),
                            ("stop", "delete a Ray cluster"), ("dashboard", "open a local tunnel to the dashboard")):
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
        sub.add_argument("--context", help="kubeconfig context (default: the current one)")
        sub.add_argument("--namespace", help="namespace (default: the context's, else 'default')")
        sub.add_argument("--name", help="Ray cluster name (default: ray)")
        sub.add_argument("--timeout", type=float, help="seconds to wait (default: 600 for start, 300 for stop)")
        sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
    start = actions.choices["start"]
    start.add_argument("--values", type=Path, help="Helm-style values file (KubeRay ray-cluster chart keys)")
    start.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                       help="override one values key, e.g. worker.replicas=3 (repeatable; wins over --values)")
    for flag, param in _SPEC_FLAGS.items():
        start.add_argument(flag, dest=param, help=f"same as the macro parameter {param}")
    start.add_argument("--autoscaling", action="store_true", default=None, help="enable KubeRay in-tree autoscaling")
    start.add_argument("--no-wait", dest="wait", action="store_false", help="return once applied")
    start.add_argument("--no-install-operator", dest="install_operator", action="store_false",
                       help="fail instead of installing the KubeRay operator when none runs")
    start.add_argument("--operator-source", help="URL template with {version} and {path}, or a local copy of "
                                                 "KubeRay's ray-operator/config directory (air-gapped)")
    start.add_argument("--operator-namespace", default=None, help="namespace for an installed operator")
    start.add_argument("--operator-image", default=None, help="operator image repository (for a mirror registry)")
    stop = actions.choices["stop"]
    stop.add_argument("--remove-operator", action="store_true",
                      help="also remove the KubeRay operator, if dku_ray installed it and no RayCluster is left")
    dashboard = actions.choices["dashboard"]
    dashboard.add_argument("--port", type=int, default=0, help="local port (default: a free one)")
    dashboard.add_argument("--address", default="127.0.0.1", help="local address to bind (default: 127.0.0.1)")
    dashboard.add_argument("--allow-remote", action="store_true",
                           help="allow a non-loopback --address (the dashboard runs code: require token auth)")
    dashboard.add_argument("--duration", type=float, default=None, help="close the tunnel after this many seconds")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except WaitTimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except DkuRayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    from .lifecycle import RayClusterClient
    from . import report_format as fmt

    client = RayClusterClient.from_kubeconfig(args.kubeconfig, args.context)
    name = args.name or "ray"
    if args.action == "start":
        return _start(args, client, fmt)
    if args.action == "inspect":
        report = client.inspect(name, args.namespace)
        print(json.dumps(report.to_dict(), indent=2) if args.json else fmt.report_text(report))
        return 0 if report.exists else 4
    if args.action == "stop":
        result = client.stop(name, args.namespace, remove_operator=args.remove_operator,
                             timeout=args.timeout or 300.0, progress=_progress(args.json))
        print(json.dumps(result.__dict__, indent=2, default=list) if args.json else fmt.stop_text(result))
        return 0
    from .tunnel_cli import run_dashboard  # only when asked for: it starts threads

    return run_dashboard(client, name, args)


def _start(args: argparse.Namespace, client: Any, fmt: Any) -> int:
    from .cluster_values import parse_values
    from .operator import OperatorSettings
    from .operator_manifests import DEFAULT_IMAGE, DEFAULT_NAMESPACE, ManifestSource

    values = _load_values(args.values, args.set)
    params = {p: getattr(args, p) for p in _SPEC_FLAGS.values() if getattr(args, p) is not None}
    if args.name:
        params["ray_cluster_name"] = args.name
    if args.namespace:
        params["namespace"] = args.namespace
    if args.autoscaling:
        params["autoscaling"] = True
    parsed = parse_values(values, params)
    for warning in parsed.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    spec = parsed.spec
    operator = OperatorSettings(install=args.install_operator, version=spec.kuberay_version,
                                source=ManifestSource(args.operator_source) if args.operator_source else ManifestSource(),
                                namespace=args.operator_namespace or DEFAULT_NAMESPACE,
                                image=args.operator_image or DEFAULT_IMAGE)
    result = client.start(spec, operator, wait=args.wait, timeout=args.timeout or 600.0,
                          progress=_progress(args.json), warnings=parsed.warnings)
    if args.json:
        print(json.dumps({"name": result.name, "namespace": result.namespace, "change": result.change,
                          "operator": list(result.operator_actions), "warnings": list(result.warnings),
                          "report": result.report.to_dict() if result.report else None}, indent=2))
    else:
        print(fmt.start_text(result))
    return 0


def _load_values(path: Path | None, overrides: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SpecError([Problem("--values", f"cannot read {path}: {exc}")]) from None
        if not isinstance(values, dict):
            raise SpecError([Problem("--values", f"{path} must hold a mapping of keys to values")])
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SpecError([Problem("--set", f"{item!r} is not PATH=VALUE, e.g. worker.replicas=3")])
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw) if raw else ""
    return values


def _progress(quiet: bool) -> Callable[[str, float], None]:
    started = time.monotonic()

    def report(message: str, fraction: float) -> None:
        if not quiet:
            print(f"[{time.monotonic() - started:6.1f}s {fraction:4.0%}] {message}", file=sys.stderr, flush=True)

    return report
