"""Tag payload parsing against real ffmpeg-written FLV files, cross-checked with PyAV.

PyAV (FFmpeg's flvdec) reads the same files; every video/audio packet we produce must match
its packets byte for byte, with the same dts/pts/keyframe, and our configs must match its
codec parameters (extradata, size, profile).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from ingest.flv import (
    AudioEvent,
    AudioSequenceEnd,
    AudioSequenceStart,
    FlvError,
    Ignored,
    UnsupportedCodec,
    UnsupportedFeature,
    VideoEvent,
    VideoMetadata,
    VideoSequenceEnd,
    VideoSequenceStart,
    may_be_keyframe,
    parse_audio_tag,
    parse_video_tag,
)
from media import av1 as av1_mod
from media import vp9 as vp9_mod
from media.types import AudioConfig, MediaPacket, VideoConfig

Tags = Callable[[str], Sequence[Any]]

# Every test here runs against tags.py and its compiled fast path (conftest.tag_parsers).
pytestmark = pytest.mark.usefixtures("tag_parsers")


@dataclass
class Track:
    configs: list[VideoConfig | AudioConfig] = field(default_factory=list)
    packets: list[MediaPacket] = field(default_factory=list)
    other: list[object] = field(default_factory=list)


def parse_file(tags: Sequence[Any]) -> dict[tuple[str, int], Track]:
    """Feed every audio/video tag of a file to the parsers; group results by (kind, track)."""
    tracks: dict[tuple[str, int], Track] = defaultdict(Track)
    for tag in tags:
        event: VideoEvent | AudioEvent
        if tag.tag_type == 9:
            kind, event = "video", parse_video_tag(tag.payload, tag.timestamp)
        elif tag.tag_type == 8:
            kind, event = "audio", parse_audio_tag(tag.payload, tag.timestamp)
        else:
            continue
        track = tracks[kind, event.track_id]
        if isinstance(event, MediaPacket):
            assert event.kind == kind
            track.packets.append(event)
        elif isinstance(event, VideoSequenceStart | AudioSequenceStart):
            track.configs.append(event.config)
        else:
            track.other.append(event)
    return tracks


@dataclass
class PyAvStream:
    kind: str
    track: int
    codec: str
    profile: str | None
    width: int
    height: int
    rate: Fraction | None
    extradata: bytes
    packets: list[tuple[int, int, bool, bytes]]


def pyav_view(path: Path) -> dict[tuple[str, int], PyAvStream]:
    """What FFmpeg's flvdec (via PyAV) sees in the same file, keyed like `parse_file`."""
    with av.open(str(path)) as container:
        streams: dict[int, PyAvStream] = {}
        for s in container.streams:
            cc: Any = s.codec_context
            streams[s.index] = PyAvStream(
                kind=s.type,
                track=s.id,
                codec=cc.name,
                profile=cc.profile,
                width=getattr(cc, "width", 0),
                height=getattr(cc, "height", 0),
                rate=s.average_rate if s.type == "video" else None,
                extradata=bytes(cc.extradata or b""),
                packets=[],
            )
        for packet in container.demux():
            if packet.size:
                assert packet.dts is not None and packet.pts is not None
                streams[packet.stream.index].packets.append(
                    (packet.dts, packet.pts, packet.is_keyframe, bytes(packet))
                )
    return {(s.kind, s.track): s for s in streams.values()}


def ours(packets: list[MediaPacket]) -> list[tuple[int, int, bool, bytes]]:
    return [(p.dts_ms, p.pts_ms, p.keyframe, p.data) for p in packets]


VIDEO_FILES = {
    # file: (track, codec, codec string, PyAV profile name, width, height, bit depth)
    "h264_aac.flv": [(0, "h264", "avc1.64000d", "High", 320, 240, 8)],
    "h264_interlaced_crop.flv": [(0, "h264", "avc1.4d4015", "Main", 200, 148, 8)],
    "multitrack.flv": [
        (0, "h264", "avc1.42c00b", "Constrained Baseline", 160, 120, 8),
        (1, "h264", "avc1.f4000a", "High 4:4:4 Predictive", 128, 96, 8),
    ],
    "hevc_aac.flv": [(0, "hevc", "hvc1.1.6.L60.90", "Main", 320, 240, 8)],
    "hevc_main10.flv": [(0, "hevc", "hvc1.2.4.L60.90", "Main 10", 200, 150, 10)],
    "av1.flv": [(0, "av1", "av01.0.00M.08", "Main", 320, 240, 8)],
    "av1_10bit.flv": [(0, "av1", "av01.0.00M.10", "Main", 160, 120, 10)],
    "vp9.flv": [(0, "vp9", "vp09.00.20.08", "Profile 0", 320, 240, 8)],
}


@pytest.mark.parametrize("name", sorted(VIDEO_FILES))
def test_video_matches_pyav(name: str, flv_tags: Tags, data_dir: Path) -> None:
    tracks = parse_file(flv_tags(name))
    reference = pyav_view(data_dir / name)
    for track_id, codec, codec_string, profile, width, height, depth in VIDEO_FILES[name]:
        track, ref = tracks["video", track_id], reference["video", track_id]
        assert len(track.configs) == 1
        config = track.configs[0]
        assert isinstance(config, VideoConfig)
        assert config.codec == codec
        assert config.codec_string == codec_string
        assert config.extradata == ref.extradata
        assert config.bit_depth == depth
        assert ref.profile == profile
        if codec == "vp9":
            # vpcC has no size: it comes from the first keyframe's uncompressed header.
            assert (config.width, config.height) == (0, 0)
            assert vp9_mod.frame_size(track.packets[0].data) == (ref.width, ref.height)
        else:
            assert (config.width, config.height) == (ref.width, ref.height) == (width, height)
        if config.frame_rate is not None:
            assert config.frame_rate == ref.rate
        assert ours(track.packets) == ref.packets
        assert len(track.packets) >= 2
        assert track.packets[0].keyframe
        dts = [p.dts_ms for p in track.packets]
        assert dts == sorted(dts)
        assert all(p.pts_ms >= p.dts_ms for p in track.packets)


def test_h264_composition_times(flv_tags: Tags) -> None:
    """B-frames: pts - dts equals the SI24 CompositionTime of each AVC NALU tag."""
    tags = [t for t in flv_tags("h264_aac.flv") if t.tag_type == 9 and t.payload[1] == 1]
    packets = [parse_video_tag(t.payload, t.timestamp) for t in tags]
    offsets = [int.from_bytes(t.payload[2:5], "big", signed=True) for t in tags]
    assert [p.pts_ms - p.dts_ms for p in packets if isinstance(p, MediaPacket)] == offsets
    assert any(offsets), "the sample must have B-frames (non-zero composition times)"
    assert len(packets) == 10


def test_h264_config_and_end_of_sequence(flv_tags: Tags) -> None:
    video = parse_file(flv_tags("h264_aac.flv"))["video", 0]
    config = video.configs[0]
    assert isinstance(config, VideoConfig)
    # avc1.PPCCLL is the hex of the record's profile, compatibility and level bytes.
    assert config.codec_string == "avc1." + config.extradata[1:4].hex()
    assert (config.profile, config.level, config.nal_length_size) == (100, 13, 4)
    assert config.frame_rate == 25
    assert video.other == [VideoSequenceEnd()]  # FFmpeg ends H.264 with an EOS tag


def test_hevc_enhanced_packet_types(flv_tags: Tags) -> None:
    tags = [t for t in flv_tags("hevc_aac.flv") if t.tag_type == 9]
    # FFmpeg sends both CodedFrames (with SI24) and CodedFramesX (pts == dts).
    packet_types = {t.payload[0] & 0x0F for t in tags}
    assert packet_types == {0, 1, 3, 4}
    events = [parse_video_tag(t.payload, t.timestamp) for t in tags]
    metadata = [e for e in events if isinstance(e, VideoMetadata)]
    assert len(metadata) == 1
    assert metadata[0].amf.startswith(b"\x02\x00\x09colorInfo")
    for tag, event in zip(tags, events, strict=True):
        if tag.payload[0] & 0x0F == 1:
            assert isinstance(event, MediaPacket)
            offset = int.from_bytes(tag.payload[5:8], "big", signed=True)
            assert event.pts_ms - event.dts_ms == offset
    assert any(isinstance(e, MediaPacket) and e.pts_ms > e.dts_ms for e in events)
    config = next(e.config for e in events if isinstance(e, VideoSequenceStart))
    assert (config.profile, config.level, config.frame_rate) == (1, 60, Fraction(25))


def test_av1_empty_sequence_start_then_record(flv_tags: Tags) -> None:
    """libaom has no global header at init: FFmpeg writes an empty SequenceStart first."""
    tags = [t for t in flv_tags("av1.flv") if t.tag_type == 9]
    first, second = (parse_video_tag(t.payload, t.timestamp) for t in tags[:2])
    assert isinstance(first, Ignored)
    assert isinstance(second, VideoSequenceStart)
    assert second.config.nal_length_size is None
    keyframe = next(
        e for t in tags if isinstance(e := parse_video_tag(t.payload, t.timestamp), MediaPacket)
    )
    header = av1_mod.sequence_header_in_obus(keyframe.data)
    assert header is not None
    assert (header.max_frame_width, header.max_frame_height) == (320, 240)


def test_multitrack_audio(flv_tags: Tags, data_dir: Path) -> None:
    tracks = parse_file(flv_tags("multitrack.flv"))
    reference = pyav_view(data_dir / "multitrack.flv")
    for track_id in (0, 1):
        audio = tracks["audio", track_id]
        config = audio.configs[0]
        assert isinstance(config, AudioConfig)
        assert config.extradata == reference["audio", track_id].extradata
        assert ours(audio.packets) == reference["audio", track_id].packets
    # The extra track also gets a MultichannelConfig message (mono, front centre).
    assert tracks["audio", 1].other == [Ignored("audio multichannel config", 1)]


@pytest.mark.parametrize(
    ("name", "sample_rate", "channels"),
    [("h264_aac.flv", 44100, 2), ("hevc_aac.flv", 44100, 1), ("aac51.flv", 48000, 6)],
)
def test_aac_matches_pyav(
    name: str, sample_rate: int, channels: int, flv_tags: Tags, data_dir: Path
) -> None:
    audio = parse_file(flv_tags(name))["audio", 0]
    reference = pyav_view(data_dir / name)["audio", 0]
    assert len(audio.configs) == 1
    config = audio.configs[0]
    assert isinstance(config, AudioConfig)
    assert config.extradata == reference.extradata
    assert (config.codec, config.object_type, config.codec_string) == ("aac", 2, "mp4a.40.2")
    assert (config.sample_rate, config.channels) == (sample_rate, channels)
    assert ours(audio.packets) == reference.packets
    assert all(p.keyframe and p.pts_ms == p.dts_ms for p in audio.packets)
    # Decoding our first frame with our extradata gives the rate and layout we reported
    # (FFmpeg's flvdec itself reports 44100 Hz for aac51.flv, from the legacy flags).
    ctx: Any = av.CodecContext.create("aac", "r")
    ctx.extradata = config.extradata
    frames = ctx.decode(av.Packet(audio.packets[0].data))
    assert frames
    assert frames[0].sample_rate == sample_rate
    assert len(frames[0].layout.channels) == channels


def test_aac51_multichannel_config_is_ignored(flv_tags: Tags) -> None:
    audio = parse_file(flv_tags("aac51.flv"))["audio", 0]
    assert audio.other == [Ignored("audio multichannel config")]


@pytest.mark.parametrize(("name", "codec"), [("mp3.flv", "MP3"), ("opus.flv", "Opus")])
def test_refused_audio_codecs(name: str, codec: str, flv_tags: Tags) -> None:
    audio_tags = [t for t in flv_tags(name) if t.tag_type == 8]
    for tag in audio_tags:
        with pytest.raises(UnsupportedCodec) as caught:
            parse_audio_tag(tag.payload, tag.timestamp)
        assert (caught.value.media, caught.value.codec) == ("audio", codec)
        assert isinstance(caught.value, FlvError)
        assert codec in str(caught.value)


# --- synthetic messages: what the sample files do not exercise ------------------------------


@pytest.fixture(scope="module")
def avcc(flv_tags: Tags) -> bytes:
    tag = next(t for t in flv_tags("h264_aac.flv") if t.tag_type == 9)
    return bytes(tag.payload[5:])


@pytest.fixture(scope="module")
def hvcc(flv_tags: Tags) -> bytes:
    tag = next(t for t in flv_tags("hevc_aac.flv") if t.tag_type == 9)
    return bytes(tag.payload[5:])


def test_legacy_avc_negative_composition_time() -> None:
    event = parse_video_tag(b"\x27\x01\xff\xff\xd8" + b"\x00\x00\x00\x01\x41", 1000)
    assert event == MediaPacket("video", 1000, 960, False, b"\x00\x00\x00\x01\x41")


def test_legacy_hevc_codec_id_12(hvcc: bytes) -> None:
    """The de-facto legacy HEVC tag (codec id 12, AVC packet layout) that FFmpeg 8+ reads."""
    start = parse_video_tag(b"\x1c\x00\x00\x00\x00" + hvcc, 0)
    assert isinstance(start, VideoSequenceStart)
    assert start.config.codec == "hevc"
    frame = parse_video_tag(b"\x1c\x01\x00\x00\x28" + b"frame", 40)
    assert frame == MediaPacket("video", 40, 80, True, b"frame")


def test_enhanced_avc1(avcc: bytes) -> None:
    start = parse_video_tag(b"\x90avc1" + avcc, 0)
    assert isinstance(start, VideoSequenceStart)
    assert start.config.codec_string == "avc1.64000d"
    assert parse_video_tag(b"\xa1avc1\x00\x00\x50nal", 40) == MediaPacket(
        "video", 40, 120, False, b"nal"
    )
    assert parse_video_tag(b"\x93avc1nal", 40) == MediaPacket("video", 40, 40, True, b"nal")
    assert parse_video_tag(b"\x92avc1", 80) == VideoSequenceEnd()


def test_enhanced_av1_and_vp9_frames_have_no_composition_time() -> None:
    assert parse_video_tag(b"\x91av01\x12\x00", 7) == MediaPacket("video", 7, 7, True, b"\x12\x00")
    assert parse_video_tag(b"\xa1vp09\x86\x00", 9) == MediaPacket("video", 9, 9, False, b"\x86\x00")


def test_modex_timestamp_offset_nano_is_skipped() -> None:
    plain = parse_video_tag(b"\x93avc1nal", 40)
    # ModEx: size-1 = 2 (3 bytes of nanoseconds), then (ModEx type 0 << 4) | CodedFramesX.
    assert parse_video_tag(b"\x97\x02\x01\x02\x03\x03avc1nal", 40) == plain
    # The 16-bit size form: UI8 255 escapes to UI16 + 1.
    long_modex = b"\x97\xff\x01\x00" + bytes(257) + b"\x03avc1nal"
    assert parse_video_tag(long_modex, 40) == plain
    audio = parse_audio_tag(b"\x97\x02\x01\x02\x03\x01mp4aaac", 5)
    assert audio == MediaPacket("audio", 5, 5, True, b"aac")


def test_multitrack_one_track(avcc: bytes) -> None:
    start = parse_video_tag(b"\x96\x00avc1\x03" + avcc, 0)
    assert isinstance(start, VideoSequenceStart)
    assert start.track_id == 3
    frame = parse_video_tag(b"\xa6\x01hvc1\x02\x00\x00\x28nal", 40)
    assert frame == MediaPacket("video", 40, 80, False, b"nal", track_id=2)
    assert parse_audio_tag(b"\x95\x02mp4a\x01", 0) == AudioSequenceEnd(1)


@pytest.mark.parametrize(
    ("kind", "payload", "feature"),
    [
        ("video", b"\x96\x11avc1\x01\x00\x00\x03nal", "ManyTracks"),
        ("video", b"\x96\x21\x01avc1\x00\x00\x03nal", "ManyTracksManyCodecs"),
        ("audio", b"\x95\x11mp4a\x01\x00\x00\x03aac", "ManyTracks"),
        ("video", b"\x95av01\x00", "MPEG2TSSequenceStart"),
    ],
)
def test_unsupported_features(kind: str, payload: bytes, feature: str) -> None:
    parse = parse_video_tag if kind == "video" else parse_audio_tag
    with pytest.raises(UnsupportedFeature, match=feature) as caught:
        parse(payload, 0)
    assert caught.value.media == kind


@pytest.mark.parametrize(
    ("payload", "codec"),
    [
        (b"\x12\x00", "Sorenson H.263"),
        (b"\x14\x00", "On2 VP6"),
        (b"\x1f\x00", "codec id 15"),
        (b"\x90vp08\x01", "VP8"),
        (b"\x90vvc1\x01", "VVC (H.266)"),
        (b"\x90xyz1\x01", "FourCC 'xyz1'"),
    ],
)
def test_refused_video_codecs(payload: bytes, codec: str) -> None:
    with pytest.raises(UnsupportedCodec) as caught:
        parse_video_tag(payload, 0)
    assert (caught.value.media, caught.value.codec) == ("video", codec)


@pytest.mark.parametrize(
    ("payload", "codec"),
    [
        (b"\x2f\xff\xfb", "MP3"),
        (b"\xb2\x00", "Speex"),
        (b"\x72\x00", "G.711 A-law"),
        (b"\x82\x00", "G.711 mu-law"),
        (b"\x62\x00", "Nellymoser"),
        (b"\x90fLaC", "FLAC"),
        (b"\x91ac-3", "AC-3"),
        (b"\x91ec-3", "E-AC-3"),
        (b"\x91.mp3", "MP3"),
        (b"\x91abcd", "FourCC 'abcd'"),
    ],
)
def test_refused_audio_codec_ids(payload: bytes, codec: str) -> None:
    with pytest.raises(UnsupportedCodec) as caught:
        parse_audio_tag(payload, 0)
    assert caught.value.codec == codec


@pytest.mark.parametrize(
    "payload",
    [
        b"\x57\x00",  # legacy VideoCommand (start of seek)
        b"\xd1\x01",  # enhanced frame type 5, CodedFrames: VideoCommand, no FourCC
        b"\x17\x00\x00\x00\x00",  # empty AVC sequence header
        b"\x90hvc1",  # empty enhanced SequenceStart
        b"\x17\x01\x00\x00\x00",  # AVC NALU tag without data
        b"",
    ],
)
def test_ignored_video(payload: bytes) -> None:
    assert isinstance(parse_video_tag(payload, 0), Ignored)


@pytest.mark.parametrize("payload", [b"", b"\xaf\x00", b"\xaf\x01", b"\x90mp4a", b"\x94mp4a\x00"])
def test_ignored_audio(payload: bytes) -> None:
    assert isinstance(parse_audio_tag(payload, 0), Ignored)


@pytest.mark.parametrize(
    "payload",
    [
        b"\x07\x01\x00\x00\x00nal",  # legacy frame type 0 (reserved)
        b"\x67\x01\x00\x00\x00nal",  # legacy frame type 6
        b"\x17\x03\x00\x00\x00",  # AVCPacketType 3
        b"\x17\x01\x00",  # truncated composition time
        b"\x80avc1nal",  # enhanced frame type 0
        b"\x98avc1",  # VideoPacketType 8 (reserved)
        b"\x91avc1\x00",  # CodedFrames with a truncated SI24
        b"\x91av",  # truncated FourCC
        b"\x96",  # truncated multitrack header
        b"\x96\x06avc1\x00",  # Multitrack inside Multitrack
        b"\x96\x01avc1",  # missing track id
        b"\x97",  # truncated ModEx
        b"\x97\x02\x01\x02",  # ModEx data without the following packet type
        b"\x97\xff\x01",  # truncated 16-bit ModEx size
        b"\x17\x00\x00\x00\x00\x02",  # bad avcC
    ],
)
def test_malformed_video(payload: bytes) -> None:
    with pytest.raises(FlvError):
        parse_video_tag(payload, 0)


@pytest.mark.parametrize(
    "payload",
    [
        b"\xaf",  # no AACPacketType
        b"\xaf\x02",  # reserved AACPacketType
        b"\xaf\x00\x12",  # truncated AudioSpecificConfig
        b"\x93mp4a",  # reserved AudioPacketType 3
        b"\x95",  # truncated multitrack header
        b"\x95\x00mp4a",  # missing track id
        b"\x95\x05mp4a\x00",  # Multitrack inside Multitrack
        b"\x91mp",  # truncated FourCC
    ],
)
def test_malformed_audio(payload: bytes) -> None:
    with pytest.raises(FlvError):
        parse_audio_tag(payload, 0)


@pytest.mark.parametrize("wrap", [bytearray, memoryview])
def test_frame_data_is_an_independent_copy(wrap: Callable[[bytearray], Any]) -> None:
    """Packets own their bytes, so the RTMP layer may hand in (and then reuse) its buffer."""
    buffer = bytearray(b"\x91av01frame")
    packet = parse_video_tag(wrap(buffer), 0)
    buffer[5:] = b"XXXXX"
    assert isinstance(packet, MediaPacket)
    assert packet.data == b"frame"
    assert type(packet.data) is bytes


@pytest.mark.parametrize(
    ("head", "key"),
    [
        (b"", True),  # nothing of the tag yet: it may be one
        (b"\x17\x01", True),  # AVC keyframe
        (b"\x47\x01", True),  # generated keyframe
        (b"\x27\x01", False),  # AVC inter frame
        (b"\x91hvc1", True),  # enhanced: keyframe, CodedFrames
        (b"\xa1hvc1", False),  # enhanced: inter frame
    ],
)
def test_may_be_keyframe(head: bytes, key: bool) -> None:
    assert may_be_keyframe(head) is key
