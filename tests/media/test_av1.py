"""AV1CodecConfigurationRecord, sequence header OBUs and the av01 codec string."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import pytest

from media.av1 import (
    Av1CodecConfigurationRecord,
    Av1SequenceHeader,
    codec_string,
    parse_config,
    sequence_header_in_obus,
)
from media.errors import CodecError

Tags = Callable[[str], Sequence[Any]]


def record(flv_tags: Tags, name: str) -> bytes:
    tag = next(t for t in flv_tags(name) if t.payload[:5] == b"\x90av01" and len(t.payload) > 5)
    return bytes(tag.payload[5:])


def test_libaom_record(flv_tags: Tags) -> None:
    parsed = Av1CodecConfigurationRecord.parse(record(flv_tags, "av1.flv"))
    assert (parsed.seq_profile, parsed.seq_level_idx_0, parsed.seq_tier_0) == (0, 0, 0)
    assert (parsed.high_bitdepth, parsed.twelve_bit, parsed.monochrome) == (False, False, False)
    assert (parsed.chroma_subsampling_x, parsed.chroma_subsampling_y) == (1, 1)
    assert (parsed.bit_depth, parsed.chroma_format) == (8, 1)
    assert parsed.initial_presentation_delay is None
    # FFmpeg puts the sequence header OBU into configOBUs.
    assert parsed.config_obus[0] >> 3 & 0x0F == 1


def test_10bit(flv_tags: Tags) -> None:
    config = parse_config(record(flv_tags, "av1_10bit.flv"))
    assert (config.codec_string, config.bit_depth) == ("av01.0.00M.10", 10)
    assert (config.width, config.height, config.nal_length_size) == (160, 120, None)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((0, 8, 0, 8), "av01.0.08M.08"),  # AV1-ISOBMFF Annex A example
        ((0, 4, 0, 10), "av01.0.04M.10"),
        ((2, 13, 1, 12), "av01.2.13H.12"),
    ],
)
def test_codec_string(args: tuple[int, int, int, int], expected: str) -> None:
    assert codec_string(*args) == expected


def test_record_without_config_obus() -> None:
    # seq_profile 1 (4:4:4), level 9, tier 1, high_bitdepth, presentation delay 4.
    config = parse_config(b"\x81\x29\xc0\x13")
    parsed = Av1CodecConfigurationRecord.parse(b"\x81\x29\xc0\x13")
    assert (config.width, config.height) == (0, 0)
    assert config.codec_string == "av01.1.09H.10"
    assert (parsed.chroma_format, parsed.initial_presentation_delay) == (3, 4)


def test_sequence_header_with_timing_info() -> None:
    """A hand-built sequence header: timing info 1/30, equal picture interval, 1920x1080."""
    fields = [
        "000",  # seq_profile 0
        "0",  # still_picture
        "0",  # reduced_still_picture_header
        "1",  # timing_info_present_flag
        f"{1:032b}",  # num_units_in_display_tick
        f"{30:032b}",  # time_scale
        "1",  # equal_picture_interval
        "1",  # num_ticks_per_picture_minus_1: uvlc() 0
        "0",  # decoder_model_info_present_flag
        "0",  # initial_display_delay_present_flag
        "00000",  # operating_points_cnt_minus_1
        "000000000000",  # operating_point_idc[0]
        "01000",  # seq_level_idx[0] 8
        "0",  # seq_tier[0] (present as the level is above 7)
        "1010",  # frame_width_bits_minus_1 10
        "1010",  # frame_height_bits_minus_1 10
        f"{1919:011b}",  # max_frame_width_minus_1
        f"{1079:011b}",  # max_frame_height_minus_1
    ]
    bits = "".join(fields)
    bits += "0" * (-len(bits) % 8)
    payload = int(bits, 2).to_bytes(len(bits) // 8, "big")
    header = Av1SequenceHeader.parse(payload)
    assert (header.max_frame_width, header.max_frame_height) == (1920, 1080)
    assert header.frame_rate == Fraction(30)
    # As an OBU with a size field, after a temporal delimiter: found by the walker.
    obu = b"\x12\x00" + b"\x0a" + bytes([len(payload)]) + payload
    assert sequence_header_in_obus(obu) == header


def test_obus_without_sequence_header() -> None:
    assert sequence_header_in_obus(b"\x12\x00\x32\x01\x00") is None
    assert sequence_header_in_obus(b"") is None


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x81\x00\x0c",  # truncated fixed part
        b"\x01\x00\x0c\x00",  # marker bit clear
        b"\x82\x00\x0c\x00",  # version 2
        b"\x81\x00\x0c\x00\x8a\x00",  # obu_forbidden_bit
        b"\x81\x00\x0c\x00\x0a\x10\x00",  # OBU size past the end
        b"\x81\x00\x0c\x00\x0a" + b"\xff" * 9,  # leb128 over 8 bytes
        b"\x81\x00\x0c\x00\x0a\x01\x00",  # sequence header cut short
    ],
)
def test_bad_records(data: bytes) -> None:
    with pytest.raises(CodecError):
        parse_config(data)
