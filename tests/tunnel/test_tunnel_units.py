"""The parts of the tunnel that need no cluster: websocket framing, masking, exposure rules, macro params."""
from __future__ import annotations

import os
import socket
import struct

import pytest

from dku_ray import tunnel_stream as ts
from dku_ray.dashboard_macro import DashboardParams, progress_target
from dku_ray.errors import ExposureRefusedError, SpecError
from dku_ray.tunnel_exposure import check_exposure, exposure_statement, is_loopback
from dku_ray.tunnel_pod import ClusterAuth

TOKEN = ClusterAuth(True, "secure")
NONE = ClusterAuth(False)


def server_frame(payload: bytes, opcode: int = ts.OP_BINARY, fin: bool = True, mask: bytes | None = None) -> bytes:
    """A frame as a server sends it (written independently of the code under test)."""
    length = len(payload)
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        head = bytes([first, (0x80 if mask else 0) | length])
    elif length < 65536:
        head = bytes([first, (0x80 if mask else 0) | 126]) + struct.pack("!H", length)
    else:
        head = bytes([first, (0x80 if mask else 0) | 127]) + struct.pack("!Q", length)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def read_client_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Decode masked client frames the way a server does (independent implementation)."""
    frames, pos = [], 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert b1 & 0x80, "client frames must be masked"
        length, pos = b1 & 0x7F, pos + 2
        if length == 126:
            length, pos = struct.unpack("!H", data[pos:pos + 2])[0], pos + 2
        elif length == 127:
            length, pos = struct.unpack("!Q", data[pos:pos + 8])[0], pos + 8
        key, pos = data[pos:pos + 4], pos + 4
        frames.append((b0 & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(data[pos:pos + length]))))
        pos += length
    return frames


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    stream = ts.PodStream(ours, "head-1", 8265)
    theirs.settimeout(5)
    yield stream, theirs
    stream.close()
    theirs.close()


def drain(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        data += sock.recv(size - len(data))
    return data


@pytest.mark.parametrize("size", [0, 1, 3, 4, 125, 126, 65535, 65536, 300_001])
def test_masking_matches_the_rfc_for_every_length(size):
    payload = os.urandom(size)
    key = os.urandom(4)
    expected = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    buf = bytearray(b"??" + payload)  # an odd start offset: the key must restart at `start`
    ts.mask_in_place(buf, 2, 2 + size, key)
    assert bytes(buf[2:]) == expected
    buf2 = bytearray(payload)
    ts._mask_python(buf2, 0, size, key)
    assert bytes(buf2) == expected


def test_data_frames_carry_the_channel_byte_and_are_masked(pair):
    stream, theirs = pair
    data = os.urandom(200_000)
    buf = bytearray(ts.HEADER_ROOM + 1 + len(data))
    buf[ts.HEADER_ROOM + 1:] = data
    stream.start_frame(buf, ts.HEADER_ROOM, len(buf))
    assert stream.wants_write
    while not stream.flush():
        pass
    assert not stream.wants_write
    frames = read_client_frames(drain(theirs, 2 + 8 + 4 + 1 + len(data)))
    assert frames == [(ts.OP_BINARY, b"\x00" + data)]


def test_reading_skips_port_frames_and_splits_data_from_errors(pair):
    stream, theirs = pair
    port = struct.pack("<H", 8265)
    theirs.sendall(server_frame(b"\x00" + port) + server_frame(b"\x01" + port)
                   + server_frame(b"\x00hello ") + server_frame(b"\x00wor", fin=False)
                   + server_frame(b"ld", opcode=ts.OP_CONT) + server_frame(b"\x00!", mask=b"\x01\x02\x03\x04")
                   + server_frame(b"ping?", opcode=ts.OP_PING))
    stream.read_available()
    assert bytes(stream.pending) == b"hello world!" and stream.received == 12
    assert stream.error is None and not stream.failed
    assert stream.wants_write  # the pong
    stream.flush()
    assert read_client_frames(drain(theirs, 2 + 4 + 5)) == [(ts.OP_PONG, b"ping?")]
    theirs.sendall(server_frame(b"\x01error forwarding port 8265: connection refused"))
    stream.read_available()
    assert stream.error == "error forwarding port 8265: connection refused" and stream.failed


def test_a_frame_split_across_reads_is_reassembled(pair):
    stream, theirs = pair
    frame = server_frame(b"\x00" + struct.pack("<H", 8265)) + server_frame(b"\x00" + b"x" * 70_000)
    for start in range(0, len(frame), 999):
        theirs.sendall(frame[start:start + 999])
        stream.read_available()
    assert bytes(stream.pending) == b"x" * 70_000


def test_close_frame_and_eof_end_the_stream(pair):
    stream, theirs = pair
    theirs.sendall(server_frame(struct.pack("!H", 1000), opcode=ts.OP_CLOSE))
    stream.read_available()
    assert stream.closed and not stream.answered


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_addresses_need_no_opt_in(address):
    assert is_loopback(address)
    check_exposure(address, False, NONE, "ns/ray")  # no exception


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "", "10.1.2.3", "192.0.2.2"])
def test_other_addresses_need_opt_in_and_token_auth(address):
    assert not is_loopback(address)
    with pytest.raises(ExposureRefusedError, match="not a loopback address.*CVE-2023-48022.*--allow-remote"):
        check_exposure(address, False, TOKEN, "ns/ray")
    with pytest.raises(ExposureRefusedError, match="has no token auth.*authMode: token"):
        check_exposure(address, True, NONE, "ns/ray")
    check_exposure(address, True, TOKEN, "ns/ray")  # both: allowed
    assert exposure_statement(address, 8265, TOKEN).startswith("EXPOSED: ")


def test_exposure_statements_say_who_can_connect():
    local = exposure_statement("127.0.0.1", 4321, NONE)
    assert "127.0.0.1:4321 only" in local and "other machines cannot" in local and "no token auth" in local
    assert "requires its auth token" in exposure_statement("127.0.0.1", 4321, TOKEN)


def test_macro_params_defaults_and_validation():
    params = DashboardParams.from_config({"k8s_cluster_name": "eks1", "local_port": 8265.0, "duration_minutes": 0.5})
    assert params == DashboardParams("eks1", "ray", None, 8265, "127.0.0.1", False, 30.0)
    assert progress_target({"k8s_cluster_name": "eks1", "duration_minutes": 2}) == (120, "NONE")
    assert progress_target({"k8s_cluster_name": "eks1", "duration_minutes": 0}) is None
    with pytest.raises(SpecError) as err:
        DashboardParams.from_config({"local_port": 70000, "duration_minutes": -1})
    assert err.value.fields == ["k8s_cluster_name", "local_port", "duration_minutes"]
