"""Fuzz targets: every input parses or raises RtmpProtocolError (nothing else), feeding
whole or in pieces decides the same, and buffers stay within their caps."""

from __future__ import annotations

import contextlib
import itertools
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.rtmp import Event, RtmpProtocolError, RtmpServerConnection
from ingest.rtmp.amf0 import UNDEFINED, AmfDate, AmfValue, EcmaArray, decode, encode
from ingest.rtmp.chunk import (
    MAX_BUFFERED_BYTES,
    MAX_CHUNK_STREAMS,
    ChunkDecoder,
    RawMessage,
)
from ingest.rtmp.handshake import HANDSHAKE_SIZE, ServerHandshake
from ingest.rtmp.speedups import compiled_decoder
from tests.ingest.rtmp.rtmp_helpers import CAPTURE, Pair, answer, seeded

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_HEADER = 3 + 11 + 4  # basic + fmt 0 message header + extended timestamp


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@st.composite
def chunk_bytes(draw: st.DrawFn) -> bytes:
    """Plausible chunk headers with random fields, so fuzzing reaches deep states."""
    out = bytearray()
    for _ in range(draw(st.integers(1, 12))):
        fmt = draw(st.integers(0, 3))
        csid = draw(st.sampled_from([2, 3, 4, 6, 63, 64, 300, 65599]))
        if csid < 64:
            out.append(fmt << 6 | csid)
        elif csid < 320:
            out += bytes((fmt << 6, csid - 64))
        else:
            out += bytes((fmt << 6 | 1,)) + (csid - 64).to_bytes(2, "little")
        ts = draw(st.sampled_from([0, 33, 0xFFFFFE, 0xFFFFFF]))
        length = draw(st.sampled_from([0, 1, 4, 127, 128, 129, 300]))
        type_id = draw(st.sampled_from([1, 2, 4, 5, 8, 9, 17, 18, 20, 22]))
        if fmt <= 2:
            out += ts.to_bytes(3, "big")
        if fmt <= 1:
            out += length.to_bytes(3, "big") + bytes((type_id,))
        if fmt == 0:
            out += struct.pack("<I", draw(st.sampled_from([0, 1, 2])))
        if (fmt <= 2 and ts == 0xFFFFFF) or (fmt == 3 and draw(st.booleans())):
            out += struct.pack(">I", draw(st.sampled_from([0x1000000, 5])))
        out += draw(st.binary(max_size=140))
    return bytes(out)


fuzz_input = st.one_of(st.binary(max_size=600), chunk_bytes())


def run_decoder(
    pieces: list[bytes], cls: type[ChunkDecoder] = ChunkDecoder
) -> tuple[list[RawMessage], str | None]:
    dec = cls()
    msgs: list[RawMessage] = []
    try:
        for piece in pieces:
            dec.receive_data(piece)
            while (msg := dec.next_message()) is not None:
                msgs.append(msg)
            assert dec.unparsed_bytes <= MAX_HEADER
            assert dec.buffered_message_bytes <= MAX_BUFFERED_BYTES
            assert dec.chunk_stream_count <= MAX_CHUNK_STREAMS
    except RtmpProtocolError as exc:
        return msgs, exc.reason
    return msgs, None


@FUZZ
@given(fuzz_input, st.lists(st.integers(0, 10_000), max_size=20))
def test_chunk_decoder(data: bytes, cuts: list[int]) -> None:
    whole = run_decoder([data])
    assert run_decoder(split(data, cuts)) == whole
    assert run_decoder([data[i : i + 1] for i in range(len(data))]) == whole


@FUZZ
@given(fuzz_input, st.lists(st.integers(0, 10_000), max_size=20))
def test_compiled_chunk_decoder_decides_like_the_python_one(data: bytes, cuts: list[int]) -> None:
    """The same messages (fields and payload bytes) and the same error, at the same point,
    whole, in pieces and a byte at a time (chunk tests run against both as well)."""
    compiled = compiled_decoder()
    assert compiled is not None, "the compiled decoder was not built (./dev install does)"
    reference = run_decoder([data])
    assert run_decoder([data], compiled) == reference
    assert run_decoder(split(data, cuts), compiled) == reference
    assert run_decoder([data[i : i + 1] for i in range(len(data))], compiled) == reference


@FUZZ
@given(st.binary(max_size=4 * HANDSHAKE_SIZE), st.lists(st.integers(0, 10_000), max_size=8))
def test_handshake(data: bytes, cuts: list[int]) -> None:
    def run(pieces: list[bytes]) -> tuple[bytes, bytes | None, str | None]:
        hs = ServerHandshake(seeded(1))
        rest = None
        try:
            for piece in pieces:
                got = hs.receive_data(piece)
                rest = got if rest is None else rest + piece
                assert hs.buffered_bytes < HANDSHAKE_SIZE
        except RtmpProtocolError as exc:
            return hs.data_to_send(), rest, exc.reason
        return hs.data_to_send(), rest, None

    assert run(split(data, cuts)) == run([data])


@FUZZ
@given(st.one_of(st.binary(max_size=400), chunk_bytes()))
def test_amf0_decoder(data: bytes) -> None:
    with contextlib.suppress(RtmpProtocolError):
        decode(data)


amf_leaf = st.one_of(
    st.none(),
    st.just(UNDEFINED),
    st.booleans(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.builds(AmfDate, st.floats(allow_nan=False), st.integers(-32768, 32767)),
)
amf_value = st.recursive(
    amf_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4).map(EcmaArray),
    ),
    max_leaves=20,
)


@FUZZ
@given(st.lists(amf_value, max_size=4))
def test_amf0_round_trip(values: list[AmfValue]) -> None:
    assert decode(encode(*values)) == values


def _publishing_prefix() -> bytes:
    """The bytes a client sends to reach a publishing state (server answers accept)."""
    pair = Pair()
    data = pair.client.data_to_send()
    pair.server.receive_data(data)
    assert pair.server.next_event() is None
    pair.client.receive_data(pair.server.data_to_send())
    c2 = pair.client.data_to_send()
    pair.client.connect("live")
    pair.client.publish_sequence("k")
    pair.client.publish(1, "k")
    return data + c2 + pair.client.data_to_send()


PREFIX = _publishing_prefix()


def run_connection(pieces: list[bytes]) -> tuple[list[Event], str | None]:
    conn = RtmpServerConnection(random_bytes=seeded(1))
    events: list[Event] = []
    try:
        for piece in pieces:
            conn.receive_data(piece)
            while (event := conn.next_event()) is not None:
                events.append(event)
                answer(conn, event)
            assert conn.buffered_bytes <= MAX_HEADER + MAX_BUFFERED_BYTES
            conn.data_to_send()
    except RtmpProtocolError as exc:
        return events, exc.reason
    return events, None


@FUZZ
@given(fuzz_input, st.lists(st.integers(0, 10_000), max_size=10))
def test_connection_after_publish(tail: bytes, cuts: list[int]) -> None:
    data = PREFIX + tail
    whole = run_connection([data])
    assert len(whole[0]) >= 6  # handshake, connect, release, FCPublish, create, publish
    assert run_connection(split(data, cuts)) == whole


CAPTURED = CAPTURE.read_bytes()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(2 * HANDSHAKE_SIZE + 1, len(CAPTURED) - 1), st.integers(1, 255)),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, len(CAPTURED)),
)
def test_mutated_ffmpeg_capture(flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(CAPTURED[:cut] if cut > 2 * HANDSHAKE_SIZE + 1 else CAPTURED)
    for pos, mask in flips:
        if pos < len(data):
            data[pos] ^= mask
    events, _ = run_connection([bytes(data)])
    assert events  # at least the handshake
