"""`python -m dku_ray cluster dashboard`: open the tunnel, print the URL, keep it open until Ctrl-C.

The URL goes to stdout (one line, or one JSON object with --json) so that scripts can read it;
the exposure statement and the periodic status go to stderr. The token is never printed: the
command says where to read it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from .dashboard_tunnel import Tunnel, open_tunnel


def run_dashboard(client: Any, name: str, args: argparse.Namespace, out: TextIO | None = None,
                  err: TextIO | None = None, report_every: float = 60.0) -> int:
    """Serve until Ctrl-C or `--duration` seconds; ClusterNotFoundError if the cluster goes away."""
    out = out or sys.stdout
    err = err or sys.stderr
    tunnel = open_tunnel(client, name, getattr(args, "namespace", None), port=args.port or 0,
                         address=args.address or "127.0.0.1", allow_remote=bool(args.allow_remote))
    try:
        _announce(tunnel, bool(getattr(args, "json", False)), out, err)
        _wait(tunnel, args.duration, err, report_every)
    except KeyboardInterrupt:
        print("stopping the tunnel", file=err, flush=True)
    finally:
        tunnel.close()
    print(f"closed: {tunnel.stats().summary()}", file=err, flush=True)
    return 0


def _announce(tunnel: Tunnel, as_json: bool, out: TextIO, err: TextIO) -> None:
    if as_json:
        print(json.dumps({"url": tunnel.url, "port": tunnel.port, "address": tunnel.address,
                          "cluster": f"{tunnel.namespace}/{tunnel.name}", "auth": tunnel.auth.describe(),
                          "exposure": tunnel.exposure}), file=out, flush=True)
    else:
        print(tunnel.url, file=out, flush=True)
    print(tunnel.exposure, file=err)
    if tunnel.auth.token:
        print(f"The dashboard asks for the cluster's token: kubectl -n {tunnel.namespace} get secret "
              f"{tunnel.auth.secret_name} -o jsonpath='{{.data.auth_token}}' | base64 -d", file=err)
    print("Press Ctrl-C to close the tunnel.", file=err, flush=True)


def _wait(tunnel: Tunnel, duration: float | None, err: TextIO, report_every: float) -> None:
    started = last = time.monotonic()
    while duration is None or time.monotonic() - started < duration:
        time.sleep(0.2 if duration is None else max(0.0, min(0.2, duration - (time.monotonic() - started))))
        tunnel.check()
        if time.monotonic() - last >= report_every:
            print(tunnel.stats().summary(), file=err, flush=True)
            last = time.monotonic()
