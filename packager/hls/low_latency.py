"""LL-HLS (draft-pantos-hls-rfc8216bis): one live rendition as the origin serves it.

A :class:`LiveRendition` holds, in memory, what a low-latency player asks for at the live edge:
the media playlist with ``EXT-X-PART`` for the parts of its last segments and of the segment in
progress, ``EXT-X-PRELOAD-HINT`` for the next part, ``EXT-X-RENDITION-REPORT`` for its sibling
renditions; the parts' bytes; the init segments; and each segment's bytes until storage has it
(so a listed segment is never a 404 while S3 is still uploading it). The rendition publishes into
it on the event loop the moment a part is muxed, and every playlist request held for that part
(blocking reload, ``_HLS_msn``/``_HLS_part``) is released by that same call: one shared future
per rendition, no polling, no thread per request.

Rendering is by hand rather than with the ``m3u8`` library: a playlist changes with every part
(three times a second per rendition) and is served many times in between, so each version is
rendered once, and only when asked for.

Parts are kept while their segment is within three target durations of the live edge (the
spec's advice for how long EXT-X-PART tags stay listed). A segment is muxed whole, as one
fragment, rather than as its parts end to end: the FFmpeg 9 HLS demuxer misreads segments of
several fragments in a master with more than one variant ("Packet corrupt"), and the segments
are what every player that does not speak LL-HLS, and the recording, read.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from packager.hls.playlists import LivePlaylist, SegmentEntry

#: EXT-X-VERSION of a low-latency media playlist (EXT-X-SKIP needs 9).
LL_VERSION = 9
#: CAN-SKIP-UNTIL in target durations (the spec's minimum is six).
SKIP_TARGETS = 6
#: Parts listed for segments this many target durations from the live edge.
PART_TARGETS_KEPT = 3


def part_uri(sequence: int, index: int) -> str:
    return f"part_{sequence}_{index}.m4s"


@dataclass(slots=True)
class PartEntry:
    sequence: int
    index: int
    duration: float  # seconds
    independent: bool
    data: bytes

    @property
    def uri(self) -> str:
        return part_uri(self.sequence, self.index)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a playlist's live edge is: the segment in progress and how many of its parts are
    out (``parts`` 0: it has just started), and the last complete segment."""

    msn: int
    parts: int
    last_complete: int | None

    def has(self, msn: int, part: int | None) -> bool:
        """Whether a playlist at this position satisfies ``_HLS_msn``/``_HLS_part``: segment
        ``msn`` complete, or its part ``part`` out. A part past a segment's last is taken as
        satisfied once the segment is complete (the next segment's first part follows)."""
        if part is None:
            return self.last_complete is not None and msn <= self.last_complete
        return msn < self.msn or (msn == self.msn and part < self.parts)


class LiveRendition:
    def __init__(self, name: str, playlist: LivePlaylist, part_target_ms: float) -> None:
        self.name = name
        self.playlist = playlist  # the complete segments, as the stored playlist has them
        self.part_target = 0.0  # PART-TARGET in seconds (set_part_target)
        self.set_part_target(part_target_ms)
        self.parts: deque[PartEntry] = deque()
        self.group: dict[str, LiveRendition] = {self.name: self}  # the broadcast's renditions
        self.init: dict[str, bytes] = {}
        self.current_init: str | None = None
        self._segments: dict[str, bytes] = {}  # complete, until storage has them
        self._partial: list[PartEntry] = []  # parts of the segment in progress
        self._partial_msn: int | None = None
        self._partial_discontinuity = False
        self._rendered: dict[bool, bytes] = {}
        self._waiter: asyncio.Future[None] | None = None

    # --- the rendition publishes ---

    def set_part_target(self, step_ms: float) -> None:
        """PART-TARGET: the part step rounded up to the ms (parts last one step, give or take
        the millisecond rounding of their timestamps)."""
        self.part_target = (math.ceil(step_ms) + 1) / 1000

    def add_init(self, uri: str, data: bytes) -> None:
        self.init[uri] = data
        self.current_init = uri

    def add_part(self, entry: PartEntry, discontinuity: bool) -> None:
        if self._partial_msn != entry.sequence:
            self._partial, self._partial_msn = [], entry.sequence
            self._partial_discontinuity = discontinuity
        self._partial.append(entry)
        self.parts.append(entry)
        self._changed()

    def add_segment(self, entry: SegmentEntry, data: bytes) -> tuple[list[SegmentEntry], bool]:
        """List the complete segment (served from here until :meth:`stored`); returns what
        ``LivePlaylist.add`` says."""
        self._partial, self._partial_msn = [], None
        self._segments[entry.uri] = data
        evicted, raised = self.playlist.add(entry)
        for old in evicted:
            self._segments.pop(old.uri, None)
        self._drop_old_parts()
        self._changed()
        return evicted, raised

    def stored(self, uri: str) -> None:
        """Storage has the segment: readers get it from there."""
        self._segments.pop(uri, None)

    def end(self) -> None:
        self.playlist.ended = True
        self._changed()

    def _drop_old_parts(self) -> None:
        entries = self.playlist.entries
        if not entries:
            return
        kept_seconds, oldest = 0.0, entries[-1].sequence
        for entry in reversed(entries):
            kept_seconds += entry.duration
            oldest = entry.sequence
            if kept_seconds >= PART_TARGETS_KEPT * self.target_duration:
                break
        while self.parts and self.parts[0].sequence < oldest:
            self.parts.popleft()

    def _changed(self) -> None:
        self._rendered.clear()
        for sibling in self.group.values():
            if sibling is not self:
                sibling._rendered.clear()  # their rendition reports name this one's edge
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- the origin reads ---

    @property
    def target_duration(self) -> int:
        return self.playlist.target_duration or self.playlist.minimum_target

    @property
    def position(self) -> Position:
        entries = self.playlist.entries
        last = entries[-1].sequence if entries else None
        if self._partial_msn is not None:
            return Position(self._partial_msn, len(self._partial), last)
        return Position(last + 1 if last is not None else 0, 0, last)

    @property
    def ended(self) -> bool:
        return self.playlist.ended

    def media(self, name: str) -> bytes | None:
        """A part, an init segment, or a segment storage does not have yet."""
        if name.startswith("part_"):
            for part in reversed(self.parts):
                if part.uri == name:
                    return part.data
            return None
        return self._segments.get(name) or self.init.get(name)

    def hinted(self, name: str) -> bool:
        """Whether ``name`` is the part the playlist hints at (it will exist shortly)."""
        position = self.position
        return not self.ended and name == part_uri(position.msn, position.parts)

    async def changed(self) -> None:
        """Until the next publication (shared by every waiter: shield it from their timeouts)."""
        if self._waiter is None:
            self._waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._waiter)

    def render(self, skip: bool = False) -> bytes:
        """The LL-HLS media playlist (``skip``: the delta update, EXT-X-SKIP)."""
        cached = self._rendered.get(skip)
        if cached is None:
            cached = self._rendered[skip] = self._render(skip).encode()
        return cached

    def _render(self, skip: bool) -> str:
        playlist = self.playlist
        target = self.target_duration
        entries = list(playlist.entries)
        skip_until = SKIP_TARGETS * target
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{LL_VERSION}",
            f"#EXT-X-TARGETDURATION:{target}",
            f"#EXT-X-PART-INF:PART-TARGET={self.part_target:.3f}",
            f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={skip_until:.1f},"
            f"PART-HOLD-BACK={3 * self.part_target:.3f}",
            f"#EXT-X-MEDIA-SEQUENCE:{entries[0].sequence if entries else self.position.msn}",
        ]
        if playlist.discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{playlist.discontinuity_sequence}")
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        skipped = 0
        if skip:
            # Segments older than CAN-SKIP-UNTIL from the end, counted from the newest.
            age = 0.0
            for i in range(len(entries) - 1, -1, -1):
                if age >= skip_until:
                    skipped = i + 1
                    break
                age += entries[i].duration
            if skipped:
                lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
        parts_by_msn: dict[int, list[PartEntry]] = {}
        for part in self.parts:
            parts_by_msn.setdefault(part.sequence, []).append(part)
        init: str | None = None
        for i, entry in enumerate(entries):
            if i < skipped:
                init = entry.init_uri
                continue
            if entry.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if entry.init_uri and (entry.init_uri != init or i == skipped):
                lines.append(f'#EXT-X-MAP:URI="{entry.init_uri}"')
            init = entry.init_uri
            lines.append("#EXT-X-PROGRAM-DATE-TIME:" + _pdt(entry))
            lines.extend(_part_lines(parts_by_msn.get(entry.sequence, ())))
            lines.append(f"#EXTINF:{entry.duration:.3f},")
            lines.append(entry.uri)
        if self._partial and not playlist.ended:
            if self._partial_discontinuity and entries:
                lines.append("#EXT-X-DISCONTINUITY")
            if self.current_init and (self.current_init != init or not entries):
                lines.append(f'#EXT-X-MAP:URI="{self.current_init}"')
            lines.extend(_part_lines(self._partial))
        if playlist.ended:
            lines.append("#EXT-X-ENDLIST")
        else:
            position = self.position
            lines.append(
                f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{part_uri(position.msn, position.parts)}"'
            )
            for name, sibling in sorted(self.group.items()):
                if sibling is not self and (report := sibling._report()) is not None:
                    lines.append(f'#EXT-X-RENDITION-REPORT:URI="../{name}/live.m3u8",{report}')
        return "\n".join(lines) + "\n"

    def _report(self) -> str | None:
        """LAST-MSN and LAST-PART of this rendition's newest part."""
        if self._partial:
            last = self._partial[-1]
        elif self.parts:
            last = self.parts[-1]
        else:
            return None
        return f"LAST-MSN={last.sequence},LAST-PART={last.index}"


def _part_lines(parts: Iterable[PartEntry]) -> list[str]:
    return [
        f'#EXT-X-PART:DURATION={p.duration:.5f},URI="{p.uri}"'
        + (",INDEPENDENT=YES" if p.independent else "")
        for p in parts
    ]


def _pdt(entry: SegmentEntry) -> str:
    return entry.program_date_time.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LiveIndex:
    """Every live rendition of this process by its directory (``hls/7/b17.../source``): what
    the origin (``web.hls_live``) looks keys up in."""

    def __init__(self) -> None:
        self._renditions: dict[str, LiveRendition] = {}
        self._broadcasts: dict[str, dict[str, LiveRendition]] = {}

    def add(self, directory: str, rendition: LiveRendition) -> None:
        """Registers it, and joins it to the other renditions of its broadcast (one dict they
        share, for their rendition reports)."""
        broadcast = directory.rpartition("/")[0]
        group = self._broadcasts.setdefault(broadcast, {})
        group[rendition.name] = rendition
        rendition.group = group
        for other in group.values():
            other._rendered.clear()
        self._renditions[directory] = rendition

    def remove(self, directory: str) -> None:
        rendition = self._renditions.pop(directory, None)
        if rendition is None:
            return
        broadcast = directory.rpartition("/")[0]
        group = self._broadcasts.get(broadcast, {})
        group.pop(rendition.name, None)
        rendition.group = {rendition.name: rendition}
        for other in group.values():
            other._rendered.clear()
        if not group:
            self._broadcasts.pop(broadcast, None)

    def find(self, key: str) -> tuple[LiveRendition, str] | None:
        """The rendition that ``key`` (``hls/...``) is in, and the object's name there."""
        directory, _, name = key.rpartition("/")
        rendition = self._renditions.get(directory)
        return (rendition, name) if rendition is not None else None

    def __len__(self) -> int:
        return len(self._renditions)
