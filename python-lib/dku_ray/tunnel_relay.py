"""Relay one accepted local connection to the head pod, in one thread, without blocking.

One thread per connection does both directions with `poll()`, because the port-forward runs
over TLS and an `SSLSocket` must not be used from two threads at once. Reads are large (256 KiB),
frames are built and masked in place, and each side stops reading while the other is behind,
so memory stays bounded (about 1 MiB per connection).

Self-healing: until the pod side has answered, what the client sent is kept (up to
`REPLAY_LIMIT`). If the stream fails before any answer (head pod replaced, its port not
listening yet, an idle spare closed under us), the relay opens a new stream, re-sends the kept
bytes, and the client never notices. Once an answer came, a failure closes the client
connection, as a dropped TCP connection would.
"""
from __future__ import annotations

import logging
import select
import socket
import threading
import time
from typing import Callable

from .tunnel_stream import HEADER_ROOM, WOULD_BLOCK, PodStream, encode_frame

log = logging.getLogger("dku_ray.tunnel")

CHUNK = 256 * 1024
MAX_PENDING = 1 << 20  # bytes waiting for the client before we stop reading the pod side
REPLAY_LIMIT = 1 << 20
FIRST_ANSWER_WAIT = 60.0  # after the client's EOF, how long to wait for a first answer


class GiveUp(Exception):
    """The tunnel could not (or must no longer) reach the head for this connection."""


# (relay, why the previous stream failed or None) -> an open stream; raises GiveUp
Opener = Callable[["Relay", "str | None"], PodStream]


class Relay:
    """One local connection and the stream(s) that carry it."""

    def __init__(self, client: socket.socket, number: int, opener: Opener, stopping: threading.Event,
                 linger: float = 2.0) -> None:
        self.client = client
        self.number = number
        self.opener = opener
        self.stopping = stopping
        self.linger = linger
        self.bytes_up = 0  # from the local client to the pod (written by this relay's thread only)
        self.bytes_down = 0
        self.retried = False  # needed another stream or another try than the first one
        self.recovered = False  # ... and then got an answer: one reconnection
        self.failures = 0  # streams that failed before the pod side answered
        self.failing_since: float | None = None
        self.stream: PodStream | None = None
        self.thread: threading.Thread | None = None

    def start(self, on_done: Callable[["Relay"], None]) -> None:
        self.thread = threading.Thread(target=self._run, args=(on_done,), name=f"dku-ray-tunnel-conn-{self.number}",
                                       daemon=True)
        self.thread.start()

    def interrupt(self) -> None:
        """Wake the relay thread (from another thread) so that it sees `stopping`."""
        try:
            self.client.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _run(self, on_done: Callable[["Relay"], None]) -> None:
        try:
            self.stream = self.opener(self, None)
            self._pump()
        except GiveUp as exc:
            if not self.stopping.is_set():
                log.warning("Tunnel connection %d closed: %s", self.number, exc)
        except Exception:  # noqa: BLE001 - one connection must never take the tunnel down
            log.exception("Tunnel connection %d failed", self.number)
        finally:
            if self.stream is not None:
                self.stream.close()
            try:
                self.client.close()
            except OSError:
                pass
            on_done(self)

    def _reopen(self, why: str, replay: bytes) -> PodStream:
        assert self.stream is not None
        self.stream.close()
        stream = self.opener(self, why)
        for start in range(0, len(replay), CHUNK):
            stream.queue_frame(encode_frame(b"\0" + replay[start:start + CHUNK]))
        return stream

    def _pump(self) -> None:
        client = self.client
        client.setblocking(False)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray(HEADER_ROOM + 1 + CHUNK)
        data = memoryview(buf)[HEADER_ROOM + 1:]
        replay: bytearray | None = bytearray()
        local_eof = False
        last_activity = time.monotonic()
        poller = select.poll()
        while not self.stopping.is_set():
            stream = self.stream
            assert stream is not None
            moved = False
            stream.flush()
            stream.read_available(MAX_PENDING)
            if stream.received and replay is not None:
                replay = None  # the pod side answered: from now on a failure is final
                self.recovered = self.retried
            if stream.pending:
                try:
                    sent = client.send(stream.pending)
                except WOULD_BLOCK:
                    sent = 0
                except OSError:
                    return  # the local client went away
                if sent:
                    del stream.pending[:sent]
                    self.bytes_down += sent
                    moved = True
            if stream.failed and not stream.pending:
                if replay is None or (local_eof and not replay):
                    if stream.error:
                        log.info("Tunnel connection %d: pod %s reported: %s", self.number, stream.pod, stream.error)
                    return
                why = stream.error or f"the port-forward to pod {stream.pod} closed before any answer"
                self.stream = self._reopen(why, bytes(replay))
                continue
            if not local_eof and not stream.wants_write:
                try:
                    n = client.recv_into(data)
                except WOULD_BLOCK:
                    n = -1
                except OSError:
                    return
                if n == 0:
                    local_eof = True
                elif n > 0:
                    self.bytes_up += n
                    if replay is not None:
                        replay += data[:n]
                        if len(replay) > REPLAY_LIMIT:
                            replay = None
                    stream.start_frame(buf, HEADER_ROOM, HEADER_ROOM + 1 + n)
                    moved = True
            now = time.monotonic()
            if moved:
                last_activity = now
                continue
            quiet_for = self.linger if stream.received else FIRST_ANSWER_WAIT
            if local_eof and not stream.wants_write and not stream.pending and now - last_activity > quiet_for:
                return  # the client is done sending and the pod side has gone quiet
            self._wait(poller, stream, local_eof, min(1.0, self.linger) if local_eof else 1.0)

    def _wait(self, poller: select.poll, stream: PodStream, local_eof: bool, timeout: float) -> None:
        client_events = 0
        if not local_eof and not stream.wants_write:
            client_events |= select.POLLIN
        if stream.pending:
            client_events |= select.POLLOUT
        stream_events = select.POLLOUT if stream.wants_write else 0
        if len(stream.pending) < MAX_PENDING and not stream.closed:
            stream_events |= select.POLLIN
        poller.register(self.client, client_events)
        poller.register(stream.sock, stream_events)
        try:
            poller.poll(timeout * 1000)
        finally:
            poller.unregister(self.client)
            poller.unregister(stream.sock)
