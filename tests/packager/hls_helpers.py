"""Helpers of the packager tests: synthetic packet streams, real media files, box walking."""

from __future__ import annotations

import heapq
import struct
import subprocess
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import imageio_ffmpeg

from config.settings import Settings
from media import aac, avc, hevc
from media.types import AudioConfig, MediaPacket, VideoConfig
from packager.options import PackagerOptions

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def packager_options(**settings: Any) -> PackagerOptions:
    """The options ``streamd serve`` builds from these settings (``hls_window=20``, ...)."""
    return PackagerOptions.from_settings(Settings(**settings))


VIDEO = VideoConfig(
    codec="h264", extradata=b"\x01d\x00\x1f\xff\xe1\x00\x04gd\x00\x1f\x01\x00\x02h\xee",
    width=640, height=360, codec_string="avc1.64001f", profile=100, level=31, bit_depth=8,
    chroma_format=1, frame_rate=Fraction(30), nal_length_size=4,
)  # fmt: skip
AUDIO = AudioConfig(
    codec="aac", extradata=b"\x11\x90", object_type=2, sample_rate=48000, channels=2,
    codec_string="mp4a.40.2",
)  # fmt: skip


def synthetic(
    seconds: float,
    *,
    gop_ms: int | list[int] = 2000,
    fps: int = 30,
    audio: bool = True,
    video: bool = True,
    cts_ms: int = 0,
    start_ms: int = 0,
) -> list[MediaPacket]:
    """Packets as an RTMP publisher sends them: interleaved by dts, keyframes every
    ``gop_ms`` (or at the listed pts), AAC frames of 1024 samples at 48 kHz."""
    out: list[tuple[int, int, MediaPacket]] = []
    end = start_ms + round(seconds * 1000)
    if video:
        keys = (
            set(gop_ms) if isinstance(gop_ms, list)
            else set(range(start_ms, end, gop_ms))
        )  # fmt: skip
        n = 0
        while (t := start_ms + round(n * 1000 / fps)) < end:
            pts = t + cts_ms
            packet = MediaPacket("video", t, pts, t in keys, bytes([n % 256]) * 50)
            out.append((t, 0, packet))
            n += 1
    if audio:
        n = 0
        while (t := start_ms + n * 1024 * 1000 // 48000) < end:
            out.append((t, 1, MediaPacket("audio", t, t, True, b"a" * 20)))
            n += 1
    return [p for _, _, p in sorted(out, key=lambda x: (x[0], x[1]))]


def make_media(path: Path, *, seconds: float = 4, codec: str = "libx264", gop: int = 60) -> Path:
    """A small H.264/HEVC + AAC MP4 with B-frames, made by the test ffmpeg."""
    video = {
        "libx264": ["-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-profile:v", "high"],
        "libx265": [
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error:open-gop=0",
        ],  # closed GOPs: every segment decodes alone
    }[codec]
    subprocess.run(
        [FFMPEG, "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds),
         *video, "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
         "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


def demux(path: Path) -> tuple[VideoConfig, AudioConfig, list[MediaPacket]]:
    """The file's packets as ingest would give them (ms timestamps, dts >= 0, dts order)."""
    with av.open(str(path)) as container:
        vs, as_ = container.streams.video[0], container.streams.audio[0]
        extradata = bytes(vs.codec_context.extradata or b"")
        parse = hevc.parse_config if vs.codec_context.name == "hevc" else avc.parse_config
        vconf = parse(extradata)
        aconf = aac.parse_config(bytes(as_.codec_context.extradata or b""))
        packets = []
        for p in container.demux():
            if p.size == 0 or p.dts is None or p.pts is None:
                continue
            tb = p.time_base
            kind = "video" if p.stream.type == "video" else "audio"
            packets.append(
                MediaPacket(kind, round(p.dts * tb * 1000), round(p.pts * tb * 1000),
                            p.is_keyframe, bytes(p))
            )  # fmt: skip
    low = min(p.dts_ms for p in packets)
    packets = [
        MediaPacket(p.kind, p.dts_ms - low, p.pts_ms - low, p.keyframe, p.data) for p in packets
    ]
    packets.sort(key=lambda p: (p.dts_ms, p.kind == "audio"))
    return vconf, aconf, packets


def boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, bytes]]:
    """(type, payload) of the ISO BMFF boxes in data[start:end]."""
    pos, end = start, len(data) if end is None else end
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        yield kind, data[pos + 8 : pos + size]
        pos += size


def merged(*streams: list[MediaPacket]) -> list[MediaPacket]:
    return list(heapq.merge(*streams, key=lambda p: p.dts_ms))
