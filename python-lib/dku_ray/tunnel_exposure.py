"""Who can reach the dashboard tunnel, decided before anything listens, and said plainly.

The Ray dashboard's Jobs API runs arbitrary code on the cluster, with the pods' cloud
credentials (ShadowRay, CVE-2023-48022). So a non-loopback listener needs two things: an
explicit opt-in, and a cluster that checks a token (KubeRay `authOptions.mode: token`).
"""
from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

from .errors import ExposureRefusedError, PortInUseError, TunnelError
from .tunnel_pod import ClusterAuth

CVE = "CVE-2023-48022"


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None


def is_loopback(address: str) -> bool:
    """True when only this machine can connect: 127.0.0.0/8, ::1 or a name resolving only to those."""
    ip = _ip(address)
    if ip is not None:
        return ip.is_loopback
    if not address:
        return False
    try:
        infos = socket.getaddrinfo(address, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def resolve_bind(address: str, port: int) -> tuple[int, tuple[Any, ...]]:
    """(family, sockaddr) to bind; TunnelError for a bad port or an unknown name."""
    if not 0 <= int(port) <= 65535:
        raise TunnelError(f"Local port {port} is not between 0 and 65535 (0 picks a free port).")
    ip = _ip(address)
    if ip is not None:
        return (socket.AF_INET6, (str(ip), port, 0, 0)) if ip.version == 6 else (socket.AF_INET, (str(ip), port))
    try:
        info = socket.getaddrinfo(address or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except OSError as exc:
        raise TunnelError(f"Cannot listen on {address!r}: {exc}. Use 127.0.0.1 (the default) or an IP "
                          "address of this machine.") from None
    return info[0], info[4]


def check_exposure(address: str, allow_remote: bool, auth: ClusterAuth, cluster: str) -> None:
    """Refuse (ExposureRefusedError) a non-loopback address without opt-in or without token auth."""
    if is_loopback(address):
        return
    where = address or "all addresses"
    if not allow_remote:
        raise ExposureRefusedError(
            f"Refusing to listen on {where}: it is not a loopback address, so anyone who can reach this machine "
            f"would reach the Ray dashboard and its Jobs API, which runs any code on the cluster ({CVE}). Keep "
            "127.0.0.1 and open it from your own machine with `ssh -L <port>:127.0.0.1:<port> <this host>`, or opt "
            "in explicitly (macro: 'Allow access from other machines'; command line: --allow-remote; Python: "
            "allow_remote=True), which also requires token auth on the Ray cluster.")
    if not auth.token:
        raise ExposureRefusedError(
            f"Refusing to expose the Ray dashboard of {cluster} on {where}: the cluster has no token auth, so "
            f"anyone reaching this port could run code on it ({CVE}). Enable token auth: set `authMode: token` "
            "in the cluster's values (Start macro / `cluster start --auth-mode token`; needs KubeRay v1.5.1+ and "
            "Ray 2.52+), restart the cluster, and try again. Or keep the address 127.0.0.1.")


def exposure_statement(address: str, port: int, auth: ClusterAuth) -> str:
    """One plain sentence on who can reach the tunnel and what protects the cluster."""
    guard = ("The cluster requires its auth token for the dashboard and the Jobs API"
             f" ({auth.describe()})." if auth.token else
             "The cluster has no token auth: whoever reaches this port can submit jobs, i.e. run code on it.")
    if is_loopback(address):
        return (f"Listening on {address}:{port} only: programs on this machine can connect, other machines "
                f"cannot (use `ssh -L {port}:127.0.0.1:{port} <this host>` to open it from yours). {guard}")
    return (f"EXPOSED: listening on {address or '*'}:{port}: anyone who can reach this machine on port {port} "
            f"reaches the Ray dashboard and Jobs API. {guard}")


def listen(family: int, sockaddr: tuple[Any, ...], address: str, port: int) -> socket.socket:
    """A listening socket; a taken port is a PortInUseError that says what to do."""
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # not SO_REUSEPORT: a taken port must fail
    try:
        listener.bind(sockaddr)
        listener.listen(64)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"Port {port} on {address} is already in use (another dashboard tunnel, another user's macro, "
                "or another program). Choose another local port, or 0 to get a free one.") from None
        if exc.errno == errno.EACCES:
            raise TunnelError(f"Not allowed to listen on port {port}: ports below 1024 need privileges. Choose a "
                              "port above 1024, or 0 for a free one.") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise TunnelError(f"{address} is not an address of this machine. Use 127.0.0.1, or one of this "
                              "machine's addresses.") from None
        raise TunnelError(f"Cannot listen on {address}:{port}: {exc}") from None
    return listener
