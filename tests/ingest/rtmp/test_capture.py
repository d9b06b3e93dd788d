"""Replay of a real FFmpeg publish (tests/data/rtmp/ffmpeg_publish_h264_aac.bin, made
by tests/data/rtmp/record_capture.py): 320x240 H.264 (-g 30 -bf 2) + AAC, 1.5 s, to
rtmp://127.0.0.1:PORT/live/testkey. The recorded C2 echoes the S1 of the recording
server, not of this one: the server must not mind."""

from __future__ import annotations

import pytest

from ingest.rtmp import (
    AudioMessage,
    ConnectionClosed,
    ConnectRequest,
    CreateStream,
    DeleteStream,
    Event,
    FCPublish,
    FCUnpublish,
    HandshakeComplete,
    MetaData,
    PublishRequest,
    ReleaseStream,
    RtmpServerConnection,
    VideoMessage,
    chunk,
    speedups,
)
from tests.ingest.rtmp.rtmp_helpers import CAPTURE, feed, seeded


def replay(step: int) -> tuple[list[Event], RtmpServerConnection]:
    conn = RtmpServerConnection(random_bytes=seeded(42), epoch=1)
    events = feed(conn, CAPTURE.read_bytes(), step=step)
    conn.receive_data(b"")
    events += feed(conn, b"")
    return events, conn


@pytest.fixture(scope="module")
def whole() -> list[Event]:
    events, conn = replay(0)
    assert conn.dropped_messages == 0
    return events


def test_capture_is_small() -> None:
    assert CAPTURE.stat().st_size < 300_000


def test_session_events(whole: list[Event]) -> None:
    head = whole[:7]
    assert head[0] == HandshakeComplete(digest=True)  # FFmpeg always sends a digest C1
    connect = head[1]
    assert isinstance(connect, ConnectRequest)
    assert connect.app == "live"
    assert connect.tc_url.startswith("rtmp://127.0.0.1:")
    assert connect.tc_url.endswith("/live")
    assert str(connect.command_object["flashVer"]).startswith("FMLE/3.0")
    assert head[2] == ReleaseStream(2.0, "testkey")
    assert head[3] == FCPublish(3.0, "testkey")
    assert head[4] == CreateStream(4.0, 1)
    assert head[5] == PublishRequest(1, 5.0, "testkey", "", "live")
    meta = head[6]
    assert isinstance(meta, MetaData)
    assert meta.metadata["width"] == 320.0
    assert meta.metadata["height"] == 240.0
    assert meta.metadata["videocodecid"] == 7.0  # AVC
    assert meta.metadata["audiocodecid"] == 10.0  # AAC
    tail = whole[-3:]
    assert tail == [FCUnpublish(6.0, "testkey"), DeleteStream(1, True), ConnectionClosed()]


def test_media(whole: list[Event]) -> None:
    video = [e for e in whole if isinstance(e, VideoMessage)]
    audio = [e for e in whole if isinstance(e, AudioMessage)]
    assert all(e.stream_id == 1 for e in video + audio)
    # AVC sequence header first: keyframe + codec 7, AVCPacketType 0.
    assert video[0].payload[0] == 0x17
    assert video[0].payload[0] & 0x0F == 7
    assert video[0].payload[1] == 0
    # AAC sequence header first: SoundFormat 10, AACPacketType 0.
    assert audio[0].payload[0] >> 4 == 10
    assert audio[0].payload[1] == 0
    frames = video[1:]
    assert 44 <= len(frames) <= 47  # 1.5 s at 30 fps (the recorded file has 46)
    assert 60 <= len(audio) <= 70  # 1024-sample AAC frames at 44.1 kHz, plus the header
    keyframes = [i for i, f in enumerate(frames) if f.payload[0] >> 4 == 1]
    assert keyframes[:2] == [0, 30]  # -g 30
    for track in (video, audio):
        stamps = [e.timestamp for e in track]
        assert stamps == sorted(stamps)  # DTS order (B-frames shift only the CTS)
    assert frames[-1].timestamp >= 1400
    # -bf 2: some frames carry a non-zero composition time offset.
    assert any(int.from_bytes(f.payload[2:5], "big") for f in frames)


def test_byte_at_a_time_matches(whole: list[Event]) -> None:
    events, _ = replay(1)
    assert events == whole


def test_odd_sized_pieces_match(whole: list[Event]) -> None:
    events, _ = replay(1000)
    assert events == whole


@pytest.mark.parametrize("step", [0, 1, 977])
def test_the_python_decoder_replays_the_capture_like_the_compiled_one(
    whole: list[Event], step: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection runs the compiled chunk decoder when it was built (it is in CI); the
    Python reference must give the very same events from real FFmpeg bytes."""
    assert speedups.COMPILED, "the compiled decoder was not built (./dev install does)"
    monkeypatch.setattr(speedups, "ChunkDecoder", chunk.ChunkDecoder)
    events, conn = replay(step)
    assert type(conn.chunk_decoder) is chunk.ChunkDecoder
    assert events == whole
