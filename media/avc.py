"""H.264: AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3) and SPS essentials (H.264 7.3.2.1).

Only what ingest needs: the record's arrays and header bytes (for the `avc1.PPCCLL` codec
string), and from the first SPS the coded size after cropping, chroma format, bit depth and
the VUI frame rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from media.bits import BitReader, ByteReader, strip_emulation_prevention
from media.errors import CodecError
from media.types import VideoConfig

# Profiles whose SPS carries chroma_format_idc, bit depths and scaling matrices (7.3.2.1.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
# Profiles without the avcC chroma/bit-depth extension (ISO/IEC 14496-15:2017 5.3.3.1.2;
# earlier editions listed only 100/110/122/144, and FFmpeg follows the newer rule).
_NO_RECORD_EXT_PROFILES = frozenset({66, 77, 88})
NAL_SPS = 7
NAL_PPS = 8
# The MP4 visual sample entry stores width and height as 16-bit fields.
MAX_DIMENSION = 0xFFFF


def codec_string(profile_idc: int, constraint_flags: int, level_idc: int) -> str:
    """RFC 6381 / ISO/IEC 14496-15 Annex E: avc1.PPCCLL, hex of the record's three bytes."""
    return f"avc1.{profile_idc:02x}{constraint_flags:02x}{level_idc:02x}"


@dataclass(frozen=True, slots=True)
class AvcDecoderConfigurationRecord:
    profile_idc: int
    constraint_flags: int
    level_idc: int
    nal_length_size: int
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]
    #: The high-profile extension (chroma_format, bit_depth_luma/chroma_minus8, SPS ext NALs),
    #: present only when the record has it; many encoders omit it.
    chroma_format: int | None = None
    bit_depth_luma: int | None = None
    bit_depth_chroma: int | None = None
    sps_ext: tuple[bytes, ...] = ()

    @classmethod
    def parse(cls, data: bytes) -> AvcDecoderConfigurationRecord:
        r = ByteReader(data, "avcC")
        if r.u8() != 1:
            raise CodecError("avcC: configurationVersion is not 1")
        profile, compat, level = r.u8(), r.u8(), r.u8()
        length_size = (r.u8() & 0x03) + 1
        if length_size == 3:
            raise CodecError("avcC: lengthSizeMinusOne 2 is reserved")
        sps = tuple(r.read(r.u16()) for _ in range(r.u8() & 0x1F))
        pps = tuple(r.read(r.u16()) for _ in range(r.u8()))
        if not sps:
            raise CodecError("avcC: no SPS")
        if any(not nal or nal[0] & 0x1F != NAL_SPS for nal in sps):
            raise CodecError("avcC: SPS array holds a NAL unit that is not an SPS")
        if any(not nal for nal in pps):
            raise CodecError("avcC: empty PPS")
        record = cls(profile, compat, level, length_size, sps, pps)
        if profile not in _NO_RECORD_EXT_PROFILES and r.remaining >= 4:
            # Optional in practice: FFmpeg writes it, others do not, and the SPS says the
            # same, so a malformed extension is ignored rather than fatal.
            try:
                chroma = r.u8() & 0x03
                luma = (r.u8() & 0x07) + 8
                chroma_depth = (r.u8() & 0x07) + 8
                ext = tuple(r.read(r.u16()) for _ in range(r.u8()))
            except CodecError:
                return record
            return cls(
                profile,
                compat,
                level,
                length_size,
                sps,
                pps,
                chroma_format=chroma,
                bit_depth_luma=luma,
                bit_depth_chroma=chroma_depth,
                sps_ext=ext,
            )
        return record

    def __bytes__(self) -> bytes:
        out = bytearray((1, self.profile_idc, self.constraint_flags, self.level_idc))
        out.append(0xFC | (self.nal_length_size - 1))
        out.append(0xE0 | len(self.sps))
        for nal in self.sps:
            out += len(nal).to_bytes(2, "big") + nal
        out.append(len(self.pps))
        for nal in self.pps:
            out += len(nal).to_bytes(2, "big") + nal
        if self.chroma_format is not None:
            out.append(0xFC | self.chroma_format)
            out.append(0xF8 | ((self.bit_depth_luma or 8) - 8))
            out.append(0xF8 | ((self.bit_depth_chroma or 8) - 8))
            out.append(len(self.sps_ext))
            for nal in self.sps_ext:
                out += len(nal).to_bytes(2, "big") + nal
        return bytes(out)


@dataclass(frozen=True, slots=True)
class AvcSps:
    profile_idc: int
    constraint_flags: int
    level_idc: int
    chroma_format_idc: int
    bit_depth_luma: int
    bit_depth_chroma: int
    pic_width_in_mbs: int
    pic_height_in_map_units: int
    frame_mbs_only: bool
    #: frame_crop_left/right/top/bottom_offset, in crop units (not pixels).
    crop: tuple[int, int, int, int]
    width: int
    height: int
    frame_rate: Fraction | None

    @classmethod
    def parse(cls, nal: bytes) -> AvcSps:
        if not nal or nal[0] & 0x1F != NAL_SPS:
            raise CodecError("SPS: not an SPS NAL unit")
        b = BitReader(strip_emulation_prevention(nal[1:]), "SPS")
        profile, constraints, level = b.u(8), b.u(8), b.u(8)
        b.ue(31)  # seq_parameter_set_id
        chroma_format, separate_planes, depth_luma, depth_chroma = 1, False, 8, 8
        if profile in _HIGH_PROFILES:
            chroma_format = b.ue(3)
            if chroma_format == 3:
                separate_planes = b.flag()
            depth_luma = b.ue(6) + 8
            depth_chroma = b.ue(6) + 8
            b.skip(1)  # qpprime_y_zero_transform_bypass_flag
            if b.flag():  # seq_scaling_matrix_present_flag
                for i in range(8 if chroma_format != 3 else 12):
                    if b.flag():
                        _skip_scaling_list(b, 16 if i < 6 else 64)
        b.ue(12)  # log2_max_frame_num_minus4
        poc_type = b.ue(2)
        if poc_type == 0:
            b.ue(12)  # log2_max_pic_order_cnt_lsb_minus4
        elif poc_type == 1:
            b.skip(1)  # delta_pic_order_always_zero_flag
            b.se()  # offset_for_non_ref_pic
            b.se()  # offset_for_top_to_bottom_field
            for _ in range(b.ue(255)):
                b.se()  # offset_for_ref_frame[i]
        b.ue()  # max_num_ref_frames
        b.skip(1)  # gaps_in_frame_num_value_allowed_flag
        width_mbs = b.ue() + 1
        height_map_units = b.ue() + 1
        frame_mbs_only = b.flag()
        if not frame_mbs_only:
            b.skip(1)  # mb_adaptive_frame_field_flag
        b.skip(1)  # direct_8x8_inference_flag
        crop = (0, 0, 0, 0)
        if b.flag():  # frame_cropping_flag
            crop = (b.ue(), b.ue(), b.ue(), b.ue())
        frame_rate = _vui_frame_rate(b) if b.flag() else None

        # 7.4.2.1.1: crop units depend on ChromaArrayType and field coding.
        chroma_array_type = 0 if separate_planes else chroma_format
        sub_w = 2 if chroma_array_type in (1, 2) else 1
        sub_h = 2 if chroma_array_type == 1 else 1
        field_factor = 1 if frame_mbs_only else 2
        width = width_mbs * 16 - sub_w * (crop[0] + crop[1])
        height = field_factor * height_map_units * 16 - sub_h * field_factor * (crop[2] + crop[3])
        if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
            raise CodecError(f"SPS: picture size {width}x{height} out of range")
        return cls(
            profile_idc=profile,
            constraint_flags=constraints,
            level_idc=level,
            chroma_format_idc=chroma_format,
            bit_depth_luma=depth_luma,
            bit_depth_chroma=depth_chroma,
            pic_width_in_mbs=width_mbs,
            pic_height_in_map_units=height_map_units,
            frame_mbs_only=frame_mbs_only,
            crop=crop,
            width=width,
            height=height,
            frame_rate=frame_rate,
        )


def _skip_scaling_list(b: BitReader, size: int) -> None:
    last, next_scale = 8, 8
    for _ in range(size):
        if next_scale != 0:
            next_scale = (last + b.se() + 256) % 256
        last = next_scale or last


def _vui_frame_rate(b: BitReader) -> Fraction | None:
    """Read the VUI up to timing_info (E.1.1) and return time_scale / (2 * num_units_in_tick).

    H.264 ticks count fields, hence the factor 2 (x264 writes 1/50 for 25 fps).
    """
    # aspect_ratio_info_present_flag, then aspect_ratio_idc == Extended_SAR
    if b.flag() and b.u(8) == 255:
        b.skip(32)  # sar_width, sar_height
    if b.flag():  # overscan_info_present_flag
        b.skip(1)
    if b.flag():  # video_signal_type_present_flag
        b.skip(4)  # video_format, video_full_range_flag
        if b.flag():  # colour_description_present_flag
            b.skip(24)
    if b.flag():  # chroma_loc_info_present_flag
        b.ue()
        b.ue()
    if not b.flag():  # timing_info_present_flag
        return None
    num_units_in_tick, time_scale = b.u(32), b.u(32)
    if num_units_in_tick == 0 or time_scale == 0:
        return None
    return Fraction(time_scale, 2 * num_units_in_tick)


def parse_config(data: bytes) -> VideoConfig:
    """Build a `VideoConfig` from an AVCDecoderConfigurationRecord (the avcC payload)."""
    record = AvcDecoderConfigurationRecord.parse(data)
    sps = AvcSps.parse(record.sps[0])
    return VideoConfig(
        codec="h264",
        extradata=bytes(data),
        width=sps.width,
        height=sps.height,
        codec_string=codec_string(record.profile_idc, record.constraint_flags, record.level_idc),
        profile=record.profile_idc,
        level=record.level_idc,
        bit_depth=sps.bit_depth_luma,
        chroma_format=sps.chroma_format_idc,
        frame_rate=sps.frame_rate,
        nal_length_size=record.nal_length_size,
    )
