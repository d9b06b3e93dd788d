"""AudioSpecificConfig parsing: object types, frequencies, channels, SBR/PS signalling."""

from __future__ import annotations

from typing import Any

import av
import pytest

from media.aac import AudioSpecificConfig, parse_config
from media.errors import CodecError


def pack(spec: str) -> bytes:
    """Bit fields written as "value/width ...", MSB first, zero-padded to whole bytes."""
    bits = ""
    for field in spec.split():
        value, width = field.split("/")
        bits += f"{int(value, 0):0{int(width)}b}"
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


GA = "0/1 0/1 0/1"  # GASpecificConfig: frameLengthFlag, dependsOnCoreCoder, extensionFlag

# name: (AudioSpecificConfig, (object type, rate, channels, sbr, ps, extension rate))
CASES = {
    "lc-44k-stereo": (bytes.fromhex("1210"), (2, 44100, 2, False, False, None)),
    # FFmpeg's own: an explicit "no SBR" sync extension after the GASpecificConfig.
    "ffmpeg-lc": (bytes.fromhex("121056e500"), (2, 44100, 2, False, False, None)),
    "lc-48k-5.1": (bytes.fromhex("11b056e500"), (2, 48000, 6, False, False, None)),
    "lc-7.1": (pack(f"2/5 3/4 7/4 {GA}"), (2, 48000, 8, False, False, None)),
    # Hierarchical signalling: AOT 5 (SBR) around an AAC LC core.
    "he-aac": (bytes.fromhex("2b920800"), (5, 22050, 2, True, False, 44100)),
    # AOT 29 (PS): a mono core decoded to stereo.
    "he-aac-v2": (pack(f"29/5 6/4 1/4 3/4 2/5 {GA}"), (29, 24000, 2, True, True, 48000)),
    # Backward-compatible signalling: LC first, SBR and PS in sync extensions.
    "he-aac-v2-compat": (
        pack(f"2/5 6/4 1/4 {GA} 0x2B7/11 5/5 1/1 3/4 0x548/11 1/1"),
        (2, 24000, 2, True, True, 48000),
    ),
    # Escape: audioObjectType 31 + 6 bits (42 = USAC); parsing stops after the header.
    "escape-aot": (pack("31/5 10/6 3/4 2/4"), (42, 48000, 2, False, False, None)),
    "explicit-frequency": (pack(f"2/5 15/4 44056/24 2/4 {GA}"), (2, 44056, 2, False, False, None)),
    "depends-on-core-coder": (
        pack("2/5 4/4 1/4 0/1 1/1 1000/14 0/1"),
        (2, 44100, 1, False, False, None),
    ),
    # ER AAC LD with extensionFlag: the three resilience flags and extensionFlag3.
    "er-aac-ld": (pack("23/5 3/4 2/4 0/1 0/1 1/1 0/3 0/1"), (23, 48000, 2, False, False, None)),
    # channelConfiguration 0: a program config element (tag, profile, rate index; 2 front,
    # 0 side, 1 back, 1 LFE, 0 data, 0 CC elements; no mixdowns) with SCE + CPE front, CPE
    # back, LFE: 69 bits so far, byte_alignment() to 72, then comment_field_bytes 0.
    "program-config-element": (
        pack(
            f"2/5 4/4 0/4 {GA} 0/4 1/2 4/4 2/4 0/4 1/4 1/2 0/3 0/4 0/1 0/1 0/1"
            " 0/1 0/4 1/1 1/4 1/1 2/4 0/4 0/3 0/8"
        ),
        (2, 44100, 6, False, False, None),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_audio_specific_config(name: str) -> None:
    data, (object_type, sample_rate, channels, sbr, ps, ext_rate) = CASES[name]
    asc = AudioSpecificConfig.parse(data)
    assert (asc.object_type, asc.sample_rate, asc.channels) == (object_type, sample_rate, channels)
    assert (asc.sbr, asc.ps, asc.extension_sample_rate) == (sbr, ps, ext_rate)
    config = parse_config(data)
    assert config.codec_string == f"mp4a.40.{object_type}"
    assert config.extradata == data
    assert (config.sbr, config.ps, config.extension_sample_rate) == (sbr, ps, ext_rate)


# FFmpeg's decoder handles AAC LC/SBR/PS cores, but not explicit (index 15) frequencies.
FFMPEG_DECODABLE = sorted(
    n for n in CASES if CASES[n][1][0] in (2, 5, 29) and n != "explicit-frequency"
)


@pytest.mark.parametrize("name", FFMPEG_DECODABLE)
def test_channels_agree_with_ffmpeg(name: str) -> None:
    """FFmpeg's AAC decoder reads the same config at open: same channel count."""
    data, expected = CASES[name]
    ctx: Any = av.CodecContext.create("aac", "r")
    ctx.extradata = data
    ctx.open()
    assert ctx.layout.nb_channels == expected[2]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x12",  # channelConfiguration cut
        pack(f"2/5 13/4 2/4 {GA}"),  # reserved samplingFrequencyIndex 13
        pack(f"2/5 15/4 0/24 2/4 {GA}"),  # explicit frequency 0
        pack(f"2/5 4/4 8/4 {GA}"),  # reserved channelConfiguration 8
        pack(f"2/5 4/4 0/4 {GA} 0/4"),  # program config element cut short
        pack("5/5 4/4 2/4"),  # SBR without extension frequency and core type
    ],
)
def test_bad_configs(data: bytes) -> None:
    with pytest.raises(CodecError):
        parse_config(data)


def test_partial_sync_extension_is_ignored() -> None:
    """Trailing bits that start like a sync extension but stop short are not an error."""
    asc = AudioSpecificConfig.parse(pack(f"2/5 4/4 2/4 {GA} 0x2B7/11 5/5"))
    assert (asc.sbr, asc.ps) == (False, False)
