"""A local TCP tunnel to a Ray cluster's dashboard (and Jobs API), through the Kubernetes API.

    with tunnel(ClusterRef("kubeconfig", "ray", "ml")) as url:
        JobSubmissionClient(url, headers=url.headers).submit_job(...)

Why not `kubectl port-forward --address 0.0.0.0 service/...` as the reference plugin did: that
opens the unauthenticated dashboard, whose Jobs API runs any code (CVE-2023-48022), to everyone
who reaches the DSS host, and dies for good when the head pod restarts. Here:

* the listener binds 127.0.0.1 by default; another address needs `allow_remote=True` *and* a
  cluster with token auth, and the exposure is always stated (`Tunnel.exposure`);
* every connection goes to the head pod found by its labels at that moment, with retries and
  backoff while the head is replaced (see `tunnel_relay` for the replay of unanswered requests);
* a RayCluster that disappears is reported (`Tunnel.check()` raises ClusterNotFoundError);
* `close()` stops every thread and closes every socket; counters feed the macro's reporting.
"""
from __future__ import annotations

import logging
import random
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from .constants import PORT_DASHBOARD
from .errors import ClusterNotFoundError, DkuRayError, KubernetesError
from .kube_rest import Kube
from .tunnel_exposure import check_exposure, exposure_statement, is_loopback, listen, resolve_bind
from .tunnel_pod import ClusterAuth, HeadPod, HeadPodFinder
from .tunnel_pool import SparePool
from .tunnel_relay import GiveUp, Relay
from .tunnel_stats import TunnelStats
from .tunnel_stream import PodStream, StreamOpenError

log = logging.getLogger("dku_ray.tunnel")


@dataclass(frozen=True)
class ClusterRef:
    """Which Ray cluster: a kubeconfig (None: $KUBECONFIG, then ~/.kube/config), its context, the
    RayCluster's name and namespace (None: the context's namespace)."""

    kubeconfig: str | None = None
    name: str = "ray"
    namespace: str | None = None
    context: str | None = None


class TunnelURL(str):
    """The tunnel's URL (a `str`), carrying the headers a Ray client needs and the tunnel itself."""

    tunnel: "Tunnel"

    def __new__(cls, url: str, tunnel: "Tunnel") -> "TunnelURL":
        obj = super().__new__(cls, url)
        obj.tunnel = tunnel
        return obj

    @property
    def auth_token(self) -> str | None:
        return self.tunnel.auth_token

    @property
    def headers(self) -> dict[str, str]:
        return self.tunnel.headers


class Tunnel:
    """Listens on `address:port` and relays each connection to `remote_port` of the head pod."""

    def __init__(self, kube: Kube, name: str, namespace: str, *, port: int = 0, address: str = "127.0.0.1",
                 allow_remote: bool = False, remote_port: int = PORT_DASHBOARD, spares: int = 2,
                 connect_timeout: float = 60.0, check_interval: float = 2.0, max_connections: int = 128,
                 owns_kube: bool = False) -> None:
        self.kube = kube
        self.name = name
        self.namespace = namespace
        self.port = int(port)
        self.address = address
        self.allow_remote = allow_remote
        self.remote_port = remote_port
        self.connect_timeout = connect_timeout
        self.check_interval = check_interval
        self.max_connections = max_connections
        self.exposure = ""
        self.auth = ClusterAuth(False)
        self._owns_kube = owns_kube
        self._finder = HeadPodFinder(kube, name, namespace)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._head_lock = threading.Lock()
        self._head: HeadPod | None = None
        self._last_head: HeadPod | None = None  # the last head seen, to count replacements
        self._head_checked = 0.0
        self._gone: ClusterNotFoundError | None = None
        self._token: str | None = None
        self._listener: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._threads: list[threading.Thread] = []
        self._relays: set[Relay] = set()
        self._pool = SparePool(spares, self._open_to, lambda: None if self._gone else self._head, self._stopping)
        self._started = 0.0
        self._closed = False
        self._count = {"connections": 0, "failed": 0, "reconnections": 0, "head_changes": 0, "up": 0, "down": 0}

    @classmethod
    def for_cluster(cls, cluster: Any, name: str | None = None, namespace: str | None = None,
                    **options: Any) -> "Tunnel":
        """From a `ClusterRef`, or a `RayClusterClient` plus `name`/`namespace`."""
        if isinstance(cluster, ClusterRef):
            from .kube_client import KubeTarget, connect

            kube, default_ns = connect(KubeTarget.from_env(cluster.kubeconfig, cluster.context))
            return cls(kube, name or cluster.name, namespace or cluster.namespace or default_ns, owns_kube=True,
                       **options)
        if hasattr(cluster, "kube") and hasattr(cluster, "default_namespace"):
            return cls(cluster.kube, name or "ray", namespace or cluster.default_namespace, **options)
        raise TypeError(f"tunnel() takes a ClusterRef or a RayClusterClient, not {type(cluster).__name__}")

    # -- public ------------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host = self.address
        if host in ("", "0.0.0.0", "::"):  # a wildcard: this machine reaches it on loopback
            host = "127.0.0.1" if host != "::" else "::1"
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    @property
    def auth_token(self) -> str | None:
        """The cluster's auth token (None without token auth). Secret: never log it."""
        if self._token is None and self.auth.token:
            self._token = self._finder.read_token(self.auth)
        return self._token

    @property
    def headers(self) -> dict[str, str]:
        """HTTP headers for Ray clients: `Authorization: Bearer <token>` when the cluster uses token auth."""
        token = self.auth_token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def start(self) -> "Tunnel":
        """Check the cluster and the exposure, bind, and start serving; raises before binding on refusal."""
        raycluster = self._finder.raycluster()
        self.auth = self._finder.auth(raycluster)
        family, sockaddr = resolve_bind(self.address, self.port)
        check_exposure(self.address, self.allow_remote, self.auth, f"{self.namespace}/{self.name}")
        self._listener = listen(family, sockaddr, self.address, self.port)
        self.port = int(self._listener.getsockname()[1])
        self.exposure = exposure_statement(self.address, self.port, self.auth)
        self._wake = socket.socketpair()
        self._started = time.monotonic()
        try:
            self._token = self._finder.read_token(self.auth)
            self._refresh_head(force=True)
        except (KubernetesError, ClusterNotFoundError):
            self.close()
            raise
        (log.warning if not is_loopback(self.address) else log.info)("Ray dashboard tunnel for %s/%s: %s. %s",
                                                                      self.namespace, self.name, self.url, self.exposure)
        for target, label in ((self._accept_loop, "accept"), (self._watch_loop, "watch")):
            thread = threading.Thread(target=target, name=f"dku-ray-tunnel-{label}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._pool.start()
        return self

    def check(self) -> None:
        """Raise ClusterNotFoundError if the RayCluster was deleted (what a long-running caller polls)."""
        if self._gone is not None:
            raise self._gone

    def stats(self) -> TunnelStats:
        with self._lock:
            relays = list(self._relays)
            count = dict(self._count)
        if self._closed:
            state = "closed"
        elif self._gone is not None:
            state = "cluster gone"
        else:
            state = "open" if self._head is not None else "waiting for the head pod"
        return TunnelStats(self.url, state, (time.monotonic() - self._started) if self._started else 0.0,
                           count["connections"], len(relays), count["failed"],
                           count["reconnections"] + sum(r.recovered for r in relays),
                           self._head.name if self._head else None, count["head_changes"],
                           count["up"] + sum(r.bytes_up for r in relays), count["down"] + sum(r.bytes_down for r in relays),
                           self._pool.hits)

    def close(self, timeout: float = 15.0) -> None:
        """Stop listening, end every connection, join every thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        if self._wake is not None:
            try:
                self._wake[1].send(b"x")
            except OSError:
                pass
        with self._lock:
            relays = list(self._relays)
        for relay in relays:
            relay.interrupt()
        deadline = time.monotonic() + timeout
        for thread in self._threads + [r.thread for r in relays if r.thread is not None]:
            thread.join(max(0.1, deadline - time.monotonic()))
        self._pool.join(max(0.1, deadline - time.monotonic()))
        for sock in ([self._listener] if self._listener else []) + list(self._wake or ()):
            sock.close()
        if self._owns_kube:
            self.kube.api_client.close()
        if self._started:
            log.info("Ray dashboard tunnel %s closed", self.url)

    def __enter__(self) -> "Tunnel":
        return self if self._listener is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Tunnel({self.namespace}/{self.name} at {self.url})"

    # -- listening ---------------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        import select

        assert self._listener is not None and self._wake is not None
        poller = select.poll()
        poller.register(self._listener, select.POLLIN)
        poller.register(self._wake[0], select.POLLIN)
        self._listener.setblocking(False)
        while not self._stopping.is_set():
            poller.poll()
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                if not self._stopping.is_set():
                    log.warning("Tunnel listener error: %s", exc)
                    time.sleep(0.1)
                continue
            self._serve(client)

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            if self._stopping.is_set() or len(self._relays) >= self.max_connections or self._gone is not None:
                why = "cluster gone" if self._gone else "too many connections"
                self._count["failed"] += 1
                client.close()
                log.warning("Tunnel refused a connection: %s", why)
                return
            self._count["connections"] += 1
            relay = Relay(client, self._count["connections"], self._open_for, self._stopping)
            self._relays.add(relay)
        relay.start(self._relay_done)

    def _relay_done(self, relay: Relay) -> None:
        with self._lock:
            self._relays.discard(relay)
            self._count["up"] += relay.bytes_up
            self._count["down"] += relay.bytes_down
            self._count["reconnections"] += relay.recovered
            if relay.stream is None:
                self._count["failed"] += 1

    # -- reaching the head -------------------------------------------------------------------------------
    def _open_to(self, head: HeadPod) -> PodStream:
        return PodStream.open(self.kube.api_client, self.namespace, head.name, self.remote_port,
                              timeout=min(10.0, self.connect_timeout))

    def _open_for(self, relay: Relay, failure: str | None) -> PodStream:
        """A stream for `relay`: a spare when possible, else a new one; retries with backoff.

        `failure` is why the relay's previous stream failed before any answer: then wait a
        little first (the pod may still be starting), and count the time from the first failure.
        """
        now = time.monotonic()
        delay = 0.1
        if failure is not None:
            relay.failures += 1
            relay.failing_since = relay.failing_since or now
            delay = min(0.1 * 2 ** (relay.failures - 1), 2.0)
        deadline = (relay.failing_since or now) + self.connect_timeout
        reason = failure
        while True:
            if reason is not None:
                if time.monotonic() + delay > deadline:
                    raise GiveUp(f"could not reach the Ray head within {self.connect_timeout:.0f} s: {reason}")
                if self._stopping.wait(delay * random.uniform(0.8, 1.2)):
                    raise GiveUp("the tunnel is closing")
                delay = min(delay * 2, 2.0)
            if self._stopping.is_set():
                raise GiveUp("the tunnel is closing")
            if self._gone is not None:
                raise GiveUp(str(self._gone))
            head = self._refresh_head(force=reason is not None, quiet=True)
            if head is None:
                reason = reason or f"no head pod of {self.namespace}/{self.name} is running"
                continue
            stream = self._pool.take(head) if reason is None else None
            try:
                stream = stream or self._open_to(head)
            except StreamOpenError as exc:
                if not exc.retryable:
                    raise GiveUp(str(exc)) from None
                reason = str(exc)
                continue
            if reason is not None:
                relay.retried = True  # counted as a reconnection once the pod side answers
                log.info("Tunnel connection %d: reconnected to pod %s after: %s", relay.number, head.name, reason)
            return stream

    def _refresh_head(self, force: bool = False, quiet: bool = False) -> HeadPod | None:
        """The current head pod; looked up again when forced (rate-limited) or on the watch thread."""
        with self._head_lock:
            if not force or time.monotonic() - self._head_checked < 0.25:
                return self._head
            try:
                head = self._finder.head()
                if head is None:
                    self._finder.raycluster()  # no head: tell "restarting" from "deleted"
            except ClusterNotFoundError as exc:
                if self._gone is None:
                    log.error("Ray dashboard tunnel %s: %s", self.url, exc)
                self._gone, head = exc, None
            except KubernetesError as exc:
                if not quiet:
                    raise
                log.warning("Tunnel: cannot look up the head pod: %s", exc)
                return self._head
            else:
                if self._gone is not None:
                    log.warning("Ray dashboard tunnel %s: the RayCluster exists again", self.url)
                self._gone = None
            self._head_checked = time.monotonic()
            old, last, self._head = self._head, self._last_head, head
            self._last_head = head or last
        if old is not None and (head is None or head.uid != old.uid):
            self._pool.drop_all()
            log.warning("Ray dashboard tunnel %s: head pod %s is gone%s", self.url, old.name,
                        "" if head else "; waiting for a new one")
        if head is not None and (last is None or head.uid != last.uid):
            if last is not None:
                with self._lock:
                    self._count["head_changes"] += 1
            log.info("Ray dashboard tunnel %s: forwarding to head pod %s", self.url, head.name)
        return head

    def _watch_loop(self) -> None:
        while not self._stopping.wait(self.check_interval):
            try:
                self._refresh_head(force=True, quiet=True)
            except DkuRayError as exc:  # never let the watcher die
                log.warning("Tunnel watch: %s", exc)


def open_tunnel(cluster: Any, name: str | None = None, namespace: str | None = None, **options: Any) -> Tunnel:
    """A started Tunnel; the caller must `close()` it. Options: see `Tunnel`."""
    tunnel_ = Tunnel.for_cluster(cluster, name, namespace, **options)
    try:
        return tunnel_.start()
    except BaseException:
        tunnel_.close()
        raise


@contextmanager
def tunnel(cluster: Any, name: str | None = None, namespace: str | None = None, **options: Any) -> Iterator[TunnelURL]:
    """`with tunnel(ClusterRef(...)) as url:` - `url` is a str with `.headers`, `.auth_token`, `.tunnel`."""
    opened = open_tunnel(cluster, name, namespace, **options)
    try:
        yield TunnelURL(opened.url, opened)
    finally:
        opened.close()
