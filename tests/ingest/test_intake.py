"""ingest.intake: FLV media messages to media items, both tag parsers, without sockets."""

from __future__ import annotations

import pytest

from ingest.flv import FlvError, UnsupportedCodec
from ingest.intake import MediaIntake
from media.types import AudioConfig, MediaPacket, VideoConfig
from tests.flv_samples import TAG_AUDIO, TAG_VIDEO, read_flv

pytestmark = pytest.mark.usefixtures("compiled_or_python")


@pytest.fixture(params=["python", "compiled"])
def compiled_or_python(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    from ingest import intake
    from ingest.flv import speedups, tags

    if request.param == "compiled":
        compiled = speedups.compiled_parsers()
        assert compiled is not None, "the compiled FLV parsers were not built (./dev install does)"
        video, audio = compiled
    else:
        video, audio = tags.parse_video_tag, tags.parse_audio_tag
    monkeypatch.setattr(intake, "parse_video_tag", video)
    monkeypatch.setattr(intake, "parse_audio_tag", audio)


def take(intake: MediaIntake, name: str) -> list[object]:
    out: list[object] = []
    for tag in read_flv(name):
        if tag.tag_type == TAG_VIDEO:
            out.append(intake.video(tag.payload, tag.timestamp))
        elif tag.tag_type == TAG_AUDIO:
            out.append(intake.audio(tag.payload, tag.timestamp))
    return out


def test_a_sample_file_gives_configs_then_packets() -> None:
    items = [i for i in take(MediaIntake(), "h264_aac.flv") if i is not None]
    kinds = [type(i) for i in items]
    assert kinds.index(VideoConfig) < kinds.index(MediaPacket)
    assert AudioConfig in kinds
    video = [i for i in items if isinstance(i, MediaPacket) and i.kind == "video"]
    assert video[0].keyframe
    assert [p.dts_ms for p in video] == sorted(p.dts_ms for p in video)


def test_wrapping_timestamps_keep_growing_per_kind() -> None:
    intake = MediaIntake()
    frame = b"\x27\x01\x00\x00\x00" + b"\x00\x00\x00\x01\x41"  # an AVC inter frame
    raw = b"\xaf\x01" + bytes(10)  # an AAC frame
    before = intake.video(frame, 0xFFFF_FF00)
    after = intake.video(frame, 0x0000_0100)
    audio = intake.audio(raw, 0x0000_0200)  # audio has not wrapped: its own extender
    assert isinstance(before, MediaPacket) and isinstance(after, MediaPacket)
    assert after.dts_ms == (1 << 32) + 0x100 > before.dts_ms
    assert isinstance(audio, MediaPacket) and audio.dts_ms == 0x200


def test_errors_are_the_flv_layers() -> None:
    intake = MediaIntake()
    with pytest.raises(UnsupportedCodec):
        intake.audio(b"\x2f\x00", 0)  # MP3
    with pytest.raises(FlvError):
        intake.video(b"\x17\x05", 0)  # reserved AVCPacketType
    assert intake.video(b"\x17\x02\x00\x00\x00", 0) is None  # AVC end of sequence
