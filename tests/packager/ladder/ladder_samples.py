"""Real source media for the ladder and thumbnail tests.

ffmpeg (the imageio-ffmpeg binary, as an OBS stand-in) writes small FLV files; a tiny FLV
walker hands each video tag to ingest's own `parse_video_tag`, the function the RTMP server
calls on every video message, so the tests get exactly the `VideoConfig`/`MediaPacket`s a live
publish produces. Helpers also check what a rung emitted by decoding it back with PyAV.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import imageio_ffmpeg

from config.settings import Settings
from ingest.flv import VideoSequenceStart, parse_video_tag
from media.types import MediaPacket, VideoConfig
from packager.ladder.codec import to_av_packet
from packager.ladder.ladder import Ladder
from packager.options import PackagerOptions
from packager.types import LadderItem

# What `streamd serve` runs the ladder with on default settings (preset, shedding policy).
SERVE = PackagerOptions.from_settings(Settings())
PRESET = SERVE.x264_preset
POLICY = SERVE.ladder_policy

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
TAG_VIDEO = 9


@dataclass(frozen=True)
class Source:
    config: VideoConfig
    packets: tuple[MediaPacket, ...]

    @property
    def keyframe_pts(self) -> list[int]:
        return [p.pts_ms for p in self.packets if p.keyframe]


def make_flv(
    path: Path,
    *,
    size: str = "640x360",
    rate: int = 30,
    seconds: float = 6,
    codec: str = "libx264",
    gop_s: float = 2,
) -> Path:
    """An OBS-like stream: testsrc2, B-frames, fixed GOP, no scene cuts."""
    gop = str(round(rate * gop_s))
    encoder = {
        "libx264": ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-bf", "2"],
        "libx265": ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error"],
    }[codec]
    subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}", "-t", str(seconds),
         *encoder, "-g", gop, "-keyint_min", gop, "-sc_threshold", "0", "-pix_fmt", "yuv420p",
         "-b:v", "1500k", "-f", "flv", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


def read_source(path: Path) -> Source:
    """Walk an FLV file (header, then tag header + payload + PreviousTagSize) and parse each
    video tag with ingest's parser, the message timestamp as its dts."""
    data = path.read_bytes()
    assert data[:3] == b"FLV"
    offset = int.from_bytes(data[5:9], "big") + 4
    config: VideoConfig | None = None
    packets: list[MediaPacket] = []
    while offset + 11 <= len(data):
        size = int.from_bytes(data[offset + 1 : offset + 4], "big")
        timestamp = int.from_bytes(data[offset + 4 : offset + 7], "big") | data[offset + 7] << 24
        payload = data[offset + 11 : offset + 11 + size]
        if data[offset] & 0x1F == TAG_VIDEO:
            event = parse_video_tag(payload, timestamp)
            if isinstance(event, VideoSequenceStart):
                config = event.config
            elif isinstance(event, MediaPacket):
                packets.append(event)
        offset += 15 + size
    assert config is not None
    return Source(config, tuple(packets))


async def feed(ladder: Ladder, packets: Any, max_queued: int = 16) -> None:
    """Push packets as a live source would if the machine keeps up: never far ahead of the
    decoder, so nothing is shed or dropped."""
    for packet in packets:
        while ladder.queue_depth >= max_queued:
            await asyncio.sleep(0.002)
        ladder.push(packet)


@dataclass
class Collected:
    """What `on_output` received, per rung, in order."""

    items: dict[str, list[LadderItem]] = field(default_factory=lambda: defaultdict(list))
    threads: set[int] = field(default_factory=set)

    def __call__(self, rung: str, item: LadderItem) -> None:
        import threading

        self.threads.add(threading.get_ident())
        self.items[rung].append(item)

    def configs(self, rung: str) -> list[VideoConfig]:
        return [i for i in self.items[rung] if isinstance(i, VideoConfig)]

    def packets(self, rung: str) -> list[MediaPacket]:
        return [i for i in self.items[rung] if isinstance(i, MediaPacket)]


def decode_rung(config: VideoConfig, packets: list[MediaPacket]) -> list[av.VideoFrame]:
    """Decode a rung's output as a player would, from its avcC; any error fails the test."""
    decoder = av.CodecContext.create("h264", "r")
    decoder.extradata = config.extradata
    frames: list[av.VideoFrame] = []
    for packet in packets:
        frames += decoder.decode(to_av_packet(packet))
    frames += decoder.decode(None)
    return frames


def nal_types(packet: MediaPacket, length_size: int = 4) -> list[int]:
    """NAL unit types of an AVCC packet; asserts the length prefixes tile the data exactly."""
    types, offset, data = [], 0, packet.data
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + length_size], "big")
        assert size > 0 and offset + length_size + size <= len(data), "bad AVCC framing"
        types.append(data[offset + length_size] & 0x1F)
        offset += length_size + size
    return types


def assert_timing(packets: list[MediaPacket]) -> None:
    dts = [p.dts_ms for p in packets]
    assert all(b > a for a, b in itertools.pairwise(dts)), "dts must increase"
    assert all(p.pts_ms >= p.dts_ms for p in packets)
    pts = sorted(p.pts_ms for p in packets)
    assert all(b > a for a, b in itertools.pairwise(pts)), "no zero or negative durations"
