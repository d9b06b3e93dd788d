"""AV1: AV1CodecConfigurationRecord (AV1-ISOBMFF 2.3) and the sequence header OBU essentials.

The record's fixed 4 bytes give profile, level, tier and bit depth (the `av01.P.LLT.DD`
codec string); the sequence header OBU in its configOBUs, when present, gives the maximum
frame size and, if the encoder wrote timing info, the frame rate (AV1 spec 5.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from media.bits import BitReader, ByteReader
from media.errors import CodecError
from media.types import VideoConfig

OBU_SEQUENCE_HEADER = 1
# A leb128() is at most 8 bytes (AV1 4.10.5).
_MAX_LEB128_BYTES = 8
# A sequence header is a few dozen bytes; 32 operating points with every option still fit
# well under this, and bounding the window keeps bit reads cheap on peer-sized buffers.
_MAX_SEQUENCE_HEADER_BYTES = 2048


def codec_string(profile: int, level_idx: int, tier: int, bit_depth: int) -> str:
    """AV1-ISOBMFF Annex A "Codecs Parameter String", short form: av01.P.LLT.DD."""
    return f"av01.{profile}.{level_idx:02d}{'H' if tier else 'M'}.{bit_depth:02d}"


@dataclass(frozen=True, slots=True)
class Av1CodecConfigurationRecord:
    seq_profile: int
    seq_level_idx_0: int
    seq_tier_0: int
    high_bitdepth: bool
    twelve_bit: bool
    monochrome: bool
    chroma_subsampling_x: int
    chroma_subsampling_y: int
    chroma_sample_position: int
    #: initial_presentation_delay_minus_one + 1, or None when not present.
    initial_presentation_delay: int | None
    config_obus: bytes

    @property
    def bit_depth(self) -> int:
        if self.seq_profile == 2 and self.high_bitdepth:
            return 12 if self.twelve_bit else 10
        return 10 if self.high_bitdepth else 8

    @property
    def chroma_format(self) -> int:
        if self.monochrome:
            return 0
        if self.chroma_subsampling_x and self.chroma_subsampling_y:
            return 1
        return 2 if self.chroma_subsampling_x else 3

    @classmethod
    def parse(cls, data: bytes) -> Av1CodecConfigurationRecord:
        r = ByteReader(data, "av1C")
        b0, b1, b2, b3 = r.u8(), r.u8(), r.u8(), r.u8()
        if b0 != 0x81:  # marker = 1, version = 1
            raise CodecError(f"av1C: bad marker/version byte 0x{b0:02x}")
        return cls(
            seq_profile=b1 >> 5,
            seq_level_idx_0=b1 & 0x1F,
            seq_tier_0=b2 >> 7,
            high_bitdepth=bool(b2 & 0x40),
            twelve_bit=bool(b2 & 0x20),
            monochrome=bool(b2 & 0x10),
            chroma_subsampling_x=(b2 >> 3) & 1,
            chroma_subsampling_y=(b2 >> 2) & 1,
            chroma_sample_position=b2 & 0x03,
            initial_presentation_delay=(b3 & 0x0F) + 1 if b3 & 0x10 else None,
            config_obus=r.rest(),
        )


@dataclass(frozen=True, slots=True)
class Av1SequenceHeader:
    seq_profile: int
    #: max_frame_width_minus_1 + 1 and max_frame_height_minus_1 + 1.
    max_frame_width: int
    max_frame_height: int
    frame_rate: Fraction | None

    @classmethod
    def parse(cls, payload: bytes) -> Av1SequenceHeader:
        """Parse a sequence_header_obu() payload (5.5.1) up to the maximum frame size."""
        b = BitReader(payload[:_MAX_SEQUENCE_HEADER_BYTES], "AV1 sequence header")
        profile = b.u(3)
        b.skip(1)  # still_picture
        frame_rate = None
        if b.flag():  # reduced_still_picture_header
            b.skip(5)  # seq_level_idx[0]
        else:
            decoder_model_info_present = False
            buffer_delay_length = 0
            if b.flag():  # timing_info_present_flag
                num_units, time_scale = b.u(32), b.u(32)
                if b.flag():  # equal_picture_interval
                    ticks_per_picture = b.uvlc() + 1
                    if num_units and time_scale:
                        frame_rate = Fraction(time_scale, num_units * ticks_per_picture)
                if b.flag():  # decoder_model_info_present_flag
                    decoder_model_info_present = True
                    buffer_delay_length = b.u(5) + 1
                    b.skip(32 + 5 + 5)  # num_units_in_decoding_tick, two lengths
            initial_display_delay_present = b.flag()
            for _ in range(b.u(5) + 1):  # operating_points_cnt_minus_1
                b.skip(12)  # operating_point_idc
                if b.u(5) > 7:  # seq_level_idx
                    b.skip(1)  # seq_tier
                if decoder_model_info_present and b.flag():
                    b.skip(2 * buffer_delay_length + 1)  # buffer delays, low_delay_mode
                if initial_display_delay_present and b.flag():
                    b.skip(4)  # initial_display_delay_minus_1
        width_bits = b.u(4) + 1
        height_bits = b.u(4) + 1
        width = b.u(width_bits) + 1
        height = b.u(height_bits) + 1
        return cls(profile, width, height, frame_rate)


def _leb128(r: ByteReader) -> int:
    value = 0
    for i in range(_MAX_LEB128_BYTES):
        byte = r.u8()
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value
    raise CodecError("AV1: leb128 longer than 8 bytes")


def sequence_header_in_obus(data: bytes) -> Av1SequenceHeader | None:
    """Find and parse the first sequence header OBU in low-overhead OBUs (configOBUs or a
    temporal unit); None when there is none. OBUs without obu_has_size_field end the walk,
    since their size is implicit (they can only be last)."""
    r = ByteReader(data, "AV1 OBUs")
    while r.remaining:
        header = r.u8()
        if header & 0x80:
            raise CodecError("AV1: obu_forbidden_bit set")
        if header & 0x04:  # obu_extension_flag
            r.u8()
        obu_type = (header >> 3) & 0x0F
        size = _leb128(r) if header & 0x02 else r.remaining
        payload = r.read(size)
        if obu_type == OBU_SEQUENCE_HEADER:
            return Av1SequenceHeader.parse(payload)
    return None


def parse_config(data: bytes) -> VideoConfig:
    """Build a `VideoConfig` from an AV1CodecConfigurationRecord (the av1C payload).

    Width and height are 0 when configOBUs holds no sequence header (allowed by the spec;
    FFmpeg always includes it): take them from the first keyframe with
    `sequence_header_in_obus(packet.data)`.
    """
    record = Av1CodecConfigurationRecord.parse(data)
    header = sequence_header_in_obus(record.config_obus)
    return VideoConfig(
        codec="av1",
        extradata=bytes(data),
        width=header.max_frame_width if header else 0,
        height=header.max_frame_height if header else 0,
        codec_string=codec_string(
            record.seq_profile, record.seq_level_idx_0, record.seq_tier_0, record.bit_depth
        ),
        profile=record.seq_profile,
        level=record.seq_level_idx_0,
        bit_depth=record.bit_depth,
        chroma_format=record.chroma_format,
        frame_rate=header.frame_rate if header else None,
    )
