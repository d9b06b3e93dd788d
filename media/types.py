"""Media types that ingest hands to its consumers (the packager, the benchmark).

They are protocol-neutral: RTMP/FLV builds them today, WHIP may later. Timestamps are integer
milliseconds, the FLV/RTMP timebase (1/1000); consumers that need another timebase rescale.

- `VideoConfig` / `AudioConfig`: one per codec sequence, built from the publisher's decoder
  configuration record. `extradata` is exactly what goes into the MP4 sample entry box
  (avcC, hvcC, av1C, vpcC payload; the AudioSpecificConfig for esds), so a remuxer can hand
  it to PyAV/FFmpeg unchanged.
- `MediaPacket`: one access unit (video) or one raw AAC frame (audio).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

VideoCodec = Literal["h264", "hevc", "av1", "vp9"]
AudioCodec = Literal["aac"]
MediaKind = Literal["video", "audio"]


@dataclass(frozen=True, slots=True)
class VideoConfig:
    """A video codec configuration, as announced by a sequence header/SequenceStart.

    `profile` and `level` are the codec's own numbers: profile_idc/level_idc for H.264 and
    HEVC (HEVC level_idc is 30 x the level, e.g. 93 for 3.1), seq_profile/seq_level_idx_0 for
    AV1, profile/level for VP9 (level 31 = 3.1). `width`/`height` are the displayed size after
    cropping; 0 means the configuration does not carry it (VP9 always, AV1 when the av1C has
    no sequence header OBU); see `media.vp9.frame_size` and
    `media.av1.sequence_header_in_obus` to take it from the first keyframe.
    """

    codec: VideoCodec
    #: The raw decoder configuration record (MP4 avcC/hvcC/av1C/vpcC box payload).
    extradata: bytes
    width: int
    height: int
    #: RFC 6381 `codecs` value for HLS/DASH, e.g. "avc1.64001f", "hvc1.1.6.L93.B0".
    codec_string: str
    profile: int
    level: int
    bit_depth: int
    #: 0 = monochrome, 1 = 4:2:0, 2 = 4:2:2, 3 = 4:4:4.
    chroma_format: int
    #: From the bitstream timing info when the encoder wrote it (x264/x265 do), else None.
    frame_rate: Fraction | None = None
    #: Size of the big-endian length prefix of each NAL unit in H.264/HEVC packets (1, 2 or
    #: 4); None for AV1/VP9, whose packets are OBUs/frames.
    nal_length_size: int | None = None


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """An AAC configuration, from the AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1).

    `sample_rate` is the AAC core rate of the AudioSpecificConfig. With SBR (HE-AAC) the
    decoder outputs `extension_sample_rate` (normally twice the core rate) when the config
    signals it explicitly; implicit SBR is invisible in the config and not reported.
    `channels` is the decoder's output channel count: from channelConfiguration or the
    program config element, 2 for a mono core with explicit Parametric Stereo (HE-AAC v2); 0
    only when the config does not say (never seen from real encoders).
    """

    codec: AudioCodec
    #: The raw AudioSpecificConfig (the DecoderSpecificInfo of the MP4 esds box).
    extradata: bytes
    #: The top-level audioObjectType: 2 = AAC LC, 5 = SBR (HE-AAC), 29 = PS (HE-AAC v2).
    object_type: int
    sample_rate: int
    channels: int
    #: RFC 6381 `codecs` value, "mp4a.40.<object_type>", e.g. "mp4a.40.2".
    codec_string: str
    sbr: bool = False
    ps: bool = False
    extension_sample_rate: int | None = None


@dataclass(slots=True)
class MediaPacket:
    """One coded frame with its timing.

    Not frozen, unlike the configs: one is made per frame on the hot path, and a frozen
    dataclass's ``__init__`` pays an ``object.__setattr__`` per field. Treat it as immutable.

    Video `data` is the access unit as carried in FLV: for H.264/HEVC the NAL units with
    big-endian length prefixes (AVCC/HVCC form, `VideoConfig.nal_length_size` bytes), for
    AV1 the OBUs of one temporal unit (low-overhead format), for VP9 the frame/superframe.
    Audio `data` is one raw AAC frame (no ADTS header).

    `pts_ms = dts_ms + composition time offset` (negative offsets are passed through as
    sent). `dts_ms` is the message timestamp given to the parser: 32-bit and wrapping in
    RTMP unless the session extends it first.
    """

    kind: MediaKind
    dts_ms: int
    pts_ms: int
    keyframe: bool
    data: bytes
    #: E-RTMP v2 multitrack track id; 0 is the default (and only legacy) track.
    track_id: int = 0
