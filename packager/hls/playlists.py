"""HLS playlists (RFC 8216), written with the ``m3u8`` library's model classes.

Media playlists: a live sliding window (EXT-X-MEDIA-SEQUENCE and EXT-X-DISCONTINUITY-SEQUENCE
advance as segments leave it), EXT-X-PROGRAM-DATE-TIME on every segment, EXT-X-MAP where the
init segment changes, EXT-X-INDEPENDENT-SEGMENTS (every segment starts with a keyframe), and
EXT-X-ENDLIST at the end; VOD playlists list everything with EXT-X-PLAYLIST-TYPE:VOD.

EXT-X-TARGETDURATION must be at least every EXTINF rounded to the nearest integer and must not
change within a playlist (RFC 8216 4.3.3.1, 6.2.1). A live playlist fixes it when its first
segment is known: the configured target rounded up, or that segment's rounded duration when the
source's keyframe interval is longer. A later, longer GOP (a source whose keyframe interval
grows mid-stream) leaves no valid choice in passthrough — the segment cannot be cut without a
keyframe — so the tag is raised then (never lowered) and the caller logs it: players
(hls.js, AVPlayer, ExoPlayer, FFmpeg) follow the new value; only validators object.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import m3u8

CMAF_VERSION = 7  # EXT-X-MAP in a media playlist needs 6; 7 is what fMP4 players expect
TS_VERSION = 3  # floating-point EXTINF


@dataclass(frozen=True, slots=True)
class SegmentEntry:
    """One segment as playlists list it. ``uri`` and ``init_uri`` are relative to the
    rendition's directory."""

    sequence: int
    uri: str
    duration: float  # seconds
    discontinuity: bool
    program_date_time: datetime
    init_uri: str | None
    size: int  # bytes


@dataclass(frozen=True, slots=True)
class Variant:
    """One EXT-X-STREAM-INF line of a master playlist."""

    uri: str
    bandwidth: int  # peak segment bit rate, bits/s
    average_bandwidth: int | None
    codecs: str
    resolution: tuple[int, int] | None
    frame_rate: float | None


def rounded(duration: float) -> int:
    """EXTINF rounded to the nearest integer, halves up (what RFC 8216 compares)."""
    return math.floor(duration + 0.5)


def _model(entries: Sequence[SegmentEntry], version: int) -> m3u8.M3U8:
    playlist = m3u8.M3U8()
    playlist.version = version
    playlist.is_independent_segments = True
    for entry in entries:
        init = {"uri": entry.init_uri} if entry.init_uri else None
        playlist.add_segment(
            m3u8.Segment(
                uri=entry.uri,
                duration=entry.duration,
                discontinuity=entry.discontinuity,
                program_date_time=entry.program_date_time,
                init_section=init,
            )
        )
    return playlist


def render_media(
    entries: Sequence[SegmentEntry],
    *,
    target_duration: int,
    version: int,
    discontinuity_sequence: int = 0,
    ended: bool = False,
    vod: bool = False,
) -> str:
    playlist = _model(entries, version)
    playlist.target_duration = target_duration
    playlist.media_sequence = entries[0].sequence if entries else 0
    playlist.discontinuity_sequence = discontinuity_sequence or None
    playlist.is_endlist = ended or vod
    playlist.playlist_type = "vod" if vod else None
    text: str = playlist.dumps(infspec="milliseconds")
    if "#EXT-X-MEDIA-SEQUENCE:" not in text:
        # The library leaves out a media sequence of 0; live clients are happier with it.
        text = text.replace("#EXTM3U\n", "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n", 1)
    return text


def render_vod(entries: Sequence[SegmentEntry], *, version: int, minimum_target: int) -> str:
    target = max([minimum_target, *(rounded(e.duration) for e in entries)])
    return render_media(entries, target_duration=target, version=version, vod=True)


def render_master(variants: Sequence[Variant], *, version: int) -> str:
    playlist = m3u8.M3U8()
    playlist.version = version
    playlist.is_independent_segments = True
    for variant in variants:
        info: dict[str, object] = {
            "bandwidth": variant.bandwidth,
            "average_bandwidth": variant.average_bandwidth,
            "codecs": variant.codecs,
        }
        if variant.resolution is not None:
            info["resolution"] = f"{variant.resolution[0]}x{variant.resolution[1]}"
        if variant.frame_rate is not None:
            info["frame_rate"] = round(variant.frame_rate, 3)
        playlist.add_playlist(m3u8.Playlist(variant.uri, info, [], None))
    text: str = playlist.dumps()
    return text


class LivePlaylist:
    """The sliding window of one rendition's live media playlist."""

    def __init__(self, window: int, *, version: int, minimum_target: int) -> None:
        self.window = window
        self.version = version
        self.minimum_target = minimum_target
        self.entries: deque[SegmentEntry] = deque()
        self.discontinuity_sequence = 0
        self.target_duration: int | None = None
        self.ended = False

    def add(self, entry: SegmentEntry) -> tuple[list[SegmentEntry], bool]:
        """Append a segment; returns the entries that left the window and whether the target
        duration had to be raised (see the module docstring)."""
        needed = rounded(entry.duration)
        raised = False
        if self.target_duration is None:
            self.target_duration = max(self.minimum_target, needed)
        elif needed > self.target_duration:
            self.target_duration = needed
            raised = True
        self.entries.append(entry)
        evicted = []
        while len(self.entries) > self.window:
            old = self.entries.popleft()
            evicted.append(old)
            # The sequence counts the discontinuity tags that are no longer in the playlist.
            if old.discontinuity:
                self.discontinuity_sequence += 1
        return evicted, raised

    def render(self) -> str:
        return render_media(
            list(self.entries),
            target_duration=self.target_duration or self.minimum_target,
            version=self.version,
            discontinuity_sequence=self.discontinuity_sequence,
            ended=self.ended,
        )
