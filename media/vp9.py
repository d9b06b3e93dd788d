"""VP9: VPCodecConfigurationRecord (VP Codec ISO Media File Format Binding, version 1).

E-RTMP's vp09 SequenceStart carries the vpcC box payload, FullBox version and flags
included (what FFmpeg's flvenc writes). It gives profile, level and bit depth for the
`vp09.PP.LL.DD` codec string, but no frame size: `frame_size()` reads that from the
uncompressed header of a keyframe (VP9 bitstream spec 6.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from media.bits import BitReader, ByteReader
from media.errors import CodecError
from media.types import VideoConfig

_SYNC_CODE = 0x498342
_CS_RGB = 7


def codec_string(profile: int, level: int, bit_depth: int) -> str:
    """vp09.PP.LL.DD (the short form of the VP9 codecs parameter string)."""
    return f"vp09.{profile:02d}.{level:02d}.{bit_depth:02d}"


@dataclass(frozen=True, slots=True)
class VpCodecConfigurationRecord:
    profile: int
    level: int
    bit_depth: int
    #: 0 = 4:2:0 vertical, 1 = 4:2:0 colocated, 2 = 4:2:2, 3 = 4:4:4.
    chroma_subsampling: int
    video_full_range: bool
    colour_primaries: int
    transfer_characteristics: int
    matrix_coefficients: int

    @property
    def chroma_format(self) -> int:
        return {0: 1, 1: 1, 2: 2, 3: 3}.get(self.chroma_subsampling, 1)

    @classmethod
    def parse(cls, data: bytes) -> VpCodecConfigurationRecord:
        r = ByteReader(data, "vpcC")
        version = r.u8()
        if version != 1:
            # Version 0 (an early draft with another field layout) is not sent by E-RTMP
            # encoders; guessing its layout would produce a wrong codec string.
            raise CodecError(f"vpcC: version {version} is not 1")
        r.u24()  # flags
        profile, level, packed = r.u8(), r.u8(), r.u8()
        bit_depth = packed >> 4
        if bit_depth not in (8, 10, 12):
            raise CodecError(f"vpcC: bit depth {bit_depth}")
        primaries, transfer, matrix = r.u8(), r.u8(), r.u8()
        r.read(r.u16())  # codecIntializationData (empty for VP9)
        return cls(
            profile=profile,
            level=level,
            bit_depth=bit_depth,
            chroma_subsampling=(packed >> 1) & 0x07,
            video_full_range=bool(packed & 1),
            colour_primaries=primaries,
            transfer_characteristics=transfer,
            matrix_coefficients=matrix,
        )


def frame_size(frame: bytes) -> tuple[int, int] | None:
    """(width, height) from a VP9 keyframe's uncompressed header; None for other frames.

    A superframe starts with its first frame, which is the keyframe when the superframe
    holds one, so the packet can be passed as is.
    """
    b = BitReader(frame[:64], "VP9 frame header")
    if b.u(2) != 2:  # frame_marker
        raise CodecError("VP9: bad frame_marker")
    profile = b.u(1) | (b.u(1) << 1)
    if profile == 3:
        b.skip(1)  # reserved_zero
    if b.flag():  # show_existing_frame
        return None
    if b.flag():  # frame_type: 1 = NON_KEY_FRAME
        return None
    b.skip(2)  # show_frame, error_resilient_mode
    if b.u(24) != _SYNC_CODE:
        raise CodecError("VP9: bad keyframe sync code")
    if profile >= 2:
        b.skip(1)  # ten_or_twelve_bit
    if b.u(3) != _CS_RGB:  # color_space
        b.skip(1)  # color_range
        if profile in (1, 3):
            b.skip(3)  # subsampling_x, subsampling_y, reserved_zero
    elif profile in (1, 3):
        b.skip(1)  # reserved_zero
    return b.u(16) + 1, b.u(16) + 1


def parse_config(data: bytes) -> VideoConfig:
    """Build a `VideoConfig` from a vpcC payload; width/height are 0 (see `frame_size`)."""
    record = VpCodecConfigurationRecord.parse(data)
    return VideoConfig(
        codec="vp9",
        extradata=bytes(data),
        width=0,
        height=0,
        codec_string=codec_string(record.profile, record.level, record.bit_depth),
        profile=record.profile,
        level=record.level,
        bit_depth=record.bit_depth,
        chroma_format=record.chroma_format,
    )
