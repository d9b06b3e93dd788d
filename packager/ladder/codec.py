"""Codec plumbing of the transcoded ladder: the source decoder, rung geometry, frame-rate
decimation, and the libx264 encoder of one rung with its Annex B output turned into AVCC.

Everything here is synchronous and runs on the ladder's worker threads; PyAV releases the GIL
inside FFmpeg calls, so the threads really run in parallel. Timestamps stay in milliseconds on
the source's timeline: packets and frames use the time base 1/1000 end to end.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from av.codec.context import Flags
from av.video.codeccontext import VideoCodecContext
from av.video.frame import PictureType, VideoFrame

from media.avc import NAL_PPS, NAL_SPS, AvcDecoderConfigurationRecord, parse_config
from media.types import MediaPacket, VideoConfig
from packager.types import Rung

TIME_BASE = Fraction(1, 1000)
# FFmpeg decoders for the ingest codecs. AV1 goes to dav1d (FFmpeg's native "av1" decoder
# needs a hardware accelerator).
DECODERS = {"h264": "h264", "hevc": "hevc", "av1": "libdav1d", "vp9": "vp9"}
# The rungs' keyframes come only from forced IDRs at source keyframes: x264's own GOP logic is
# switched off (an interval it never reaches, no scene cuts) and every forced I is an IDR.
# No B-frames, and 5 frames of rate-control lookahead instead of veryfast's 10: x264 holds
# lookahead + 1 frames, and the rung's segments must close within 0.5 s of the source's
# (with 8, the measured median was 0.49 s; see ladder.py).
X264_PARAMS = "keyint=100000:min-keyint=100000:scenecut=0:open-gop=0:bframes=0:rc-lookahead=5"
# VOD has no latency budget: the preset's own B-frames, b-pyramid and full rc-lookahead, and
# x264's frame threads. Keyframes as live: IDRs only where forced (on the segment grid, the
# same frames in every rung), closed GOPs. Scene cuts still get I-frames, never IDRs (a
# min-keyint far away), so they cannot move a segment boundary.
X264_VOD_PARAMS = "keyint=100000:min-keyint=100000:open-gop=0"
NAL_IDR = 5
# 4-byte NAL lengths in the emitted AVCC, as in what every encoder behind RTMP sends.
NAL_LENGTH_SIZE = 4


MAX_X264_THREADS = 4


@dataclass(frozen=True, slots=True)
class X264Mode:
    """How a `RungEncoder` runs libx264: its x264 parameters and its threading."""

    params: str
    #: Sliced threads (no delay; live) or frame threads (a frame of delay each, better
    #: compression and scaling; VOD).
    sliced: bool


LIVE = X264Mode(X264_PARAMS, sliced=True)
VOD = X264Mode(X264_VOD_PARAMS, sliced=False)


def x264_threads() -> int:
    """Sliced threads per rung encoder: one per core, at most 4 (every slice costs bits)."""
    return max(1, min(MAX_X264_THREADS, len(os.sched_getaffinity(0))))


def output_rate(rung: Rung, source: VideoConfig) -> Fraction:
    """The rung's frame rate: the source's divided by the smallest whole step that brings it
    to the rung's cap (60 -> 30, 50 -> 25, 59.94 -> 29.97, 30 and below untouched), so the
    kept frames are evenly spaced. Without a plausible source rate in the config (none, or
    outside 5-240 fps) it is the cap itself, and `Decimator` keeps frames on a 1/cap grid."""
    return rate_for(rung, source.frame_rate)


def rate_for(rung: Rung, rate: Fraction | None) -> Fraction:
    """`output_rate` for a source frame rate known by itself (None: unknown)."""
    cap = Fraction(rung.fps)
    if rate is None or not 5 <= rate <= 240:
        return cap
    step = max(1, math.ceil(rate / cap - Fraction(1, 100)))  # 30.01 fps still counts as 30
    return rate / step


def short_side(width: int, height: int) -> int:
    return min(width, height)


def runs_for_source(rung: Rung, source: VideoConfig) -> bool:
    """A rung runs only below the source: its height against the source's height, or against
    the width for a portrait source (the rung's height is then the short side)."""
    return 0 < rung.height < short_side(source.width, source.height)


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def rung_size(rung: Rung, source_width: int, source_height: int) -> tuple[int, int]:
    """The rung's picture size: its height on the source's short side, the other side from the
    source's aspect ratio, both even (4:2:0 chroma). 1920x1080 -> 854x480 for "480p";
    a portrait 1080x1920 gives 480x854."""
    if source_width >= source_height:
        return _even(source_width * rung.height / source_height), _even(rung.height)
    return _even(rung.height), _even(source_height * rung.height / source_width)


class Decimator:
    """Brings one rung to its `output_rate` by dropping source frames, by pts.

    A frame is kept when its pts reaches the next point of a 1/rate grid (less a fifth of a
    period, for millisecond rounding and publisher jitter): with the rate from `output_rate`
    that keeps every n-th frame (60 fps -> every other one); at an unknown source rate it
    still caps the rate (50 fps -> 30, unevenly). A frame that must be a forced IDR (a source
    keyframe) is always kept and restarts the grid, so keyframes line up across renditions;
    with an even GOP at 60 fps it falls on the grid anyway, otherwise one interval before it
    is shorter.
    """

    def __init__(self, rate: Fraction | int) -> None:
        self.period = float(1000 / Fraction(rate))
        self.tolerance = self.period / 5
        self._due: float | None = None

    def reset(self) -> None:
        self._due = None

    def keep(self, pts: int, keyframe: bool) -> bool:
        due = self._due
        if not keyframe and due is not None and pts < due - self.tolerance:
            return False
        if keyframe or due is None or pts - due > self.period:
            due = pts  # restart the grid: a keyframe, the first frame, or after a gap
        self._due = due + self.period
        return True


def make_decoder(config: VideoConfig, threads: int = 0) -> VideoCodecContext:
    """A decoder for the source, set up from its configuration record.

    ``threads`` 0 lets FFmpeg pick (cores + 1); frame and slice threading both on, as the
    ffmpeg CLI does, so a 1080p source decodes at a fraction of one core.
    """
    name = DECODERS.get(config.codec)
    if name is None:
        raise ValueError(f"no decoder for {config.codec}")
    decoder = av.CodecContext.create(name, "r")
    assert isinstance(decoder, VideoCodecContext)  # create() with "r" on a video codec
    decoder.extradata = config.extradata
    decoder.thread_type = "AUTO"
    decoder.thread_count = threads
    return decoder


def to_av_packet(packet: MediaPacket) -> av.Packet[Any]:
    """A copy of the packet in an FFmpeg-allocated buffer.

    Not `av.Packet(data)`: that wraps the Python bytes, and FFmpeg's frame-threading workers
    then release them from their own threads, which needs the GIL - while a thread freeing
    the decoder holds the GIL and waits for those workers (a deadlock seen in PyAV 18). The
    copy also carries the zeroed input padding FFmpeg's parsers may read past the end.
    """
    out = av.Packet(len(packet.data))
    memoryview(out)[:] = packet.data
    out.pts = packet.pts_ms
    out.dts = packet.dts_ms
    out.time_base = TIME_BASE
    if packet.keyframe:
        out.is_keyframe = True
    return out


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (3- or 4-byte start codes).

    Emulation prevention guarantees 00 00 01 never occurs inside a NAL unit, and a NAL unit
    never ends in a zero byte, so trailing zeros belong to the next (4-byte) start code.
    """
    nals: list[bytes] = []
    start = data.find(b"\x00\x00\x01")
    while start >= 0:
        start += 3
        end = data.find(b"\x00\x00\x01", start)
        nal = data[start:] if end < 0 else data[start:end]
        nal = nal.rstrip(b"\x00")
        if nal:
            nals.append(nal)
        start = end
    return nals


def to_avcc(nals: list[bytes]) -> bytes:
    return b"".join(len(nal).to_bytes(NAL_LENGTH_SIZE, "big") + nal for nal in nals)


def avc_config(annexb_extradata: bytes) -> VideoConfig:
    """The rung's `VideoConfig`, from libx264's global header (Annex B SPS and PPS).

    The avcC is built here (libx264 gives none) with the High-profile extension FFmpeg's MP4
    muxer writes, then parsed back by `media.avc` so the codec string and size come from
    the same code that reads publishers' records.
    """
    nals = split_annexb(annexb_extradata)
    sps = tuple(n for n in nals if n[0] & 0x1F == NAL_SPS)
    pps = tuple(n for n in nals if n[0] & 0x1F == NAL_PPS)
    if not sps or not pps or len(sps[0]) < 4:
        raise ValueError("libx264 global header without SPS/PPS")
    record = AvcDecoderConfigurationRecord(
        profile_idc=sps[0][1],
        constraint_flags=sps[0][2],
        level_idc=sps[0][3],
        nal_length_size=NAL_LENGTH_SIZE,
        sps=sps,
        pps=pps,
        chroma_format=1,
        bit_depth_luma=8,
        bit_depth_chroma=8,
    )
    return parse_config(bytes(record))


class RungEncoder:
    """libx264 for one rung: CBR-ish VBV (maxrate 1.5x, bufsize 2x the target), High profile,
    closed GOPs with IDRs only where the caller forces them, global header so the SPS/PPS come
    once as the avcC. `mode` LIVE (the default): no B-frames and sliced threads (see
    `ladder.py` for why); VOD: B-frames, full lookahead, frame threads."""

    def __init__(
        self,
        rung: Rung,
        width: int,
        height: int,
        frame_rate: Fraction,
        preset: str,
        threads: int = 0,
        *,
        mode: X264Mode = LIVE,
    ) -> None:
        encoder = av.CodecContext.create("libx264", "w")
        assert isinstance(encoder, VideoCodecContext)  # create() with "w" on a video codec
        encoder.width = width
        encoder.height = height
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = TIME_BASE
        encoder.framerate = frame_rate  # for x264's level and VBV; timestamps stay ms
        encoder.bit_rate = rung.video_bitrate
        # Sliced threads: x264's low-latency threading. Frame threads would add a frame of
        # delay each (the 0.5 s budget has room for ~1); slices add none, at a small cost in
        # compression, kept small by capping their number.
        if mode.sliced:
            encoder.thread_type = "SLICE"
            encoder.thread_count = threads or x264_threads()
        else:
            # Frame threads; with `threads` 0, x264 picks their number (1.5 per core), as
            # it does behind the ffmpeg CLI.
            encoder.thread_type = "FRAME"
            encoder.thread_count = threads
        encoder.flags |= Flags.global_header
        encoder.options = {
            "preset": preset,
            "profile": "high",
            "maxrate": str(rung.video_bitrate * 3 // 2),
            "bufsize": str(rung.video_bitrate * 2),
            # libx264 then turns a frame marked I into X264_TYPE_IDR (not a recovery-point I).
            "forced-idr": "1",
            "x264-params": mode.params,
        }
        encoder.open()
        self.encoder = encoder
        # x264 writes its time base (1/1000) as the SPS timing info; the config states the
        # rung's nominal rate instead, for playlists (FRAME-RATE) and sample durations.
        self.config = dataclasses.replace(
            avc_config(bytes(encoder.extradata or b"")), frame_rate=frame_rate
        )

    def encode(self, frame: VideoFrame, keyframe: bool) -> list[MediaPacket]:
        # Decoded frames carry the source's picture types, which libx264 would obey: only
        # the frames we force are typed, the rest are left to the encoder.
        frame.pict_type = PictureType.I if keyframe else PictureType.NONE
        return [self._packet(p) for p in self.encoder.encode(frame)]

    def flush(self) -> list[MediaPacket]:
        return [self._packet(p) for p in self.encoder.encode(None)]

    @staticmethod
    def _packet(packet: av.Packet[Any]) -> MediaPacket:
        nals = split_annexb(bytes(packet))
        pts = packet.pts if packet.pts is not None else 0
        dts = packet.dts if packet.dts is not None else pts
        return MediaPacket(
            kind="video",
            dts_ms=dts,
            pts_ms=pts,
            # From the bitstream rather than the packet flag: "keyframe" means IDR here.
            keyframe=any(n[0] & 0x1F == NAL_IDR for n in nals),
            data=to_avcc(nals),
        )
