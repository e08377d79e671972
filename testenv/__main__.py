"""`python -m testenv [--operator] [--build-only]`: run the local control plane for a demo.

Prints the kubeconfig path and waits for Ctrl-C; everything is stopped on exit.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .controlplane import ControlPlane, ensure_built
from .versions import binaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testenv", description=__doc__)
    parser.add_argument("--operator", action="store_true",
                        help="also install the KubeRay CRDs and operator (as a third party, in kuberay-system)")
    parser.add_argument("--crds", action="store_true", help="install the KubeRay CRDs")
    parser.add_argument("--build-only", action="store_true", help="only build/check the binaries, then exit")
    args = parser.parse_args(argv)
    if args.build_only:
        ensure_built(binaries())
        return 0
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with ControlPlane() as cp:
        if args.operator:
            cp.install_operator_as_third_party()
        elif args.crds:
            cp.install_kuberay_crds()
        print(f"export KUBECONFIG={cp.kubeconfig}", flush=True)
        print(f"kubectl: {cp.kubectl_path}  (Ctrl-C to stop)", file=sys.stderr, flush=True)
        try:
            done.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
