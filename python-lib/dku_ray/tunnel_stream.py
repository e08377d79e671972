"""One TCP connection to a pod's port, carried by one Kubernetes port-forward websocket.

The request is the one `CoreV1Api.connect_get_namespaced_pod_portforward` builds (same path,
same auth through the `ApiClient`, same TLS settings and channel sub-protocols as
`kubernetes.stream.ws_client.create_websocket`). We do not use `kubernetes.stream.portforward`
itself because:

* it swaps `api_client.call_api` while it opens the socket, which is not thread safe: a tunnel
  opens many streams at once while other threads use the same client;
* it has no connect timeout, so a dead API server would hang a stream (and `close()`) for minutes;
* it adds a socket pair hop and a proxy thread per connection. Measured, that costs little
  (benchmarks/README.md: its throughput and per-connection cost are close to ours); the two
  points above are the reasons.

After the handshake we own the socket and speak the (small) websocket framing ourselves,
non-blocking, from the one thread that relays the connection: an `SSLSocket` must not be
read and written from two threads at once (cpython#151508, python-engineio#461).

Port-forward channel protocol (v4, binary): every frame's first byte is the channel, 0 for the
data of the first port and 1 for its errors; the first frame of each channel carries the port
number (2 bytes, little-endian) and is not data.
"""
from __future__ import annotations

import os
import socket
import ssl
import struct
import sys
import time
from collections import deque
from typing import Any, Callable

from kubernetes.client import ApiClient
from kubernetes.stream.ws_client import V4_CHANNEL_PROTOCOL, V5_CHANNEL_PROTOCOL, get_websocket_url, \
    websocket_proxycare

PORTFORWARD_PATH = "/api/v1/namespaces/{namespace}/pods/{name}/portforward"
DATA_CHANNEL, ERROR_CHANNEL = 0, 1
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
HEADER_ROOM = 16  # the longest client frame header is 14 bytes (2 + 8 length + 4 mask)
WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class StreamOpenError(Exception):
    """The port-forward could not be opened; `retryable` says whether trying again may help."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


def _mask_numpy() -> Callable[[bytearray, int, int, bytes], None] | None:
    """XOR masking with numpy when it is there (Ray depends on it): ~10x the pure-Python speed."""
    try:
        import numpy as np
    except ImportError:
        return None

    def mask(buf: bytearray, start: int, end: int, key: bytes) -> None:
        whole = (end - start) // 4
        if whole:
            words = np.frombuffer(buf, dtype=np.uint32, count=whole, offset=start)
            np.bitwise_xor(words, np.frombuffer(key, dtype=np.uint32)[0], out=words)
        for i in range(start + 4 * whole, end):
            buf[i] ^= key[(i - start) % 4]

    return mask


def _mask_python(buf: bytearray, start: int, end: int, key: bytes) -> None:
    length = end - start
    if length:
        stream = int.from_bytes(key * (length // 4 + 1), sys.byteorder) & ((1 << (8 * length)) - 1)
        buf[start:end] = (int.from_bytes(buf[start:end], sys.byteorder) ^ stream).to_bytes(length, sys.byteorder)


_MASK: list[Callable[[bytearray, int, int, bytes], None]] = []


def mask_in_place(buf: bytearray, start: int, end: int, key: bytes) -> None:
    """Apply the websocket client mask to buf[start:end] (the key repeats from `start`)."""
    if not _MASK:
        _MASK.append(_mask_numpy() or _mask_python)
    _MASK[0](buf, start, end, key)


def frame_header(length: int, key: bytes, opcode: int = OP_BINARY) -> bytes:
    """The header of one final, masked client frame of `length` payload bytes."""
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return head + key


def encode_frame(payload: bytes, opcode: int = OP_BINARY) -> bytes:
    """A whole masked client frame; for control frames and replays (the hot path frames in place)."""
    key = os.urandom(4)
    body = bytearray(payload)
    mask_in_place(body, 0, len(body), key)
    return frame_header(len(body), key, opcode) + body


def _connect_websocket(api_client: ApiClient, url: str, headers: dict[str, Any], timeout: float) -> Any:
    """What `ws_client.create_websocket` does, plus a timeout for the TCP, TLS and HTTP handshake."""
    from websocket import WebSocket

    configuration = api_client.configuration
    header = [f"sec-websocket-protocol: {V5_CHANNEL_PROTOCOL},{V4_CHANNEL_PROTOCOL}"]
    for key, value in headers.items():
        if key.lower() == "authorization":
            header.append(f"authorization: {value}")
    if url.startswith("wss://") and configuration.verify_ssl:
        sslopt: dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": configuration.ssl_ca_cert or _certifi()}
        if configuration.assert_hostname is not None:
            sslopt["check_hostname"] = configuration.assert_hostname
    else:
        sslopt = {"cert_reqs": ssl.CERT_NONE}
    if configuration.cert_file:
        sslopt["certfile"] = configuration.cert_file
    if configuration.key_file:
        sslopt["keyfile"] = configuration.key_file
    if configuration.tls_server_name:
        sslopt["server_hostname"] = configuration.tls_server_name
    options: dict[str, Any] = {"header": header, "timeout": timeout}
    if configuration.proxy or configuration.proxy_headers:
        options = websocket_proxycare(options, configuration, url, headers)
    ws = WebSocket(sslopt=sslopt, skip_utf8_validation=True, enable_multithread=False)
    ws.connect(url, **options)
    return ws


def _certifi() -> str:
    import certifi

    return certifi.where()


class PodStream:
    """A connected port-forward to one pod port; driven by the relay's poll loop, never blocking.

    `pending` holds data received for the local side; `error` the pod-side error text (e.g. the
    port refused the connection); `closed` says the websocket ended.
    """

    def __init__(self, sock: socket.socket, pod: str, port: int) -> None:
        self.sock = sock
        self.pod = pod
        self.port = port
        self.opened_at = time.monotonic()
        self.pending = bytearray()
        self.error: str | None = None
        self.closed = False
        self.received = 0  # data bytes received, all time
        self._seen: set[int] = set()
        self._rbuf = bytearray()
        self._chunk = bytearray(256 * 1024)
        self._fragments: list[bytes] = []
        self._queue: deque[memoryview] = deque()  # whole frames, in order; [0] may be partly sent
        sock.setblocking(False)

    @classmethod
    def open(cls, api_client: ApiClient, namespace: str, pod: str, port: int, timeout: float = 10.0) -> "PodStream":
        """Open the websocket (TCP + TLS + HTTP upgrade through the API server to the kubelet)."""
        from websocket import WebSocketBadStatusException, WebSocketException

        _, url, headers, _, _ = api_client.param_serialize(
            "GET", PORTFORWARD_PATH, path_params={"namespace": namespace, "name": pod},
            query_params=[("ports", str(port))], header_params={}, auth_settings=["BearerToken"])
        try:
            ws = _connect_websocket(api_client, get_websocket_url(url), headers, timeout)
        except WebSocketBadStatusException as exc:
            status = int(getattr(exc, "status_code", 0) or 0)
            body = (getattr(exc, "resp_body", b"") or b"").decode("utf-8", "replace")
            raise StreamOpenError(f"port-forward to pod {namespace}/{pod} refused (HTTP {status}): "
                                  f"{_status_message(body)}", status, retryable=status not in (401, 403)) from None
        except (OSError, WebSocketException) as exc:  # refused, timed out, TLS, DNS
            raise StreamOpenError(f"cannot reach the Kubernetes API server for a port-forward to "
                                  f"{namespace}/{pod}: {type(exc).__name__}: {exc}") from None
        sock = ws.sock
        ws.sock = None  # ours now; the WebSocket object must not close or read it
        return cls(sock, pod, port)

    # -- state ---------------------------------------------------------------------------------
    @property
    def answered(self) -> bool:
        """True once the pod side sent at least one data byte (after that, never replay)."""
        return self.received > 0

    @property
    def failed(self) -> bool:
        return self.closed or self.error is not None

    @property
    def wants_write(self) -> bool:
        """Frames wait to be sent (the buffer given to `start_frame` is still in use)."""
        return bool(self._queue)

    def usable(self, max_age: float) -> bool:
        """For a spare stream: still open, no error, not too old (reads what already arrived)."""
        if time.monotonic() - self.opened_at > max_age:
            return False
        self.read_available()
        return not self.failed

    # -- writing -------------------------------------------------------------------------------
    def start_frame(self, buf: bytearray, start: int, end: int) -> None:
        """Queue buf[start:end] as one data frame. buf[start] must be free for the channel byte
        and the HEADER_ROOM bytes before it free for the header; the buffer is masked in place and
        must not be touched until `wants_write` is False again."""
        key = os.urandom(4)
        buf[start] = DATA_CHANNEL
        mask_in_place(buf, start, end, key)
        head = frame_header(end - start, key)
        first = start - len(head)
        buf[first:start] = head
        self._queue.append(memoryview(buf)[first:end])

    def queue_frame(self, frame: bytes) -> None:
        """Queue a frame that is already encoded (replayed data, pong, close)."""
        self._queue.append(memoryview(frame))

    def flush(self) -> bool:
        """Send what can be sent now; True when nothing is left to send.

        After a would-block the same buffer is offered again, as TLS requires.
        """
        queue = self._queue
        try:
            while queue:
                sent = self.sock.send(queue[0])
                if sent < len(queue[0]):
                    queue[0] = queue[0][sent:]
                else:
                    queue.popleft()
        except WOULD_BLOCK:
            return False
        except OSError:
            self.closed = True
            queue.clear()
        return True

    # -- reading -------------------------------------------------------------------------------
    def read_available(self, limit: int = 1 << 20) -> None:
        """Read and decode what the socket has now, until it would block or `limit` bytes wait."""
        if self.closed:
            return
        view = memoryview(self._chunk)
        try:
            while len(self.pending) < limit:
                n = self.sock.recv_into(view)
                if not n:
                    self.closed = True
                    break
                self._rbuf += view[:n]
                self._decode()
        except WOULD_BLOCK:
            pass
        except OSError:
            self.closed = True

    def _decode(self) -> None:
        buf = self._rbuf
        pos = 0
        with memoryview(buf) as view:
            while len(buf) - pos >= 2:
                b0, b1 = buf[pos], buf[pos + 1]
                length, head = b1 & 0x7F, 2
                if length == 126:
                    if len(buf) - pos < 4:
                        break
                    length, head = struct.unpack_from("!H", buf, pos + 2)[0], 4
                elif length == 127:
                    if len(buf) - pos < 10:
                        break
                    length, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
                masked = b1 & 0x80  # servers do not mask, but the format allows it
                if len(buf) - pos < head + (4 if masked else 0) + length:
                    break
                start = pos + head + (4 if masked else 0)
                end = start + length
                opcode = b0 & 0x0F
                if (b0 & 0x80 and opcode == OP_BINARY and not masked and length > 1
                        and buf[start] == DATA_CHANNEL and DATA_CHANNEL in self._seen):
                    self.pending += view[start + 1:end]  # the hot path: one copy
                    self.received += length - 1
                else:
                    payload = bytearray(view[start:end])
                    if masked:
                        mask_in_place(payload, 0, length, bytes(view[start - 4:start]))
                    self._frame(b0 & 0x80, opcode, bytes(payload))
                pos = end
        del buf[:pos]

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.queue_frame(encode_frame(payload, OP_PONG))
            return
        if opcode == OP_PONG:
            return
        if opcode == OP_CLOSE:
            self.queue_frame(encode_frame(payload[:2], OP_CLOSE))
            self.closed = True
            return
        if opcode in (OP_BINARY, OP_TEXT) or (opcode == OP_CONT and self._fragments):
            self._fragments.append(payload)
            if not fin:
                return
            message = b"".join(self._fragments)
            self._fragments.clear()
            self._message(message)

    def _message(self, message: bytes) -> None:
        if not message:
            return
        channel = message[0]
        if channel not in self._seen:  # the first frame of a channel is its port number
            self._seen.add(channel)
            return
        if channel == DATA_CHANNEL:
            self.pending += memoryview(message)[1:]
            self.received += len(message) - 1
        elif channel == ERROR_CHANNEL and len(message) > 1:
            self.error = (self.error or "") + message[1:].decode("utf-8", "replace")

    def close(self) -> None:
        """Best-effort close frame, then close the socket."""
        try:
            if not self.closed and not self._queue:  # never in the middle of a frame
                self.sock.send(encode_frame(struct.pack("!H", 1000), OP_CLOSE))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True


def _status_message(body: str) -> str:
    import json

    try:
        data = json.loads(body)
    except ValueError:
        return body[:300] or "no details"
    return str(data.get("message") or data)[:300] if isinstance(data, dict) else body[:300]
