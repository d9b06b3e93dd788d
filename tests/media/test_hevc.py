"""HEVCDecoderConfigurationRecord, SPS/VPS essentials and the hvc1 codec string."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any

import pytest

from media.errors import CodecError
from media.hevc import (
    NAL_PPS,
    NAL_SPS,
    NAL_VPS,
    HevcDecoderConfigurationRecord,
    HevcSps,
    codec_string,
    parse_config,
)

Tags = Callable[[str], Sequence[Any]]


def record(flv_tags: Tags, name: str) -> bytes:
    tag = next(t for t in flv_tags(name) if t.tag_type == 9 and t.payload[0] == 0x90)
    assert tag.payload[1:5] == b"hvc1"
    return bytes(tag.payload[5:])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        # ISO/IEC 14496-15 E.3 examples (there with the hev1 sample entry).
        ((0, 0, 1, 0x60000000, 93, b"\xb0\x00\x00\x00\x00\x00"), "hvc1.1.6.L93.B0"),
        ((1, 1, 4, 0x82000000, 120, b"\xb0\x23\x00\x00\x00\x00"), "hvc1.A4.41.H120.B0.23"),
        # Main 10 (compatibility flags 1 and 2 -> reversed 0x6), no constraint flags.
        ((0, 0, 2, 0x60000000, 153, bytes(6)), "hvc1.2.6.L153"),
    ],
)
def test_codec_string(args: tuple[int, int, int, int, int, bytes], expected: str) -> None:
    assert codec_string(*args) == expected


def test_x265_main(flv_tags: Tags) -> None:
    data = record(flv_tags, "hevc_aac.flv")
    parsed = HevcDecoderConfigurationRecord.parse(data)
    assert (parsed.profile_space, parsed.tier, parsed.profile_idc) == (0, 0, 1)
    assert parsed.compatibility_flags == 0x60000000
    assert parsed.constraint_flags == b"\x90\x00\x00\x00\x00\x00"
    assert (parsed.level_idc, parsed.chroma_format, parsed.nal_length_size) == (60, 1, 4)
    assert [kind for kind, _ in parsed.arrays][:3] == [NAL_VPS, NAL_SPS, NAL_PPS]
    sps = HevcSps.parse(parsed.nal_units(NAL_SPS)[0])
    assert (sps.width, sps.height, sps.conformance_window) == (320, 240, (0, 0, 0, 0))
    config = parse_config(data)
    assert config.codec_string == "hvc1.1.6.L60.90"
    assert (config.bit_depth, config.chroma_format, config.frame_rate) == (8, 1, Fraction(25))


def test_main10_conformance_window(flv_tags: Tags) -> None:
    """200x150 is coded as 208x160 (8-sample CUs) and cropped by the conformance window."""
    data = record(flv_tags, "hevc_main10.flv")
    sps = HevcSps.parse(HevcDecoderConfigurationRecord.parse(data).nal_units(NAL_SPS)[0])
    assert (sps.pic_width_in_luma_samples, sps.pic_height_in_luma_samples) == (208, 160)
    # Offsets count chroma samples: 2 luma columns/rows each in 4:2:0.
    assert sps.conformance_window == (0, 4, 0, 5)
    assert (sps.width, sps.height, sps.bit_depth_luma, sps.bit_depth_chroma) == (200, 150, 10, 10)
    config = parse_config(data)
    assert (config.codec_string, config.profile, config.frame_rate) == (
        "hvc1.2.4.L60.90",
        2,
        Fraction(30),
    )


def test_frame_rate_falls_back_to_avg_frame_rate(flv_tags: Tags) -> None:
    data = bytearray(record(flv_tags, "hevc_aac.flv"))
    parsed = HevcDecoderConfigurationRecord.parse(bytes(data))
    sps = parsed.nal_units(NAL_SPS)[0]
    # Cut the SPS right after the bit depths: size still parses, the VUI does not.
    index = bytes(data).index(sps)
    truncated = sps[:24]
    data[index - 2 : index + len(sps)] = len(truncated).to_bytes(2, "big") + truncated
    data[19:21] = (50 * 256).to_bytes(2, "big")  # avgFrameRate: 50 fps in 1/256 units
    config = parse_config(bytes(data))
    assert (config.width, config.height, config.frame_rate) == (320, 240, Fraction(50))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes(23),  # configurationVersion 0
        b"\x01" + bytes(20) + b"\x02\x00",  # lengthSizeMinusOne 2
        b"\x01" + bytes(20) + b"\x03\x00",  # no arrays, so no SPS
        b"\x01" + bytes(20) + b"\x03\x01\x21\x00\x01\x00\x05\x42\x01",  # NAL past the end
        b"\x01" + bytes(20) + b"\x03\x01\x21\x00\x01\x00\x02\x40\x01",  # a VPS in the SPS slot
    ],
)
def test_bad_records(data: bytes) -> None:
    with pytest.raises(CodecError):
        parse_config(data)
