"""Spare port-forward streams, opened ahead of time, so that a new local connection starts at once.

Opening a stream costs a TLS handshake and an upgrade through the API server to the kubelet:
about 10 ms here, against ~2 ms for a new stream inside `kubectl port-forward`'s one multiplexed
connection. Browsers and `requests`-based clients (JobSubmissionClient) open a connection per
request, so without spares every small request would pay that. A spare is an idle TCP connection
to the head's port; it is dropped after `max_age` (servers close idle connections), when the head
pod changes, and when the tunnel closes.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from .tunnel_pod import HeadPod
from .tunnel_stream import PodStream, StreamOpenError

log = logging.getLogger("dku_ray.tunnel")


class SparePool:
    """Keeps `size` open streams to the current head pod (more while connections come in bursts:
    each miss raises the target, up to `4 * size`, and it decays by one a second), refilled by
    `fillers` threads."""

    def __init__(self, size: int, open_stream: Callable[[HeadPod], PodStream], current_head: Callable[[], HeadPod | None],
                 stopping: threading.Event, max_age: float = 20.0, fillers: int = 2) -> None:
        self.size = size
        self.target = size
        self.fillers = fillers
        self._opening = 0
        self.max_age = max_age
        self.refill_delay = 0.05
        self._behind = False  # a connection found no spare: refill at once
        self._failures = 0  # spares that failed in a row: the refill backs off
        self._open = open_stream
        self._head = current_head
        self._stopping = stopping
        self._spares: list[PodStream] = []
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._threads: list[threading.Thread] = []
        self.hits = 0
        self.misses = 0

    def start(self) -> None:
        for number in range(self.fillers if self.size > 0 else 0):
            thread = threading.Thread(target=self._fill, name=f"dku-ray-tunnel-spares-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def take(self, head: HeadPod) -> PodStream | None:
        """A ready stream to `head`, or None (then the caller opens one itself)."""
        if self.size <= 0:
            return None
        found = None
        with self._lock:
            while self._spares and found is None:
                spare = self._spares.pop(0)
                if spare.pod == head.name and spare.usable(self.max_age):
                    found = spare
                else:
                    spare.close()
            if found is None:
                self.misses += 1
                self._behind = True
                self.target = min(self.target + 1, 4 * self.size)
            else:
                self.hits += 1
                self._failures = 0  # a live spare: the path works
        self._wanted.set()
        return found

    def drop_all(self) -> None:
        """Close every spare (the head pod changed, or the tunnel closes)."""
        with self._lock:
            spares, self._spares = self._spares, []
        for spare in spares:
            spare.close()
        self._wanted.set()

    def join(self, timeout: float) -> None:
        self._wanted.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        self.drop_all()

    def _fill(self) -> None:
        while not self._stopping.is_set():
            delay = min(0.5 * 2 ** self._failures, 10.0) if self._failures else 0.0
            if not self._wanted.wait(timeout=max(delay, 1.0)):
                with self._lock:  # a quiet second: shrink back towards the base size
                    self.target = max(self.size, self.target - 1)
            self._wanted.clear()
            # Let the connection that just took a spare make its first round trip before competing
            # with it for the CPU (a handshake costs milliseconds of CPU on both ends).
            behind, self._behind = self._behind, False
            if self._stopping.wait(max(delay, 0.0 if behind else self.refill_delay)):
                break
            head = self._head()
            if self._prune(head):  # spares died young (e.g. the port does not listen yet): back off
                self._failures += 1
                continue
            while head is not None and not self._stopping.is_set():
                with self._lock:
                    if len(self._spares) + self._opening >= self.target:
                        break
                    self._opening += 1
                try:
                    stream = self._open(head)
                except StreamOpenError as exc:
                    self._failures += 1
                    log.debug("Could not open a spare stream: %s", exc)
                    break
                finally:
                    with self._lock:
                        self._opening -= 1
                with self._lock:
                    self._spares.append(stream)
        self.drop_all()

    def _prune(self, head: HeadPod | None) -> bool:
        """Drop spares that are too old, dead, or for another pod; True if one had failed."""
        failed = False
        with self._lock:
            keep = []
            for spare in self._spares:
                if head is not None and spare.pod == head.name and spare.usable(self.max_age):
                    keep.append(spare)
                    continue
                if spare.failed:
                    failed = True
                elif spare.pod == (head.name if head else None):
                    self._failures = 0  # lived its whole age: the path works
                spare.close()
            self._spares = keep
        return failed
