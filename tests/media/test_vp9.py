"""VPCodecConfigurationRecord and the VP9 keyframe size."""

from __future__ import annotations

import pytest

from media.errors import CodecError
from media.vp9 import VpCodecConfigurationRecord, codec_string, frame_size, parse_config


def test_ffmpeg_vpcc() -> None:
    data = bytes.fromhex("010000000014820202020000")  # what FFmpeg writes for vp9.flv
    record = VpCodecConfigurationRecord.parse(data)
    assert (record.profile, record.level, record.bit_depth) == (0, 20, 8)
    assert (record.chroma_subsampling, record.video_full_range) == (1, False)
    assert (record.colour_primaries, record.matrix_coefficients) == (2, 2)
    config = parse_config(data)
    assert (config.codec_string, config.chroma_format, config.width) == ("vp09.00.20.08", 1, 0)


def test_codec_string() -> None:
    assert codec_string(2, 41, 10) == "vp09.02.41.10"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes.fromhex("000000000014820202020000"),  # version 0 layout
        bytes.fromhex("010000000014920202020000"),  # bit depth 9
        bytes.fromhex("0100000000148202020200"),  # truncated codecInitializationDataSize
        bytes.fromhex("01000000001482020202000501"),  # init data past the end
    ],
)
def test_bad_records(data: bytes) -> None:
    with pytest.raises(CodecError):
        parse_config(data)


def test_frame_size() -> None:
    fields = [
        "10",  # frame_marker
        "00",  # profile_low_bit, profile_high_bit: profile 0
        "0",  # show_existing_frame
        "0",  # frame_type KEY_FRAME
        "1",  # show_frame
        "0",  # error_resilient_mode
        f"{0x498342:024b}",  # frame_sync_code
        "010",  # color_space CS_BT_709
        "0",  # color_range
        f"{639:016b}",  # frame_width_minus_1
        f"{359:016b}",  # frame_height_minus_1
    ]
    bits = "".join(fields)
    bits += "0" * (-len(bits) % 8)
    assert frame_size(int(bits, 2).to_bytes(len(bits) // 8, "big")) == (640, 360)
    assert frame_size(b"\x86\x00\x40") is None  # inter frame
    assert frame_size(b"\x88") is None  # show_existing_frame


@pytest.mark.parametrize("frame", [b"", b"\x42\x00", b"\x82\x49\x83\x41\x00\x00\x00\x00\x00"])
def test_bad_frames(frame: bytes) -> None:
    with pytest.raises(CodecError):
        frame_size(frame)
