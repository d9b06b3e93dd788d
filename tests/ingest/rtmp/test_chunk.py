from __future__ import annotations

import struct
import sys

import pytest

from ingest.rtmp import RtmpProtocolError, chunk
from ingest.rtmp.chunk import (
    MAX_BUFFERED_BYTES,
    MAX_CHUNK_STREAMS,
    MAX_MESSAGE_SIZE,
    ChunkEncoder,
    RawMessage,
)
from ingest.rtmp.speedups import compiled_decoder

# Replaced per test by `decoder_impl`: every test here runs against both decoders.
ChunkDecoder = chunk.ChunkDecoder


@pytest.fixture(autouse=True, params=["python", "compiled"])
def decoder_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """chunk.py's decoder (the reference) and its compiled twin (_chunk_c.pyx)."""
    cls = chunk.ChunkDecoder
    if request.param == "compiled":
        compiled = compiled_decoder()
        assert compiled is not None, "the compiled decoder was not built (./dev install does)"
        cls = compiled
    monkeypatch.setattr(sys.modules[__name__], "ChunkDecoder", cls)


def fmt0(csid: int, ts: int, length: int, type_id: int, sid: int) -> bytes:
    """A fmt 0 header written by hand (1-byte basic header)."""
    ext = ts >= 0xFFFFFF
    field = 0xFFFFFF if ext else ts
    hdr = bytes((csid,)) + field.to_bytes(3, "big") + length.to_bytes(3, "big")
    hdr += bytes((type_id,)) + struct.pack("<I", sid)
    return hdr + (struct.pack(">I", ts) if ext else b"")


def decode_all(
    data: bytes, *, step: int = 0, decoder: ChunkDecoder | None = None
) -> list[RawMessage]:
    dec = decoder or ChunkDecoder()
    out: list[RawMessage] = []
    pieces = [data] if not step else [data[i : i + step] for i in range(0, len(data), step)]
    for piece in pieces:
        dec.receive_data(piece)
        while (msg := dec.next_message()) is not None:
            out.append(msg)
    return out


def reason(data: bytes, *, step: int = 0) -> str:
    with pytest.raises(RtmpProtocolError) as info:
        decode_all(data, step=step)
    return info.value.reason


@pytest.mark.parametrize("csid", [2, 3, 63, 64, 65, 319, 320, 321, 65599])
@pytest.mark.parametrize("size", [0, 1, 127, 128, 129, 300, 4096])
def test_round_trip_csids_and_sizes(csid: int, size: int) -> None:
    enc = ChunkEncoder()
    payload = bytes(range(256)) * (size // 256 + 1)
    data = enc.encode(csid, 1234, 9, 1, payload[:size])
    for step in (0, 1, 7):
        (msg,) = decode_all(data, step=step)
        assert msg == RawMessage(csid, 1234, 9, 1, payload[:size])


def test_basic_header_forms_on_the_wire() -> None:
    enc = ChunkEncoder()
    assert enc.encode(63, 0, 8, 0, b"")[0] == 63
    two = enc.encode(64, 0, 8, 0, b"")
    assert two[:2] == b"\x00\x00"
    three = enc.encode(65599, 0, 8, 0, b"")
    assert three[:3] == b"\x01\xff\xff"
    with pytest.raises(ValueError, match="chunk stream id"):
        enc.encode(1, 0, 8, 0, b"")
    with pytest.raises(ValueError, match="24 bits"):
        enc.encode(3, 0, 8, 0, bytes(0x1000000))


def test_delta_headers_accumulate() -> None:
    # fmt 0 at 1000, fmt 1 +40 (new length), fmt 2 +40, fmt 3 reuses +40.
    data = fmt0(4, 1000, 2, 8, 1) + b"ab"
    data += b"\x44" + (40).to_bytes(3, "big") + (3).to_bytes(3, "big") + b"\x08" + b"cde"
    data += b"\x84" + (40).to_bytes(3, "big") + b"fgh"
    data += b"\xc4" + b"ijk"
    msgs = decode_all(data)
    assert [(m.timestamp, m.payload) for m in msgs] == [
        (1000, b"ab"),
        (1040, b"cde"),
        (1080, b"fgh"),
        (1120, b"ijk"),
    ]
    assert all(m.stream_id == 1 and m.type_id == 8 for m in msgs)


def test_fmt3_after_fmt0_uses_the_fmt0_timestamp_as_delta() -> None:
    # Spec 5.3.1.2.4, FFmpeg and librtmp readers: the "delta" after fmt 0 is its time.
    data = fmt0(4, 100, 1, 8, 1) + b"a" + b"\xc4" + b"b"
    assert [m.timestamp for m in decode_all(data)] == [100, 200]


def test_timestamp_wraps_at_32_bits() -> None:
    data = fmt0(4, 0xFFFFFFF0, 1, 8, 1) + b"a"
    data += b"\x84" + (0x20).to_bytes(3, "big") + b"b"
    assert [m.timestamp for m in decode_all(data)] == [0xFFFFFFF0, 0x10]


@pytest.mark.parametrize("repeat", [True, False])
def test_extended_timestamp_on_continuation_chunks(repeat: bool) -> None:
    """FFmpeg repeats the 4 bytes on fmt 3 continuation chunks, OBS's librtmp does not;
    both must decode the same."""
    # 280 bytes, 3 chunks. (A continuation starting with 01 00 00 00, the timestamp
    # itself, would be misread from an OBS-style writer: the documented 2**-32 case.)
    payload = bytes(range(200)) + b"\x02\x00\x00\x00" * 20
    enc = ChunkEncoder(repeat_extended=repeat)
    data = enc.encode(6, 0x01000000, 9, 1, payload)
    chunks = len(data) - len(payload) - 16
    assert chunks == (2 * 5 if repeat else 2 * 1)
    for step in (0, 1, 3):
        (msg,) = decode_all(data, step=step)
        assert msg.payload == payload
        assert msg.timestamp == 0x01000000


def test_continuation_payload_that_looks_like_the_timestamp_is_payload_when_absent() -> None:
    # OBS-style continuation whose payload starts with bytes that are not the timestamp.
    payload = b"\x00" * 128 + b"\x01\x00\x00\x01" + b"z" * 10
    data = ChunkEncoder(repeat_extended=False).encode(6, 0x01000000, 9, 1, payload)
    (msg,) = decode_all(data)
    assert msg.payload == payload


def test_fmt3_new_message_after_extended_header_reads_the_extended_field() -> None:
    data = fmt0(4, 0x01000000, 1, 8, 1) + b"a"
    data += b"\xc4" + struct.pack(">I", 0x01000000) + b"b"
    msgs = decode_all(data)
    assert [m.timestamp for m in msgs] == [0x01000000, 0x02000000]


def test_compressed_encoder_round_trip_with_extended_deltas() -> None:
    enc = ChunkEncoder(compress=True)
    stamps = [0, 33, 66, 99, 99, 0x01000000, 0x02000000, 0x03000000, 5]
    data = b"".join(enc.encode(6, ts, 9, 1, bytes(300)) for ts in stamps)
    data += enc.encode(6, 10, 9, 2, b"other stream")
    for step in (0, 1):
        msgs = decode_all(data, step=step)
        assert [m.timestamp for m in msgs] == [*stamps, 10]
        assert msgs[-1].stream_id == 2


def test_interleaved_messages_on_two_chunk_streams() -> None:
    audio = bytes(range(200))
    video = bytes(reversed(range(250)))
    a = fmt0(4, 10, len(audio), 8, 1)
    v = fmt0(6, 20, len(video), 9, 1)
    data = a + audio[:128] + v + video[:128] + b"\xc4" + audio[128:] + b"\xc6" + video[128:]
    msgs = decode_all(data)
    assert [(m.csid, m.payload) for m in msgs] == [(4, audio), (6, video)]


def test_peer_chunk_size_applies_to_following_chunks() -> None:
    enc = ChunkEncoder()
    data = enc.encode(2, 0, 1, 0, struct.pack(">I", 4096))
    enc.set_chunk_size(4096)
    data += enc.encode(6, 0, 9, 1, bytes(5000))
    dec = ChunkDecoder()
    msgs = decode_all(data, decoder=dec)
    assert dec.chunk_size == 4096
    assert [len(m.payload) for m in msgs] == [4, 5000]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (0x7FFFFFFF, "chunk_size_too_large"),
        (0x1000001, "chunk_size_too_large"),
        (0, "bad_chunk_size"),
        (0x80000080, "bad_chunk_size"),
    ],
)
def test_hostile_chunk_sizes(value: int, why: str) -> None:
    data = fmt0(2, 0, 4, 1, 0) + struct.pack(">I", value)
    assert reason(data) == why


def test_short_set_chunk_size_body() -> None:
    assert reason(fmt0(2, 0, 2, 1, 0) + b"\x00\x10") == "bad_control_message"


def test_abort_drops_the_partial_message() -> None:
    dec = ChunkDecoder()
    data = fmt0(6, 0, 300, 9, 1) + bytes(128)
    data += fmt0(2, 0, 4, 2, 0) + struct.pack(">I", 6)  # Abort csid 6
    data += fmt0(6, 40, 3, 9, 1) + b"new"
    msgs = decode_all(data, decoder=dec)
    assert [(m.type_id, m.payload) for m in msgs] == [(2, b"\x00\x00\x00\x06"), (9, b"new")]
    assert dec.buffered_message_bytes == 0
    dec.abort(99)  # unknown chunk stream: nothing to do


def test_message_announcing_16_mib_is_refused_at_once() -> None:
    header = fmt0(6, 0, 0xFFFFFF, 9, 1)
    dec = ChunkDecoder()
    dec.receive_data(header)  # no payload byte sent
    with pytest.raises(RtmpProtocolError) as info:
        dec.next_message()
    assert info.value.reason == "message_too_large"
    assert MAX_MESSAGE_SIZE < 0xFFFFFF


def test_csid_flood_is_capped() -> None:
    data = b"".join(
        b"\x01" + (i - 64).to_bytes(2, "little") + fmt0(0, 0, 0, 8, 1)[1:]
        for i in range(65599, 65599 - 1000, -1)
    )
    dec = ChunkDecoder()
    with pytest.raises(RtmpProtocolError) as info:
        decode_all(data, decoder=dec)
    assert info.value.reason == "too_many_chunk_streams"
    assert dec.chunk_stream_count == MAX_CHUNK_STREAMS


def test_partial_messages_are_bounded_in_total() -> None:
    dec = ChunkDecoder()
    data = b"".join(fmt0(c, 0, MAX_MESSAGE_SIZE, 9, 1) + bytes(128) for c in (4, 5, 6))
    with pytest.raises(RtmpProtocolError) as info:
        decode_all(data, decoder=dec)
    assert info.value.reason == "too_much_buffered"
    assert dec.buffered_message_bytes <= MAX_BUFFERED_BYTES


def test_strict_header_sequencing() -> None:
    assert reason(b"\xc5" + b"x") == "bad_chunk_header"  # fmt 3 on a new csid
    assert reason(b"\x85" + bytes(3)) == "bad_chunk_header"  # fmt 2 on a new csid
    mid = fmt0(6, 0, 300, 9, 1) + bytes(128) + fmt0(6, 0, 1, 9, 1) + b"x"
    assert reason(mid) == "unexpected_chunk_header"
    # fmt 1 may open a chunk stream (old librtmp writers): message stream id 0.
    (msg,) = decode_all(b"\x45" + (7).to_bytes(3, "big") + (1).to_bytes(3, "big") + b"\x14z")
    assert (msg.timestamp, msg.stream_id, msg.type_id, msg.payload) == (7, 0, 0x14, b"z")


def test_zero_length_message_and_buffer_accounting() -> None:
    dec = ChunkDecoder()
    dec.receive_data(fmt0(4, 5, 0, 8, 1) + fmt0(6, 0, 200, 9, 1) + bytes(10))
    assert dec.next_message() == RawMessage(4, 5, 8, 1, b"")
    assert dec.next_message() is None
    assert dec.buffered_message_bytes == 200
    assert dec.unparsed_bytes == 0


def test_encoder_chunk_size_validation() -> None:
    with pytest.raises(ValueError, match="out of range"):
        ChunkEncoder().set_chunk_size(0)


def test_reading_into_the_decoders_buffer_equals_feeding_bytes() -> None:
    """get_buffer/buffer_updated (asyncio.BufferedProtocol) decode exactly what receive_data
    does, for reads of any size, including messages gathered whole from one read and
    messages interleaved with another chunk stream (gathered piecewise)."""
    enc = ChunkEncoder(compress=True)
    payloads = [bytes([i % 251]) * (i * 997 % 20000) for i in range(1, 40)]
    data = b"".join(enc.encode(4 + i % 2, 33 * i, 9, 1, p) for i, p in enumerate(payloads))
    audio = bytes(range(200))
    video = bytes(reversed(range(250)))
    data += (fmt0(7, 10, len(audio), 8, 1) + audio[:128] + fmt0(8, 20, len(video), 9, 1)
             + video[:128] + b"\xc7" + audio[128:] + b"\xc8" + video[128:])  # fmt: skip
    expected = decode_all(data)
    assert [m.payload for m in expected[:-2]] == payloads
    for read in (1, 100, 4096, 65536, len(data)):
        dec = ChunkDecoder()
        got: list[RawMessage] = []
        for i in range(0, len(data), read):
            piece = data[i : i + read]
            room = dec.get_buffer(read)
            assert len(room) >= read
            room[: len(piece)] = piece
            del room  # the socket releases its view before the next read
            dec.buffer_updated(len(piece))
            while (msg := dec.next_message()) is not None:
                got.append(msg)
        assert got == expected, read
        assert dec.unparsed_bytes == 0


def test_partial_messages_tell_what_is_being_received() -> None:
    dec = ChunkDecoder()
    assert dec.partial_messages() == []
    dec.receive_data(fmt0(6, 0, 300, 9, 1) + b"\x17\x01" + bytes(126) + fmt0(4, 0, 10, 8, 1))
    assert dec.next_message() is None
    assert dec.partial_messages() == [(9, 172, b"\x17\x01" + bytes(6)), (8, 10, b"")]
    dec.receive_data(bytes(10) + b"\xc6" + bytes(128))  # the audio body, a video chunk
    assert dec.next_message() == RawMessage(4, 0, 8, 1, bytes(10))
    assert dec.next_message() is None
    assert dec.partial_messages() == [(9, 44, b"\x17\x01" + bytes(6))]
