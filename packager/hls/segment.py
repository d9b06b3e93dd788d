"""What a segmenter hands to a muxer: one segment's packets and the tracks they belong to.

Timestamps are integer milliseconds on the live's *output* timeline (the pipeline rebases each
publish session onto it), so they never go backwards across reconnects and are never negative.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from media.types import AudioConfig, MediaPacket, VideoConfig


@dataclass(frozen=True, slots=True)
class TrackFormat:
    """The codec configurations a run of segments is muxed with (one init segment)."""

    video: VideoConfig | None
    audio: AudioConfig | None

    @property
    def codecs(self) -> str:
        """The RFC 6381 ``CODECS`` value of a variant carrying these tracks."""
        return ",".join(c.codec_string for c in (self.video, self.audio) if c is not None)


@dataclass(slots=True)
class Segment:
    """One media segment: video in decode order starting with a keyframe, audio in order.

    ``start_ms`` is the presentation time the segment starts at (its first keyframe's pts, or
    its first audio frame's when there is no video); ``duration_ms`` is what EXTINF says.
    ``video_end_dts`` is the decode time right after the last video sample: the next
    segment's first dts when known, an estimate for the last segment of a session.
    """

    fmt: TrackFormat
    #: Media sequence number in its rendition's playlist.
    sequence: int
    start_ms: int
    duration_ms: int = 0
    video: list[MediaPacket] = field(default_factory=list)
    audio: list[MediaPacket] = field(default_factory=list)
    video_end_dts: int = 0
    #: The first segment after a reconnect or a codec change: EXT-X-DISCONTINUITY before it.
    discontinuity: bool = False

    @property
    def size(self) -> int:
        return sum(len(p.data) for p in self.video) + sum(len(p.data) for p in self.audio)


class Muxer(Protocol):
    """Turns segments into bytes. One per rendition; calls are serialised by its writer."""

    #: File extension of media segments (".m4s", ".ts").
    extension: str
    #: Content type of media segments.
    content_type: str

    def init_segment(self, fmt: TrackFormat) -> bytes | None:
        """The initialisation segment (EXT-X-MAP) for ``fmt``, or None for formats without."""
        ...

    def media_segment(self, segment: Segment) -> bytes: ...


@dataclass(slots=True)
class Part:
    """One LL-HLS partial segment: the next run of a segment's packets, published before the
    segment is complete. A segment's parts, in order, hold exactly its packets, so the segment's
    bytes are its parts' bytes end to end (one fMP4 fragment each).

    ``duration_ms`` spans from its first video sample's decode time to the next part's (the
    segment's end for its last part); the parts of a segment add up to its EXTINF when the
    encoder's frame reordering delay is constant. ``video_end_dts`` is the decode time right
    after its last video sample.
    """

    fmt: TrackFormat
    sequence: int  # the media sequence number of its segment
    index: int  # 0, 1, ... within the segment
    duration_ms: int
    video: list[MediaPacket]
    audio: list[MediaPacket]
    video_end_dts: int
    independent: bool  # starts with a keyframe (INDEPENDENT=YES)
    last: bool  # the segment's last part: the segment follows
    discontinuity: bool  # its segment is a discontinuity
