"""Types shared across the packager: ladder rungs and what a rendition is made of.

A *rendition* is one variant of a live's HLS stream: the *source* (the publisher's own video,
remuxed without decoding) or a *rung* of the transcoded ladder. Every rendition carries the
source's audio (copied when it is AAC), so each variant playlist is self-contained (muxed
audio+video fMP4 segments).

Renditions are fed the `media.types` items: a `VideoConfig`/`AudioConfig` whenever the codec
configuration changes, then `MediaPacket`s with millisecond `dts_ms`/`pts_ms`. Transcoded rungs
produce the same types (libx264 output in AVCC form with its avcC as `VideoConfig.extradata`),
so one segmenter serves every rendition.

Segment boundaries are decided by the same rule in every rendition — cut at a video keyframe
whose pts is at least the target duration after the current segment's start — and the ladder
forces an IDR at exactly each source keyframe's pts (and nowhere else), so every rendition cuts
at the same media timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeAlias

from media.types import AudioConfig, MediaPacket, VideoConfig

if TYPE_CHECKING:
    from av.video.frame import VideoFrame

RenditionItem: TypeAlias = MediaPacket | VideoConfig | AudioConfig


@dataclass(frozen=True, slots=True)
class RungPaused:
    """From the ladder: this rung was shed. Its output stops after the packets before this
    marker and resumes, if load allows, at a later source keyframe, after a hole in media
    time: the rung's rendition closes its segments and marks the next one a discontinuity."""


LadderItem: TypeAlias = RenditionItem | RungPaused


@dataclass(frozen=True, slots=True)
class Rung:
    """One transcoded variant of the ladder."""

    name: str  # playlist/directory name, e.g. "720p"
    width: int
    height: int
    fps: int
    video_bitrate: int  # bits per second (the encoder's target; maxrate = 1.5x)


class PosterWriter(Protocol):
    """Writes a broadcast's poster (``poster.jpg``); ``packager.ladder.thumbnails`` has one.

    One per session and source config: ``start`` with the source's video config, ``push``
    source video keyframes (non-blocking; decoding happens on its thread), ``end`` when the
    session is over. Behind a ladder, the ladder drives it instead and, since it decodes every
    frame anyway, hands it decoded frames (``push_frame``) rather than keyframes to decode.
    """

    def start(self, config: VideoConfig) -> None: ...

    def push(self, packet: MediaPacket) -> None: ...

    def push_frame(self, frame: VideoFrame, pts_ms: int) -> None: ...

    def end(self) -> None: ...

    async def wait_closed(self) -> None: ...


# How packager/hls/segmenter.py applies the rule above:
# - a keyframe at least half the target in is also a cut when waiting one more keyframe
#   interval (the last one seen) would overshoot the target by `MAX_OVERSHOOT_MS`
#   (0.5 s) or more, so 1.5 s GOPs give 1.5 s segments rather than 3 s ones;
# - only the source rendition applies the rule: it records each segment start in a `CutPlan`,
#   and ladder renditions cut at their first keyframe at or after each planned start (within
#   10 ms), taking the source's sequence numbers; with IDRs forced at exactly the source's
#   keyframe pts, the boundaries are identical.
