"""FLV audio/video tag payloads (RTMP message types 8 and 9) -> typed events.

Covers the legacy FLV 10.1 AVC/AAC tags and Enhanced RTMP (veovera E-RTMP v1 and v2, as sent
by FFmpeg 6.1+ and OBS 29.1+). The two entry points are pure functions:

    parse_video_tag(payload, timestamp) -> VideoEvent
    parse_audio_tag(payload, timestamp) -> AudioEvent

`timestamp` is the message timestamp in milliseconds (the RTMP layer's 32-bit value, or an
extended one if the session unwraps it). Frames come back as `MediaPacket`s whose `data` is
one slice of the payload: frame bytes are never looked at here.

Video, per E-RTMP v2 "Enhanced Video":
- legacy: UB[4] frame type, UB[4] codec id; codec 7 (AVC), and 12 (HEVC, the Chinese
  de-facto extension that FFmpeg 8+ reads) use AVCPacketType + SI24 composition time.
- enhanced (first bit set): UB[3] frame type, UB[4] packet type, [ModEx...], FourCC, with
  v2 Multitrack/OneTrack (a track id byte). FFmpeg's flvenc sends: hvc1 SequenceStart
  (hvcC), CodedFrames with SI24 when pts != dts else CodedFramesX; av01/vp09 SequenceStart
  (av1C/vpcC) and CodedFrames without composition time; a Metadata (colorInfo) message with
  frame type 5 before the first frame; H.264/AAC of every stream after the first one as
  Multitrack/OneTrack with track id = stream index among its kind.
Audio: legacy SoundFormat 10 (AAC) and E-RTMP SoundFormat 9 with FourCC "mp4a"; any other
codec raises `UnsupportedCodec` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from ingest.flv.errors import FlvError, UnsupportedCodec, UnsupportedFeature
from media import aac, av1, avc, hevc, vp9
from media.errors import CodecError
from media.types import AudioConfig, MediaKind, MediaPacket, VideoCodec, VideoConfig

# --- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VideoSequenceStart:
    """A new video decoder configuration; it applies to the frames that follow."""

    config: VideoConfig
    track_id: int = 0


@dataclass(frozen=True, slots=True)
class VideoSequenceEnd:
    track_id: int = 0


@dataclass(frozen=True, slots=True)
class VideoMetadata:
    """E-RTMP VideoPacketType.Metadata: AMF-encoded ["colorInfo", {...}] (HDR hints).

    Kept as raw AMF so this layer needs no AMF decoder; the session may decode it with the
    RTMP layer's AMF0 reader or drop it.
    """

    amf: bytes
    track_id: int = 0


@dataclass(frozen=True, slots=True)
class AudioSequenceStart:
    config: AudioConfig
    track_id: int = 0


@dataclass(frozen=True, slots=True)
class AudioSequenceEnd:
    track_id: int = 0


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed message with nothing for the media pipeline (a reason for debug logs):
    video command frames, empty messages, FFmpeg's empty AV1 SequenceStart, channel layouts."""

    reason: str
    track_id: int = 0


VideoEvent = VideoSequenceStart | VideoSequenceEnd | VideoMetadata | MediaPacket | Ignored
AudioEvent = AudioSequenceStart | AudioSequenceEnd | MediaPacket | Ignored

# --- wire constants -----------------------------------------------------------------------

FRAME_KEY = 1
FRAME_INTER = 2
FRAME_DISPOSABLE_INTER = 3
FRAME_GENERATED_KEY = 4
FRAME_COMMAND = 5
_FRAME_TYPES = frozenset({1, 2, 3, 4, 5})
_KEY_FRAME_TYPES = frozenset({FRAME_KEY, FRAME_GENERATED_KEY})

# Legacy VideoCodecId.
CODEC_AVC = 7
CODEC_HEVC_LEGACY = 12
_LEGACY_VIDEO_CODECS = {
    2: "Sorenson H.263",
    3: "Screen Video",
    4: "On2 VP6",
    5: "On2 VP6 with alpha",
    6: "Screen Video v2",
    9: "MPEG-4 Part 2",  # FFmpeg's non-standard FLV_CODECID_MPEG4
    13: "AV1 (legacy codec id 13)",
}

# Legacy AVCPacketType.
AVC_SEQUENCE_HEADER = 0
AVC_NALU = 1
AVC_END_OF_SEQUENCE = 2

# E-RTMP VideoPacketType / AudioPacketType (shared numbering up to 2).
PACKET_SEQUENCE_START = 0
PACKET_CODED_FRAMES = 1
PACKET_SEQUENCE_END = 2
PACKET_CODED_FRAMES_X = 3
PACKET_METADATA = 4
PACKET_MPEG2TS_SEQUENCE_START = 5
PACKET_MULTITRACK = 6
PACKET_MODEX = 7
AUDIO_PACKET_MULTICHANNEL_CONFIG = 4
AUDIO_PACKET_MULTITRACK = 5

# AvMultitrackType (high nibble of the byte after a Multitrack packet type).
MULTITRACK_ONE_TRACK = 0
_MULTITRACK_NAMES = {1: "ManyTracks", 2: "ManyTracksManyCodecs"}

# Video FourCC -> our codec name; and FourCCs we recognise but refuse.
_VIDEO_FOURCCS: dict[bytes, VideoCodec] = {
    b"avc1": "h264",
    b"hvc1": "hevc",
    b"av01": "av1",
    b"vp09": "vp9",
}
_REFUSED_VIDEO_FOURCCS = {b"vp08": "VP8", b"vvc1": "VVC (H.266)"}
# FourCCs whose CodedFrames carry an SI24 composition time offset.
_CTS_FOURCCS = frozenset({b"avc1", b"hvc1"})

SOUND_FORMAT_EX_HEADER = 9
SOUND_FORMAT_AAC = 10
_LEGACY_AUDIO_CODECS = {
    0: "Linear PCM, platform endian",
    1: "ADPCM",
    2: "MP3",
    3: "Linear PCM, little endian",
    4: "Nellymoser 16 kHz mono",
    5: "Nellymoser 8 kHz mono",
    6: "Nellymoser",
    7: "G.711 A-law",
    8: "G.711 mu-law",
    11: "Speex",
    14: "MP3 8 kHz",
    15: "Device-specific sound",
}
AAC_SEQUENCE_HEADER = 0
AAC_RAW = 1
_REFUSED_AUDIO_FOURCCS = {
    b"Opus": "Opus",
    b"fLaC": "FLAC",
    b".mp3": "MP3",
    b"ac-3": "AC-3",
    b"ec-3": "E-AC-3",
}


#: A tag body: bytes, or the bytearray an RTMP message was reassembled in (not copied).
Payload: TypeAlias = bytes | bytearray

# FFmpeg's flvenc writes the sequence header from the stream's extradata when it writes the
# file/stream header; an encoder without a global header yet (libaom, an ADTS or Annex B
# copy) gives an empty one, and the real record follows as a second sequence start once the
# extract_extradata/aac_adtstoasc filter found it. So an empty one is not an error.
_EMPTY_SEQUENCE_START = "empty sequence start (the real one follows)"


def may_be_keyframe(head: bytes) -> bool:
    """Whether a video tag starting with ``head`` (its first bytes, maybe none yet) may be a
    keyframe: legacy and enhanced headers keep the frame type in the first byte."""
    if not head:
        return True
    frame_type = (head[0] >> 4) & 0x07 if head[0] & 0x80 else head[0] >> 4
    return frame_type in _KEY_FRAME_TYPES


def _fourcc_name(fourcc: bytes) -> str:
    return f"FourCC {fourcc.decode('latin-1')!r}"


def _si24(payload: Payload, offset: int) -> int:
    if len(payload) < offset + 3:
        raise FlvError("truncated composition time")
    value = int.from_bytes(payload[offset : offset + 3], "big")
    return value - (1 << 24) if value & 0x800000 else value


def _frame(
    kind: MediaKind, payload: Payload, offset: int, timestamp: int, cts: int, key: bool, track: int
) -> MediaPacket | Ignored:
    if offset >= len(payload):
        return Ignored(f"empty {kind} frame", track)
    # The only copy of frame bytes, straight into the packet's immutable bytes (a bytes or
    # bytearray slice would be a copy of its own first), so the packet owns its data even if
    # the caller reuses its buffer.
    data = bytes(memoryview(payload)[offset:])
    return MediaPacket(kind, timestamp, timestamp + cts, key, data, track)


# --- video --------------------------------------------------------------------------------


def _video_config(codec: VideoCodec, record: bytes) -> VideoConfig:
    # The codec layer knows nothing of FLV: its errors become this layer's, text unchanged.
    try:
        if codec == "h264":
            return avc.parse_config(record)
        if codec == "hevc":
            return hevc.parse_config(record)
        if codec == "av1":
            return av1.parse_config(record)
        return vp9.parse_config(record)
    except CodecError as exc:
        raise FlvError(str(exc)) from None


def parse_video_tag(payload: Payload, timestamp: int) -> VideoEvent:
    """Parse one video tag payload (RTMP message type 9, or an FLV file's tag type 9 body).

    Raises `UnsupportedCodec`/`UnsupportedFeature` for well-formed messages streamd does
    not ingest, and `FlvError` for malformed ones.
    """
    if not payload:
        return Ignored("empty video message")
    if payload[0] & 0x80:
        return _parse_enhanced_video(payload, timestamp)
    frame_type, codec_id = payload[0] >> 4, payload[0] & 0x0F
    if frame_type not in _FRAME_TYPES:
        raise FlvError(f"video: reserved frame type {frame_type}")
    if codec_id == CODEC_AVC:
        codec: VideoCodec = "h264"
    elif codec_id == CODEC_HEVC_LEGACY:
        codec = "hevc"
    else:
        name = _LEGACY_VIDEO_CODECS.get(codec_id, f"codec id {codec_id}")
        raise UnsupportedCodec("video", name)
    if frame_type == FRAME_COMMAND:
        # VideoCommand UI8 (seek start/end): a player-side signal, no picture.
        return Ignored("video command frame")
    if len(payload) < 5:
        raise FlvError("video: truncated AVC packet header")
    packet_type = payload[1]
    if packet_type == AVC_SEQUENCE_HEADER:
        if len(payload) == 5:
            return Ignored(_EMPTY_SEQUENCE_START)
        return VideoSequenceStart(_video_config(codec, bytes(payload[5:])))
    if packet_type == AVC_NALU:
        key = frame_type in _KEY_FRAME_TYPES
        return _frame("video", payload, 5, timestamp, _si24(payload, 2), key, 0)
    if packet_type == AVC_END_OF_SEQUENCE:
        return VideoSequenceEnd()
    raise FlvError(f"video: reserved AVCPacketType {packet_type}")


def _skip_modex(payload: Payload, offset: int, packet_type: int) -> tuple[int, int]:
    """Skip ModEx blocks (E-RTMP v2); return (offset, the real packet type).

    The only ModEx type defined, TimestampOffsetNano, refines the timestamp by under 1 ms;
    streamd keeps millisecond timing (as FFmpeg does), so every ModEx block is skipped.
    """
    while packet_type == PACKET_MODEX:
        if offset >= len(payload):
            raise FlvError("truncated ModEx")
        size = payload[offset] + 1
        offset += 1
        if size == 256:
            if offset + 2 > len(payload):
                raise FlvError("truncated ModEx")
            size = int.from_bytes(payload[offset : offset + 2], "big") + 1
            offset += 2
        offset += size
        if offset >= len(payload):
            raise FlvError("truncated ModEx")
        packet_type = payload[offset] & 0x0F  # high nibble: the ModEx type
        offset += 1
    return offset, packet_type


def _parse_enhanced_video(payload: Payload, timestamp: int) -> VideoEvent:
    frame_type = (payload[0] >> 4) & 0x07
    offset, packet_type = _skip_modex(payload, 1, payload[0] & 0x0F)

    if packet_type != PACKET_METADATA and frame_type == FRAME_COMMAND:
        return Ignored("video command frame")  # a VideoCommand UI8 follows, no FourCC
    if packet_type != PACKET_METADATA and frame_type not in _FRAME_TYPES:
        raise FlvError(f"video: reserved frame type {frame_type}")

    multitrack = packet_type == PACKET_MULTITRACK
    if multitrack:
        if offset >= len(payload):
            raise FlvError("video: truncated multitrack header")
        track_kind, packet_type = payload[offset] >> 4, payload[offset] & 0x0F
        offset += 1
        if track_kind != MULTITRACK_ONE_TRACK:
            name = _MULTITRACK_NAMES.get(track_kind, f"multitrack type {track_kind}")
            raise UnsupportedFeature("video", f"E-RTMP {name} messages")
        if packet_type in (PACKET_MULTITRACK, PACKET_MODEX):
            raise FlvError(f"video: packet type {packet_type} inside a multitrack message")

    fourcc = bytes(payload[offset : offset + 4])  # hashable even if given a bytearray
    if len(fourcc) < 4:
        raise FlvError("video: truncated FourCC")
    offset += 4
    track = 0
    if multitrack:
        if offset >= len(payload):
            raise FlvError("video: truncated track id")
        track = payload[offset]
        offset += 1

    codec = _VIDEO_FOURCCS.get(fourcc)
    if codec is None:
        raise UnsupportedCodec("video", _REFUSED_VIDEO_FOURCCS.get(fourcc, _fourcc_name(fourcc)))

    if packet_type == PACKET_SEQUENCE_START:
        if offset == len(payload):
            return Ignored(_EMPTY_SEQUENCE_START, track)
        return VideoSequenceStart(_video_config(codec, bytes(payload[offset:])), track)
    if packet_type in (PACKET_CODED_FRAMES, PACKET_CODED_FRAMES_X):
        cts = 0
        if packet_type == PACKET_CODED_FRAMES and fourcc in _CTS_FOURCCS:
            cts = _si24(payload, offset)
            offset += 3
        key = frame_type in _KEY_FRAME_TYPES
        return _frame("video", payload, offset, timestamp, cts, key, track)
    if packet_type == PACKET_SEQUENCE_END:
        return VideoSequenceEnd(track)
    if packet_type == PACKET_METADATA:
        return VideoMetadata(bytes(payload[offset:]), track)
    if packet_type == PACKET_MPEG2TS_SEQUENCE_START:
        raise UnsupportedFeature("video", "E-RTMP MPEG2TSSequenceStart (AV1VideoDescriptor)")
    raise FlvError(f"video: reserved VideoPacketType {packet_type}")


# --- audio --------------------------------------------------------------------------------


def parse_audio_tag(payload: Payload, timestamp: int) -> AudioEvent:
    """Parse one audio tag payload (RTMP message type 8, or an FLV file's tag type 8 body).

    AAC frames are keyframes with pts == dts. Raises like `parse_video_tag`.
    """
    if not payload:
        # E-RTMP v2: an audio message without an AudioTagHeader signals silence.
        return Ignored("empty audio message")
    sound_format = payload[0] >> 4
    if sound_format == SOUND_FORMAT_EX_HEADER:
        return _parse_enhanced_audio(payload, timestamp)
    if sound_format != SOUND_FORMAT_AAC:
        name = _LEGACY_AUDIO_CODECS.get(sound_format, f"SoundFormat {sound_format}")
        raise UnsupportedCodec("audio", name)
    # SoundRate/SoundSize/SoundType are fixed for AAC; the AudioSpecificConfig is the truth.
    if len(payload) < 2:
        raise FlvError("audio: truncated AAC packet header")
    packet_type = payload[1]
    if packet_type == AAC_SEQUENCE_HEADER:
        if len(payload) == 2:
            return Ignored(_EMPTY_SEQUENCE_START)
        return AudioSequenceStart(_audio_config(bytes(payload[2:])))
    if packet_type == AAC_RAW:
        return _frame("audio", payload, 2, timestamp, 0, True, 0)
    raise FlvError(f"audio: reserved AACPacketType {packet_type}")


def _audio_config(record: bytes) -> AudioConfig:
    try:
        return aac.parse_config(record)
    except CodecError as exc:
        raise FlvError(str(exc)) from None


def _parse_enhanced_audio(payload: Payload, timestamp: int) -> AudioEvent:
    offset, packet_type = _skip_modex(payload, 1, payload[0] & 0x0F)
    multitrack = packet_type == AUDIO_PACKET_MULTITRACK
    if multitrack:
        if offset >= len(payload):
            raise FlvError("audio: truncated multitrack header")
        track_kind, packet_type = payload[offset] >> 4, payload[offset] & 0x0F
        offset += 1
        if track_kind != MULTITRACK_ONE_TRACK:
            name = _MULTITRACK_NAMES.get(track_kind, f"multitrack type {track_kind}")
            raise UnsupportedFeature("audio", f"E-RTMP {name} messages")
        if packet_type in (AUDIO_PACKET_MULTITRACK, PACKET_MODEX):
            raise FlvError(f"audio: packet type {packet_type} inside a multitrack message")

    fourcc = bytes(payload[offset : offset + 4])  # hashable even if given a bytearray
    if len(fourcc) < 4:
        raise FlvError("audio: truncated FourCC")
    offset += 4
    track = 0
    if multitrack:
        if offset >= len(payload):
            raise FlvError("audio: truncated track id")
        track = payload[offset]
        offset += 1
    if fourcc != b"mp4a":
        raise UnsupportedCodec("audio", _REFUSED_AUDIO_FOURCCS.get(fourcc, _fourcc_name(fourcc)))

    if packet_type == PACKET_SEQUENCE_START:
        if offset == len(payload):
            return Ignored(_EMPTY_SEQUENCE_START, track)
        return AudioSequenceStart(_audio_config(bytes(payload[offset:])), track)
    if packet_type == PACKET_CODED_FRAMES:
        return _frame("audio", payload, offset, timestamp, 0, True, track)
    if packet_type == PACKET_SEQUENCE_END:
        return AudioSequenceEnd(track)
    if packet_type == AUDIO_PACKET_MULTICHANNEL_CONFIG:
        # FFmpeg sends the channel layout for AAC with more than 2 channels; the
        # AudioSpecificConfig already gives the channel count, and the order is AAC's own.
        return Ignored("audio multichannel config", track)
    raise FlvError(f"audio: reserved AudioPacketType {packet_type}")
