from __future__ import annotations

import hashlib
import hmac

import pytest

from ingest.rtmp import RtmpProtocolError
from ingest.rtmp.handshake import (
    HANDSHAKE_SIZE,
    ClientHandshake,
    ServerHandshake,
)
from tests.ingest.rtmp.rtmp_helpers import seeded

FP_KEY = b"Genuine Adobe Flash Player 001"
FMS_KEY = b"Genuine Adobe Flash Media Server 001"
TAIL = bytes.fromhex("f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")


def _sha(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def ffmpeg_style_c1(seed: int = 5, base: int = 8) -> tuple[bytes, int]:
    """A digest C1 built the way rtmpproto.c's rtmp_handshake_imprint_with_digest does,
    written independently of the module under test."""
    block = bytearray(seeded(seed)(HANDSHAKE_SIZE))
    block[0:4] = bytes(4)
    block[4:8] = bytes((9, 0, 124, 2))
    pos = sum(block[base : base + 4]) % 728 + base + 4
    block[pos : pos + 32] = _sha(FP_KEY, bytes(block[:pos] + block[pos + 32 :]))
    return bytes(block), pos


def ffmpeg_validates(s1: bytes, s2: bytes, client_digest: bytes) -> bool:
    """rtmpproto.c's check of a server reply when it plays: the S1 digest at scheme 772
    or 8 with the 36-byte FMS key, then S2 signed with HMAC(full FMS key, C1 digest)."""
    for base in (772, 8):
        pos = sum(s1[base : base + 4]) % 728 + base + 4
        if _sha(FMS_KEY, s1[:pos] + s1[pos + 32 :]) == s1[pos : pos + 32]:
            break
    else:
        return False
    digest = _sha(FMS_KEY + TAIL, client_digest)
    return _sha(digest, s2[:-32]) == s2[-32:]


def test_plain_handshake_echoes_c1() -> None:
    hs = ServerHandshake(seeded(1), epoch=0x01020304)
    c1 = bytes(8) + seeded(9)(HANDSHAKE_SIZE - 8)
    assert hs.receive_data(b"\x03" + c1) is None
    out = hs.data_to_send()
    assert len(out) == 1 + 2 * HANDSHAKE_SIZE
    assert out[0] == 3
    s1, s2 = out[1 : 1 + HANDSHAKE_SIZE], out[1 + HANDSHAKE_SIZE :]
    assert s1[:4] == bytes((1, 2, 3, 4))
    assert s1[4:8] == bytes(4)
    assert s2 == c1
    assert not hs.digest
    rest = hs.receive_data(s1 + b"\x02more")
    assert rest == b"\x02more"
    assert hs.complete
    assert hs.c2_ok


def test_digest_handshake_satisfies_ffmpeg_check() -> None:
    for base in (8, 772):
        c1, pos = ffmpeg_style_c1(base=base)
        hs = ServerHandshake(seeded(3))
        hs.receive_data(b"\x03" + c1)
        out = hs.data_to_send()
        s1, s2 = out[1 : 1 + HANDSHAKE_SIZE], out[1 + HANDSHAKE_SIZE :]
        assert hs.digest
        assert s1[4] >= 3  # FFmpeg only checks digests when the server version is >= 3
        assert ffmpeg_validates(s1, s2, c1[pos : pos + 32])
        # FFmpeg, when publishing, simply echoes S1 as C2.
        assert hs.receive_data(s1) == b""
        assert hs.c2_ok


def test_invalid_digest_falls_back_to_plain() -> None:
    c1, pos = ffmpeg_style_c1()
    broken = bytearray(c1)
    broken[pos] ^= 0xFF
    hs = ServerHandshake(seeded(3))
    hs.receive_data(b"\x03" + bytes(broken))
    out = hs.data_to_send()
    assert not hs.digest
    assert out[1 + HANDSHAKE_SIZE :] == bytes(broken)


def test_client_and_server_agree_on_both_schemes() -> None:
    for scheme in (8, 772):
        client = ClientHandshake(seeded(4), epoch=1, digest=True, scheme=scheme)
        server = ServerHandshake(seeded(5))
        server.receive_data(client.initial_bytes())
        c2, rest = client.receive_data(server.data_to_send())
        assert client.server_verified
        assert rest == b""
        assert server.receive_data(c2 + b"x") == b"x"
        assert server.digest
        assert server.c2_ok


def test_byte_at_a_time_gives_same_output() -> None:
    client = ClientHandshake(seeded(4))
    data = client.initial_bytes()
    whole = ServerHandshake(seeded(6))
    whole.receive_data(data)
    split = ServerHandshake(seeded(6))
    for i in range(len(data)):
        assert split.receive_data(data[i : i + 1]) is None
    assert split.data_to_send() == whole.data_to_send()


@pytest.mark.parametrize("first", [0, 6, 0x47, 0xFF])
def test_bad_version_rejected_on_first_byte(first: int) -> None:
    hs = ServerHandshake(seeded(1))
    with pytest.raises(RtmpProtocolError) as info:
        hs.receive_data(bytes((first,)))
    assert info.value.reason == "bad_version"


def test_random_source_length_is_checked() -> None:
    hs = ServerHandshake(lambda n: b"short")
    with pytest.raises(ValueError, match="random source"):
        hs.receive_data(b"\x03" + bytes(HANDSHAKE_SIZE))


def test_client_rejects_plain_server_when_it_wants_a_digest() -> None:
    client = ClientHandshake(seeded(4), digest=True)
    reply = b"\x03" + bytes(HANDSHAKE_SIZE) + client.c1
    with pytest.raises(RtmpProtocolError) as info:
        client.receive_data(reply)
    assert info.value.reason == "bad_server_digest"


def test_client_rejects_bad_s2_signature_and_bad_s0() -> None:
    client = ClientHandshake(seeded(4), digest=True)
    server = ServerHandshake(seeded(5))
    server.receive_data(client.initial_bytes())
    reply = bytearray(server.data_to_send())
    reply[-1] ^= 1
    with pytest.raises(RtmpProtocolError) as info:
        client.receive_data(bytes(reply))
    assert info.value.reason == "bad_server_signature"
    plain = ClientHandshake(seeded(4), digest=False)
    with pytest.raises(RtmpProtocolError) as info:
        plain.receive_data(b"\x06" + bytes(2 * HANDSHAKE_SIZE))
    assert info.value.reason == "bad_version"


def test_plain_client_against_server() -> None:
    client = ClientHandshake(seeded(4), digest=False)
    server = ServerHandshake(seeded(5))
    server.receive_data(client.initial_bytes())
    assert not server.digest
    c2, _ = client.receive_data(server.data_to_send())
    assert client.server_verified
    assert server.receive_data(c2) == b""
    assert server.c2_ok
    assert client.receive_data(b"late") == (b"", b"late")
