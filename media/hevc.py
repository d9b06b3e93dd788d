"""HEVC: HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 8.3.3.1) and SPS/VPS essentials.

The record header gives the codec string; the first SPS gives the displayed size (after the
conformance window), chroma format, bit depth and, best effort, the VUI frame rate (x265
writes it there; other encoders may use the VPS timing info, also read).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from media.avc import MAX_DIMENSION
from media.bits import BitReader, ByteReader, strip_emulation_prevention
from media.errors import CodecError
from media.types import VideoConfig

NAL_VPS = 32
NAL_SPS = 33
NAL_PPS = 34
_MAX_SUB_LAYERS_MINUS1 = 6
# general_profile_space..general_inbld/reserved: 2+1+5+32+4+43+1 bits (7.3.3).
_PROFILE_BITS = 88


def codec_string(
    profile_space: int,
    tier: int,
    profile_idc: int,
    compatibility_flags: int,
    level_idc: int,
    constraint_flags: bytes,
) -> str:
    """ISO/IEC 14496-15 Annex E.3, e.g. "hvc1.1.6.L93.B0".

    Profile space as "", A, B, C before profile_idc; the 32 compatibility flags in reverse
    bit order, in hex; tier L/H and level_idc; then the six constraint bytes in hex with
    trailing zero bytes dropped.
    """
    space = ("", "A", "B", "C")[profile_space & 3]
    compat = int(f"{compatibility_flags:032b}"[::-1], 2)
    parts = [
        "hvc1",
        f"{space}{profile_idc}",
        f"{compat:X}",
        f"{'H' if tier else 'L'}{level_idc}",
        *(f"{byte:02X}" for byte in constraint_flags.rstrip(b"\x00")),
    ]
    return ".".join(parts)


@dataclass(frozen=True, slots=True)
class HevcDecoderConfigurationRecord:
    profile_space: int
    tier: int
    profile_idc: int
    compatibility_flags: int
    #: general_progressive_source_flag .. general_reserved: 48 bits as 6 bytes.
    constraint_flags: bytes
    level_idc: int
    chroma_format: int
    bit_depth_luma: int
    bit_depth_chroma: int
    #: In frames per 256 seconds; 0 = unspecified (what FFmpeg writes).
    avg_frame_rate: int
    nal_length_size: int
    #: (NAL_unit_type, NAL units) per array, in record order.
    arrays: tuple[tuple[int, tuple[bytes, ...]], ...]

    def nal_units(self, nal_type: int) -> tuple[bytes, ...]:
        return tuple(nal for kind, nals in self.arrays if kind == nal_type for nal in nals)

    @classmethod
    def parse(cls, data: bytes) -> HevcDecoderConfigurationRecord:
        r = ByteReader(data, "hvcC")
        if r.u8() != 1:
            raise CodecError("hvcC: configurationVersion is not 1")
        b = r.u8()
        compat = r.u32()
        constraints = r.read(6)
        level = r.u8()
        r.u16()  # min_spatial_segmentation_idc
        r.u8()  # parallelismType
        chroma = r.u8() & 0x03
        depth_luma = (r.u8() & 0x07) + 8
        depth_chroma = (r.u8() & 0x07) + 8
        avg_frame_rate = r.u16()
        length_size = (r.u8() & 0x03) + 1
        if length_size == 3:
            raise CodecError("hvcC: lengthSizeMinusOne 2 is reserved")
        arrays = []
        for _ in range(r.u8()):
            nal_type = r.u8() & 0x3F
            arrays.append((nal_type, tuple(r.read(r.u16()) for _ in range(r.u16()))))
        return cls(
            profile_space=b >> 6,
            tier=(b >> 5) & 1,
            profile_idc=b & 0x1F,
            compatibility_flags=compat,
            constraint_flags=constraints,
            level_idc=level,
            chroma_format=chroma,
            bit_depth_luma=depth_luma,
            bit_depth_chroma=depth_chroma,
            avg_frame_rate=avg_frame_rate,
            nal_length_size=length_size,
            arrays=tuple(arrays),
        )


def _rbsp(nal: bytes, nal_type: int, what: str) -> BitReader:
    if len(nal) < 2 or (nal[0] >> 1) & 0x3F != nal_type:
        raise CodecError(f"{what}: wrong NAL unit type")
    return BitReader(strip_emulation_prevention(nal[2:]), what)


def _skip_profile_tier_level(b: BitReader, max_sub_layers_minus1: int) -> None:
    """profile_tier_level(1, maxNumSubLayersMinus1) (7.3.3), read and dropped."""
    b.skip(_PROFILE_BITS + 8)  # general profile fields + general_level_idc
    present = [(b.flag(), b.flag()) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1 > 0:
        b.skip(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits
    for profile_present, level_present in present:
        b.skip((_PROFILE_BITS if profile_present else 0) + (8 if level_present else 0))


def _max_sub_layers_minus1(b: BitReader, what: str) -> int:
    value = b.u(3)
    if value > _MAX_SUB_LAYERS_MINUS1:
        raise CodecError(f"{what}: max_sub_layers_minus1 {value} above 6")
    return value


@dataclass(frozen=True, slots=True)
class HevcSps:
    chroma_format_idc: int
    bit_depth_luma: int
    bit_depth_chroma: int
    pic_width_in_luma_samples: int
    pic_height_in_luma_samples: int
    #: conf_win_left/right/top/bottom_offset, in chroma sample units.
    conformance_window: tuple[int, int, int, int]
    width: int
    height: int
    #: vui time_scale / num_units_in_tick when present and the SPS tail parsed cleanly.
    frame_rate: Fraction | None

    @classmethod
    def parse(cls, nal: bytes) -> HevcSps:
        b = _rbsp(nal, NAL_SPS, "HEVC SPS")
        b.skip(4)  # sps_video_parameter_set_id
        max_sub = _max_sub_layers_minus1(b, "HEVC SPS")
        b.skip(1)  # sps_temporal_id_nesting_flag
        _skip_profile_tier_level(b, max_sub)
        b.ue(15)  # sps_seq_parameter_set_id
        chroma = b.ue(3)
        separate_planes = b.flag() if chroma == 3 else False
        coded_w, coded_h = b.ue(), b.ue()
        window = (0, 0, 0, 0)
        if b.flag():  # conformance_window_flag
            window = (b.ue(), b.ue(), b.ue(), b.ue())
        depth_luma = b.ue(8) + 8
        depth_chroma = b.ue(8) + 8
        # Table 6-1: SubWidthC/SubHeightC; separate colour planes count as monochrome.
        chroma_array_type = 0 if separate_planes else chroma
        sub_w = 2 if chroma_array_type in (1, 2) else 1
        sub_h = 2 if chroma_array_type == 1 else 1
        width = coded_w - sub_w * (window[0] + window[1])
        height = coded_h - sub_h * (window[2] + window[3])
        if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
            raise CodecError(f"HEVC SPS: picture size {width}x{height} out of range")
        try:
            frame_rate = _sps_tail_frame_rate(b, max_sub)
        except CodecError:
            # Size and format are known by now; the frame rate is informative only, so a
            # tail we cannot follow (or a truncated SPS) does not reject the stream.
            frame_rate = None
        return cls(
            chroma, depth_luma, depth_chroma, coded_w, coded_h, window, width, height, frame_rate
        )


def _sps_tail_frame_rate(b: BitReader, max_sub: int) -> Fraction | None:
    """Continue the SPS after the bit depths (7.3.2.2.1) to the VUI timing info (E.2.1)."""
    log2_max_poc_lsb = b.ue(12) + 4
    ordering_for_all = b.flag()  # sps_sub_layer_ordering_info_present_flag
    for _ in range(0 if ordering_for_all else max_sub, max_sub + 1):
        b.ue()  # sps_max_dec_pic_buffering_minus1
        b.ue()  # sps_max_num_reorder_pics
        b.ue()  # sps_max_latency_increase_plus1
    for _ in range(6):  # coding/transform block sizes, transform hierarchy depths
        b.ue()
    if b.flag() and b.flag():  # scaling_list_enabled_flag, sps_scaling_list_data_present_flag
        _skip_scaling_list_data(b)
    b.skip(2)  # amp_enabled_flag, sample_adaptive_offset_enabled_flag
    if b.flag():  # pcm_enabled_flag
        b.skip(4 + 4)  # pcm sample bit depths
        b.ue()
        b.ue()
        b.skip(1)  # pcm_loop_filter_disabled_flag
    num_sets = b.ue(64)
    delta_pocs: list[int] = []
    for index in range(num_sets):
        delta_pocs.append(_skip_st_ref_pic_set(b, index, delta_pocs))
    if b.flag():  # long_term_ref_pics_present_flag
        b.skip(b.ue(32) * (log2_max_poc_lsb + 1))  # lt_ref_pic_poc_lsb_sps, used_by_curr
    b.skip(2)  # sps_temporal_mvp_enabled_flag, strong_intra_smoothing_enabled_flag
    if not b.flag():  # vui_parameters_present_flag
        return None
    if b.flag() and b.u(8) == 255:  # aspect_ratio_info_present_flag, Extended_SAR
        b.skip(32)
    if b.flag():  # overscan_info_present_flag
        b.skip(1)
    if b.flag():  # video_signal_type_present_flag
        b.skip(4)
        if b.flag():  # colour_description_present_flag
            b.skip(24)
    if b.flag():  # chroma_loc_info_present_flag
        b.ue()
        b.ue()
    b.skip(3)  # neutral_chroma_indication, field_seq, frame_field_info_present
    if b.flag():  # default_display_window_flag
        for _ in range(4):
            b.ue()
    if not b.flag():  # vui_timing_info_present_flag
        return None
    num_units_in_tick, time_scale = b.u(32), b.u(32)
    if num_units_in_tick == 0 or time_scale == 0:
        return None
    return Fraction(time_scale, num_units_in_tick)


def _skip_scaling_list_data(b: BitReader) -> None:
    """scaling_list_data() (7.3.4)."""
    for size_id in range(4):
        for _ in range(0, 6, 3 if size_id == 3 else 1):
            if not b.flag():  # scaling_list_pred_mode_flag
                b.ue()  # scaling_list_pred_matrix_id_delta
                continue
            if size_id > 1:
                b.se()  # scaling_list_dc_coef_minus8
            for _ in range(min(64, 1 << (4 + (size_id << 1)))):
                b.se()  # scaling_list_delta_coef


def _skip_st_ref_pic_set(b: BitReader, index: int, delta_pocs: list[int]) -> int:
    """st_ref_pic_set(stRpsIdx) (7.3.7) as in an SPS; returns NumDeltaPocs[stRpsIdx]."""
    if index != 0 and b.flag():  # inter_ref_pic_set_prediction_flag
        b.skip(1)  # delta_rps_sign
        b.ue()  # abs_delta_rps_minus1
        # In an SPS delta_idx_minus1 is absent (0), so the reference is the previous set.
        count = 0
        for _ in range(delta_pocs[index - 1] + 1):
            used = b.flag()  # used_by_curr_pic_flag
            if used or b.flag():  # use_delta_flag (inferred 1 when used)
                count += 1
        return count
    negative, positive = b.ue(16), b.ue(16)
    for _ in range(negative + positive):
        b.ue()  # delta_poc_sX_minus1
        b.skip(1)  # used_by_curr_pic_sX_flag
    return negative + positive


def vps_frame_rate(nal: bytes) -> Fraction | None:
    """vps_time_scale / vps_num_units_in_tick from the VPS timing info (7.3.2.1), if any."""
    b = _rbsp(nal, NAL_VPS, "HEVC VPS")
    b.skip(4 + 1 + 1 + 6)  # vps_id, base_layer_internal/available, max_layers_minus1
    max_sub = _max_sub_layers_minus1(b, "HEVC VPS")
    b.skip(1 + 16)  # vps_temporal_id_nesting_flag, vps_reserved_0xffff_16bits
    _skip_profile_tier_level(b, max_sub)
    ordering_for_all = b.flag()  # vps_sub_layer_ordering_info_present_flag
    for _ in range(0 if ordering_for_all else max_sub, max_sub + 1):
        b.ue()  # vps_max_dec_pic_buffering_minus1
        b.ue()  # vps_max_num_reorder_pics
        b.ue()  # vps_max_latency_increase_plus1
    max_layer_id = b.u(6)
    b.skip(b.ue(1023) * (max_layer_id + 1))  # layer_id_included_flag[i][j]
    if not b.flag():  # vps_timing_info_present_flag
        return None
    num_units_in_tick, time_scale = b.u(32), b.u(32)
    if num_units_in_tick == 0 or time_scale == 0:
        return None
    return Fraction(time_scale, num_units_in_tick)


def parse_config(data: bytes) -> VideoConfig:
    """Build a `VideoConfig` from an HEVCDecoderConfigurationRecord (the hvcC payload)."""
    record = HevcDecoderConfigurationRecord.parse(data)
    sps_list = record.nal_units(NAL_SPS)
    if not sps_list:
        raise CodecError("hvcC: no SPS")
    sps = HevcSps.parse(sps_list[0])
    frame_rate = sps.frame_rate
    vps_list = record.nal_units(NAL_VPS)
    if frame_rate is None and vps_list:
        try:
            frame_rate = vps_frame_rate(vps_list[0])
        except CodecError:
            # The frame rate is informative; a VPS we cannot read to the end does not make
            # the stream unusable (the decoder reads its own copy).
            frame_rate = None
    if frame_rate is None and record.avg_frame_rate:
        frame_rate = Fraction(record.avg_frame_rate, 256)
    return VideoConfig(
        codec="hevc",
        extradata=bytes(data),
        width=sps.width,
        height=sps.height,
        codec_string=codec_string(
            record.profile_space,
            record.tier,
            record.profile_idc,
            record.compatibility_flags,
            record.level_idc,
            record.constraint_flags,
        ),
        profile=record.profile_idc,
        level=record.level_idc,
        bit_depth=sps.bit_depth_luma,
        chroma_format=sps.chroma_format_idc,
        frame_rate=frame_rate,
        nal_length_size=record.nal_length_size,
    )
