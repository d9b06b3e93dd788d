"""AVCDecoderConfigurationRecord and SPS parsing, on the records ffmpeg/x264 wrote."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import pytest

from media.avc import AvcDecoderConfigurationRecord, AvcSps, codec_string, parse_config
from media.bits import strip_emulation_prevention
from media.errors import CodecError

Tags = Callable[[str], Sequence[Any]]


def records(flv_tags: Tags, name: str) -> list[bytes]:
    """avcC payloads of a file: legacy sequence headers and E-RTMP avc1 SequenceStarts."""
    out = []
    for tag in flv_tags(name):
        if tag.tag_type != 9:
            continue
        if tag.payload[:2] == b"\x17\x00":
            out.append(bytes(tag.payload[5:]))
        elif tag.payload[:2] == b"\x96\x00":  # Multitrack/OneTrack SequenceStart + track id
            out.append(bytes(tag.payload[7:]))
    return out


@pytest.mark.parametrize("name", ["h264_aac.flv", "h264_interlaced_crop.flv", "multitrack.flv"])
def test_record_round_trip(name: str, flv_tags: Tags) -> None:
    for data in records(flv_tags, name):
        record = AvcDecoderConfigurationRecord.parse(data)
        assert bytes(record) == data
        assert len(record.sps) == len(record.pps) == 1
        assert record.nal_length_size == 4


def test_high_profile_record(flv_tags: Tags) -> None:
    (data,) = records(flv_tags, "h264_aac.flv")
    record = AvcDecoderConfigurationRecord.parse(data)
    assert (record.profile_idc, record.constraint_flags, record.level_idc) == (100, 0, 13)
    # FFmpeg writes the chroma/bit-depth extension for High profiles.
    assert (record.chroma_format, record.bit_depth_luma, record.bit_depth_chroma) == (1, 8, 8)
    sps = AvcSps.parse(record.sps[0])
    assert (sps.profile_idc, sps.level_idc, sps.chroma_format_idc) == (100, 13, 1)
    assert (sps.width, sps.height, sps.frame_mbs_only) == (320, 240, True)
    assert (sps.pic_width_in_mbs, sps.pic_height_in_map_units) == (20, 15)
    assert sps.frame_rate == Fraction(25)


def test_interlaced_with_cropping(flv_tags: Tags) -> None:
    """200x148 field-coded: 13 MBs wide, 5 map units of 32 lines high, then cropped."""
    (data,) = records(flv_tags, "h264_interlaced_crop.flv")
    sps = AvcSps.parse(AvcDecoderConfigurationRecord.parse(data).sps[0])
    assert not sps.frame_mbs_only
    assert (sps.pic_width_in_mbs, sps.pic_height_in_map_units) == (13, 5)
    # Crop units: 2 pixels across; 2 (4:2:0) x 2 (field pairs) = 4 lines down.
    assert sps.crop == (0, 4, 0, 3)
    assert (sps.width, sps.height) == (200, 148)
    config = parse_config(data)
    assert (config.codec_string, config.profile) == ("avc1.4d4015", 77)


def test_baseline_and_444(flv_tags: Tags) -> None:
    baseline, high444 = (parse_config(d) for d in records(flv_tags, "multitrack.flv"))
    assert baseline.codec_string == "avc1.42c00b"  # constraint_set0+1: Constrained Baseline
    assert (baseline.width, baseline.height, baseline.chroma_format) == (160, 120, 1)
    assert high444.codec_string == "avc1.f4000a"
    assert (high444.width, high444.height, high444.chroma_format) == (128, 96, 3)
    record = AvcDecoderConfigurationRecord.parse(high444.extradata)
    assert record.chroma_format == 3


def test_codec_string_is_lower_hex() -> None:
    assert codec_string(0x64, 0x00, 0x1F) == "avc1.64001f"
    assert codec_string(0x42, 0xE0, 0x1E) == "avc1.42e01e"


def test_emulation_prevention() -> None:
    assert strip_emulation_prevention(b"\x00\x00\x03\x01") == b"\x00\x00\x01"
    assert strip_emulation_prevention(b"\x00\x00\x03\x00\x00\x03") == b"\x00\x00\x00\x00"
    assert strip_emulation_prevention(b"\x00\x03\x00") == b"\x00\x03\x00"


def test_sps_with_emulation_prevention_and_scaling_matrix() -> None:
    """A hand-built High SPS: scaling lists present, zeros that need escaping in the RBSP."""
    fields = [
        "01100100",  # profile_idc 100
        "00000000",  # constraint flags
        "00000000",  # level_idc 0: with the byte above, 00 00 that needs an escape
        "1",  # seq_parameter_set_id 0
        "010",  # chroma_format_idc 1
        "1",  # bit_depth_luma_minus8 0
        "1",  # bit_depth_chroma_minus8 0
        "0",  # qpprime_y_zero_transform_bypass_flag
        "1",  # seq_scaling_matrix_present_flag
        "1" + "1" * 16,  # list 0 present: 16 deltas of se(0) = "1"
        "0" * 7,  # lists 1..7 absent
        "1",  # log2_max_frame_num_minus4 0
        "1",  # pic_order_cnt_type 0
        "1",  # log2_max_pic_order_cnt_lsb_minus4 0
        "1",  # max_num_ref_frames 0
        "0",  # gaps_in_frame_num_value_allowed_flag
        "0001010",  # pic_width_in_mbs_minus1 9 -> 160
        "0001000",  # pic_height_in_map_units_minus1 7 -> 128
        "1",  # frame_mbs_only_flag
        "1",  # direct_8x8_inference_flag
        "1",  # frame_cropping_flag
        "11100100",  # crop left 0, right 0, top 0, bottom 3 -> 128 - 6 = 122
        "0",  # vui_parameters_present_flag
        "1",  # rbsp_stop_one_bit
    ]
    bits = "".join(fields)
    bits += "0" * (-len(bits) % 8)
    rbsp = int(bits, 2).to_bytes(len(bits) // 8, "big")
    escaped = rbsp[:3] + b"\x03" + rbsp[3:]
    assert rbsp[:3] == b"\x64\x00\x00"
    sps = AvcSps.parse(b"\x67" + escaped)
    assert (sps.width, sps.height, sps.frame_rate) == (160, 122, None)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x64\x00\x1f\xff\xe1",  # configurationVersion 0
        b"\x01\x64\x00\x1f\xfe\xe1\x00\x01\x67",  # lengthSizeMinusOne 2
        b"\x01\x64\x00\x1f\xff\xe0\x00",  # no SPS
        b"\x01\x64\x00\x1f\xff\xe1\x00\x01\x68\x00",  # an SPS slot holding a PPS
        b"\x01\x64\x00\x1f\xff\xe1\x00\x10\x67",  # SPS length past the end
        b"\x01\x64\x00\x1f\xff\xe1\x00\x01\x67\x00",  # SPS header only
    ],
)
def test_bad_records(data: bytes) -> None:
    with pytest.raises(CodecError):
        parse_config(data)


def test_sps_size_out_of_range() -> None:
    fields = [
        "01000010",  # profile_idc 66
        "00000000",  # constraint flags
        "00001010",  # level_idc 10
        "1",  # seq_parameter_set_id 0
        "1",  # log2_max_frame_num_minus4 0
        "011",  # pic_order_cnt_type 2
        "1",  # max_num_ref_frames 0
        "0",  # gaps_in_frame_num_value_allowed_flag
        "0" * 12 + "1" + "0" * 12,  # pic_width_in_mbs_minus1 4095: 65536 px, over 16 bits
        "1",  # pic_height_in_map_units_minus1 0
        "1",  # frame_mbs_only_flag
        "1",  # direct_8x8_inference_flag
        "0",  # frame_cropping_flag
        "0",  # vui_parameters_present_flag
        "1",  # rbsp_stop_one_bit
    ]
    bits = "".join(fields)
    bits += "0" * (-len(bits) % 8)
    with pytest.raises(CodecError, match="out of range"):
        AvcSps.parse(b"\x67" + int(bits, 2).to_bytes(len(bits) // 8, "big"))
