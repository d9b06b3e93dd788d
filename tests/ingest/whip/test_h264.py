"""The WHIP H.264 framer on a real x264 stream (Annex B, as the RTP depacketizer hands it)."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest

from ingest.whip.h264 import NAL_LENGTH_SIZE, H264Framer, has_idr, split_annexb
from media.errors import CodecError


def annexb_frames(count: int = 12, gop: int = 5) -> list[tuple[bytes, bool]]:
    """(Annex B access unit, keyframe) from libx264, SPS/PPS repeated before each IDR as
    WebRTC senders do."""
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 160, 96, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "x264-params":
                       f"keyint={gop}:min-keyint={gop}:repeat-headers=1:aud=1"}  # fmt: skip
    out = []
    for i in range(count):
        frame = av.VideoFrame(160, 96, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([(i * 7) % 256]) * plane.buffer_size)
        frame.pts = i
        out += [(bytes(p), p.is_keyframe) for p in encoder.encode(frame)]
    out += [(bytes(p), p.is_keyframe) for p in encoder.encode(None)]
    return out


def nal_types(avcc: bytes) -> list[int]:
    types, offset = [], 0
    while offset < len(avcc):
        size = int.from_bytes(avcc[offset : offset + NAL_LENGTH_SIZE], "big")
        types.append(avcc[offset + NAL_LENGTH_SIZE] & 0x1F)
        offset += NAL_LENGTH_SIZE + size
    assert offset == len(avcc)
    return types


def test_parameter_sets_become_the_config_and_leave_the_samples() -> None:
    framer = H264Framer()
    frames = annexb_frames()
    framed = [framer.frame(data) for data, _ in frames]
    assert all(f is not None for f in framed)
    first = framed[0]
    assert first is not None and first.keyframe and first.config is not None
    assert (first.config.codec, first.config.width, first.config.height) == ("h264", 160, 96)
    assert first.config.nal_length_size == NAL_LENGTH_SIZE
    # Same parameter sets before every IDR: one config only.
    assert [f.config is not None for f in framed if f is not None].count(True) == 1
    for f, (_, keyframe) in zip(framed, frames, strict=True):
        assert f is not None and f.keyframe == keyframe
        types = nal_types(f.data)
        assert not {7, 8, 9} & set(types)  # no SPS, PPS or AUD left in a sample
        assert (5 in types) == keyframe


def test_the_muxed_samples_decode() -> None:
    framer = H264Framer()
    framed = [framer.frame(data) for data, _ in annexb_frames()]
    decoder = av.CodecContext.create("h264", "r")
    first = framed[0]
    assert first is not None and first.config is not None
    decoder.extradata = first.config.extradata
    decoded = sum(len(decoder.decode(av.Packet(f.data))) for f in framed if f is not None)
    decoded += len(decoder.decode(None))
    assert decoded == len(framed)


def test_nothing_before_the_first_idr_and_nothing_after_a_loss_until_the_next() -> None:
    frames = annexb_frames(count=12, gop=5)  # IDRs at 0, 5, 10
    framer = H264Framer()
    assert [framer.frame(d) is not None for d, _ in frames[1:5]] == [False] * 4
    assert framer.frame(frames[5][0]) is not None
    framer.lost()
    assert framer.frame(frames[6][0]) is None
    assert [framer.frame(d) is not None for d, _ in frames[7:10]] == [False] * 3
    assert framer.frame(frames[10][0]) is not None
    assert framer.frame(frames[11][0]) is not None


@pytest.mark.parametrize(
    "data",
    [b"", b"\x01\x02\x03", b"\x00\x00\x01\x85\x00", b"\x00\x00\x00\x01" + b"\xff" * 10],
)
def test_garbage_is_a_codec_error(data: bytes) -> None:
    with pytest.raises(CodecError):
        H264Framer().frame(data)


def test_split_annexb_handles_three_and_four_byte_start_codes() -> None:
    data = b"\x00\x00\x00\x01\x67\x42" + b"\x00\x00\x01\x68\xce" + b"\x00\x00\x00\x01\x65\x88\x80"
    assert split_annexb(data) == [b"\x67\x42", b"\x68\xce", b"\x65\x88\x80"]


def test_a_short_sps_is_a_codec_error_not_a_crash() -> None:
    with pytest.raises(CodecError, match="SPS too short"):
        H264Framer().frame(b"\x00\x00\x00\x01\x67\x42")


def test_trailing_zeros_before_a_start_code_are_not_part_of_the_nal() -> None:
    data = b"\x00\x00\x01\x67\x42\x00\x00\x00\x00\x01\x68\xce\x00\x00"
    assert split_annexb(data) == [b"\x67\x42", b"\x68\xce"]


def test_a_config_on_a_held_frame_goes_out_with_the_next_idr() -> None:
    """Parameter sets arriving on a frame that is held back (the stream is broken) must not be
    lost: the IDR that follows without them still carries the config."""
    frames = annexb_frames(count=6, gop=5)  # IDRs at 0 and 5, each with SPS/PPS
    framer = H264Framer()
    sps_pps = b"".join(
        b"\x00\x00\x00\x01" + nal for nal in split_annexb(frames[0][0]) if nal[0] & 0x1F in (7, 8)
    )
    assert framer.frame(sps_pps + frames[1][0]) is None  # a P-frame with the parameter sets
    idr = b"".join(
        b"\x00\x00\x00\x01" + nal
        for nal in split_annexb(frames[5][0])
        if nal[0] & 0x1F not in (7, 8)
    )
    framed = framer.frame(idr)
    assert framed is not None and framed.keyframe and framed.config is not None


def test_has_idr_looks_at_nal_headers_only() -> None:
    frames = annexb_frames()
    assert [has_idr(data) for data, _ in frames] == [keyframe for _, keyframe in frames]
    assert not has_idr(b"") and not has_idr(b"\x00\x00\x01") and not has_idr(b"\x00\x00\x01\x41")
    assert has_idr(b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x65\x88")  # behind an AUD
