"""One rendition of a live: segmenter -> muxer -> storage -> media playlist.

Items arrive on the event loop (:meth:`Rendition.push`, cheap: the segmenter only sorts
packets into segments). Each completed segment is queued to the rendition's writer task,
which muxes it in a worker thread, stores it, and only then stores the playlist that lists
it — so a playlist never names a segment that is not there. One writer per rendition keeps
segments in order; the queue is bounded, and when storage cannot keep up new segments are
dropped (counted) rather than memory growing without end. A segment lost either way (dropped,
or not stored after the backend's retries) is never listed; the next segment listed carries
EXT-X-DISCONTINUITY, so players reset their timeline across the hole instead of stalling on it.

With LL-HLS (the segmenter cuts parts), publishing and storing part ways: each part is muxed on
the event loop the moment the segmenter hands it out and published to the rendition's
:class:`~packager.hls.low_latency.LiveRendition` (the origin serves it from memory, releasing
the playlist requests held for it); a complete segment is muxed whole (one fragment, whatever
its parts: see packager.hls.low_latency), listed there at once, and then queued to the writer,
which stores it and the playlist for everything else (recording, other processes, a CDN
reading storage). So a slow upload never delays a part. Parts and segments have a muxer each
(their own fragment numbers and audio clock). A new init segment goes to storage with the next
segment queued, and again with the one after if that one is dropped or fails.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from media.types import AudioConfig, VideoConfig
from packager.hls.cmaf import CmafMuxer
from packager.hls.low_latency import LiveIndex, LiveRendition, PartEntry
from packager.hls.playlists import CMAF_VERSION, TS_VERSION, LivePlaylist, SegmentEntry, Variant
from packager.hls.segment import Muxer, Part, Segment, TrackFormat
from packager.hls.segmenter import Output, Segmenter
from packager.hls.ts import TS_CODECS, TsMuxer
from packager.metrics import PackagerMetrics
from packager.storage.base import Storage, put_object
from packager.types import RenditionItem

log = logging.getLogger(__name__)

QUEUE_SEGMENTS = 16
RenditionKind = Literal["source", "ladder"]


class WallClock:
    """Maps output-timeline milliseconds to wall-clock time (EXT-X-PROGRAM-DATE-TIME).

    Each publish session anchors its first keyframe to the time it arrived; renditions that
    lag (the ladder) look up the anchor of the session their segment belongs to.
    """

    def __init__(self) -> None:
        self._anchors: deque[tuple[int, float]] = deque(maxlen=64)

    def anchor(self, media_ms: int, wall_s: float) -> None:
        if self._anchors:  # keep PDT increasing across reconnects
            last_ms, last_wall = self._anchors[-1]
            wall_s = max(wall_s, last_wall + (media_ms - last_ms) / 1000)
        self._anchors.append((media_ms, wall_s))

    def refine(self, media_ms: int, wall_s: float) -> None:
        """A later packet of the session that set the last anchor arrived at ``wall_s``: if it
        says the session's media started earlier on the wall clock, move the anchor there.

        A session's first packets wait while the publish is set up (the stream key checked)
        and then come in a burst, so the first keyframe's arrival is late by that wait (0.5 s
        measured); packets that arrive at the publisher's pace tell the real start. The
        pipeline refines over the session's first seconds, before its first segment is out.
        """
        if not self._anchors:
            return
        anchor_ms, anchor_wall = self._anchors[-1]
        candidate = wall_s - (media_ms - anchor_ms) / 1000
        if len(self._anchors) >= 2:  # never before where the previous session ended
            before_ms, before_wall = self._anchors[-2]
            candidate = max(candidate, before_wall + (anchor_ms - before_ms) / 1000)
        if candidate < anchor_wall:
            self._anchors[-1] = (anchor_ms, candidate)

    def at(self, media_ms: int) -> datetime:
        media, wall = self._anchors[0] if self._anchors else (0, 0.0)
        for anchor_ms, anchor_wall in reversed(self._anchors):
            if anchor_ms <= media_ms:
                media, wall = anchor_ms, anchor_wall
                break
        return datetime.fromtimestamp(wall + (media_ms - media) / 1000, UTC)


class Journal(Protocol):
    """What a recording learns from a rendition (see packager.recording)."""

    def segment(self, rendition: str, entry: SegmentEntry) -> None: ...

    def variant(self, rendition: str, variant: Variant) -> None: ...


@dataclass
class RenditionStats:
    segments: int = 0
    bytes: int = 0
    seconds: float = 0.0
    peak_bps: int = 0
    frame_rate: float | None = None

    def add(self, segment: Segment, size: int) -> None:
        duration = segment.duration_ms / 1000
        self.segments += 1
        self.bytes += size
        self.seconds += duration
        # A session's last segment can be a fraction of a second: its rate says nothing.
        if duration >= 0.5 or self.peak_bps == 0:
            self.peak_bps = max(self.peak_bps, round(size * 8 / max(duration, 0.001)))
        if segment.video and duration >= 0.5 and self.frame_rate is None:
            self.frame_rate = round(len(segment.video) / duration, 3)

    @property
    def average_bps(self) -> int:
        return round(self.bytes * 8 / self.seconds) if self.seconds else 0


def muxer_factory(segment_format: str, fragment_ms: int) -> Callable[[VideoConfig | None], Muxer]:
    """How renditions make their muxer once their first segment's codecs are known."""

    def make(video: VideoConfig | None) -> Muxer:
        if segment_format == "ts" and (video is None or video.codec in TS_CODECS):
            return TsMuxer()
        if segment_format == "ts" and video is not None:
            log.warning("MPEG-TS cannot carry %s video; this rendition uses fMP4", video.codec)
        return CmafMuxer(fragment_ms)

    return make


@dataclass(slots=True)
class _Job:
    """A segment for the writer: muxed there, or (LL-HLS) already muxed and listed."""

    segment: Segment
    completed: float  # monotonic time the segmenter handed it out
    data: bytes | None = None
    entry: SegmentEntry | None = None
    inits: list[tuple[str, bytes]] = field(default_factory=list)  # to store before it


class Rendition:
    def __init__(
        self,
        name: str,
        kind: RenditionKind,
        *,
        directory: str,
        storage: Storage,
        segmenter: Segmenter,
        muxer_factory: Callable[[VideoConfig | None], Muxer],
        window: int,
        minimum_target: int,
        clock: WallClock,
        metrics: PackagerMetrics,
        keep_segments: bool,
        keep_after_window: int,
        journal: Journal | None = None,
        on_segment: Callable[[Rendition, Segment, SegmentEntry], None] | None = None,
        live_index: LiveIndex | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.directory = directory  # storage key prefix, e.g. "hls/7/b1700000000000/source"
        self.storage = storage
        self.segmenter = segmenter
        self.muxer_factory = muxer_factory
        self.muxer: Muxer | None = None  # chosen by the first segment's codecs
        self.clock = clock
        self.metrics = metrics
        self.keep_segments = keep_segments
        self.keep_after_window = keep_after_window
        self.journal = journal
        self.on_segment = on_segment
        self.playlist = LivePlaylist(window, version=CMAF_VERSION, minimum_target=minimum_target)
        self.stats = RenditionStats()
        self.fmt: TrackFormat | None = None  # of the last segment written
        self.generation = 0  # the ladder generation whose items this rendition takes
        self._init_uri: str | None = None
        self._inits = 0
        self._next_sequence: int | None = None
        self._expired: deque[str] = deque()
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue(QUEUE_SEGMENTS)
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"hls-{name}")
        self._warned_full = False
        # A segment was lost (dropped here, or not stored): the next one is queued or listed
        # with EXT-X-DISCONTINUITY, so no playlist ever hides a hole in the timeline.
        self._dropped = False
        self._lost = False
        # LL-HLS: what the origin serves from memory (parts are cut: segmenter.part_ms > 0).
        self.live_index = live_index
        self.live: LiveRendition | None = None
        self._new_inits: list[tuple[str, bytes]] = []  # to store with the next segment
        self._part_muxer = CmafMuxer()
        if live_index is not None and segmenter.part_ms > 0:
            # Its own playlist: it lists segments at once, self.playlist once they are stored.
            memory = LivePlaylist(window, version=CMAF_VERSION, minimum_target=minimum_target)
            self.live = LiveRendition(name, memory, segmenter.part_ms)
            live_index.add(directory, self.live)

    @property
    def playlist_key(self) -> str:
        return f"{self.directory}/live.m3u8"

    # --- input, on the event loop ---

    def push(self, item: RenditionItem) -> None:
        if isinstance(item, VideoConfig):
            self.segmenter.set_video_config(item)
        elif isinstance(item, AudioConfig):
            self.segmenter.set_audio_config(item)
        else:
            self._enqueue(self.segmenter.push(item))

    def end_session(self, until_ms: int | None = None) -> None:
        self._enqueue(self.segmenter.flush(until_ms))

    def gap(self) -> None:
        self._enqueue(self.segmenter.gap())

    def interrupt(self) -> None:
        """A shed ladder rung: see `Segmenter.interrupt`."""
        self._enqueue(self.segmenter.interrupt())

    def _enqueue(self, items: list[Output]) -> None:
        for item in items:
            if isinstance(item, Part):
                self._publish_part(item)
            elif self.live is not None:
                self._queue_job(self._publish_segment(item))
            else:
                self._queue_job(_Job(item, time.monotonic()))

    def _queue_job(self, job: _Job) -> None:
        try:
            self._queue.put_nowait(job)
            if self._dropped:
                job.segment.discontinuity = True
                if job.entry is not None:
                    job.entry = dataclasses.replace(job.entry, discontinuity=True)
                self._dropped = False
        except asyncio.QueueFull:
            self._new_inits[:0] = job.inits  # the next segment needs them stored
            self._dropped = True
            self.metrics.dropped_segments.inc()
            if not self._warned_full:
                self._warned_full = True
                log.warning("%s: storage is too slow, dropping segments", self.directory)

    # --- LL-HLS: publishing on the event loop ---

    def _publish_part(self, part: Part) -> None:
        live = self.live
        assert live is not None, "parts are cut only with a LiveRendition"
        if self.muxer is None:
            self.muxer = self.muxer_factory(part.fmt.video)
            step = self.segmenter.part_step_ms()
            if step is not None:
                live.set_part_target(step)
        assert isinstance(self.muxer, CmafMuxer), "LL-HLS parts are fMP4"
        if part.fmt != self.fmt:
            uri, init = self._next_init(part.fmt)
            live.add_init(uri, init)
            self._new_inits.append((uri, init))
            self.fmt = part.fmt
        data = self._part_muxer.media_part(part)
        entry = PartEntry(part.sequence, part.index, part.duration_ms / 1000, part.independent,
                          data)  # fmt: skip
        live.add_part(entry, part.discontinuity)

    def _publish_segment(self, segment: Segment) -> _Job:
        live = self.live
        assert live is not None and self.muxer is not None
        completed = time.monotonic()
        data = self.muxer.media_segment(segment)
        entry = SegmentEntry(
            sequence=segment.sequence,
            uri=f"seg_{segment.sequence}{self.muxer.extension}",
            duration=segment.duration_ms / 1000,
            discontinuity=segment.discontinuity,
            program_date_time=self.clock.at(segment.start_ms),
            init_uri=self._init_uri,
            size=len(data),
        )
        _, raised = live.add_segment(entry, data)
        if raised:
            self._log_raised(entry)
        self.metrics.publish_seconds.labels(self.kind).observe(time.monotonic() - completed)
        job = _Job(segment, completed, data, entry, self._new_inits)
        self._new_inits = []
        return job

    def _next_init(self, fmt: TrackFormat) -> tuple[str, bytes]:
        assert self.muxer is not None
        init = self.muxer.init_segment(fmt)
        assert init is not None
        self._init_uri = "init.mp4" if self._inits == 0 else f"init_{self._inits}.mp4"
        self._inits += 1
        return self._init_uri, init

    async def close(self, *, ended: bool) -> None:
        """Write what is queued, then the final playlist (with EXT-X-ENDLIST when ``ended``)."""
        await self._queue.put(None)
        await self._task
        if ended and self.playlist.entries:
            self.playlist.ended = True
            await self._store_playlist()
        if self.live is not None:
            assert self.live_index is not None
            self.live.end()  # held requests get the last playlist; later ones read storage
            self.live_index.remove(self.directory)

    # --- the writer task ---

    async def _run(self) -> None:
        while (job := await self._queue.get()) is not None:
            try:
                if job.data is None:
                    await self._write(job.segment, job.completed)
                else:
                    await self._store_listed(job)
            except Exception:  # storage errors of any backend: lose this segment, not the live
                self._lost = True
                self.metrics.storage_errors.inc()
                log.exception(
                    "%s: could not write segment %d", self.directory, job.segment.sequence
                )

    async def _store_listed(self, job: _Job) -> None:
        """LL-HLS: store a segment the origin already lists, then the stored playlist."""
        assert job.data is not None and job.entry is not None and self.live is not None
        for done, (uri, init) in enumerate(job.inits):
            try:
                await self._store(f"{self.directory}/{uri}", init)
            except Exception:
                self._new_inits[:0] = job.inits[done:]  # with the next segment, then
                raise
        entry = job.entry
        await self._store(f"{self.directory}/{entry.uri}", job.data)
        self.live.stored(entry.uri)
        # The stored playlist numbers what it lists without holes, as players count on: a
        # segment that could not be stored (the origin still serves it from memory) is
        # skipped here, with a discontinuity, and the next one takes its number.
        if self._next_sequence is None:
            self._next_sequence = entry.sequence
        entry = dataclasses.replace(entry, sequence=self._next_sequence,
                                    discontinuity=entry.discontinuity or self._lost)  # fmt: skip
        self._next_sequence += 1
        evicted, _ = self.playlist.add(entry)  # a raised target was logged when listed
        self._lost = False
        listed = await self._store_playlist()
        await self._stored(job.segment, entry, len(job.data), listed, evicted)

    async def _write(self, segment: Segment, completed: float) -> None:
        if self.muxer is None:
            self.muxer = self.muxer_factory(segment.fmt.video)
            self.playlist.version = TS_VERSION if isinstance(self.muxer, TsMuxer) else CMAF_VERSION
        if segment.fmt != self.fmt:
            if not isinstance(self.muxer, TsMuxer):
                uri, init = self._next_init(segment.fmt)
                await self._store(f"{self.directory}/{uri}", init)
            self.fmt = segment.fmt
        data = await asyncio.to_thread(self.muxer.media_segment, segment)
        if self._next_sequence is None:
            self._next_sequence = segment.sequence  # aligned with the source's numbering
        # The number is taken only once the segment is stored: a lost segment leaves no hole
        # in the media sequence (playlists number their entries consecutively).
        sequence = self._next_sequence
        uri = f"seg_{sequence}{self.muxer.extension}"
        await self._store(f"{self.directory}/{uri}", data)
        self._next_sequence += 1
        entry = SegmentEntry(
            sequence=sequence,
            uri=uri,
            duration=segment.duration_ms / 1000,
            discontinuity=segment.discontinuity or self._lost,
            program_date_time=self.clock.at(segment.start_ms),
            init_uri=self._init_uri,
            size=len(data),
        )
        evicted, raised = self.playlist.add(entry)
        self._lost = False
        if raised:
            self._log_raised(entry)
        listed = await self._store_playlist()
        self.metrics.publish_seconds.labels(self.kind).observe(time.monotonic() - completed)
        await self._stored(segment, entry, len(data), listed, evicted)

    def _log_raised(self, entry: SegmentEntry) -> None:
        log.warning(
            "%s: segment %d lasts %.1f s: EXT-X-TARGETDURATION raised to %d",
            self.directory, entry.sequence, entry.duration, self.playlist.target_duration,
        )  # fmt: skip

    async def _stored(
        self, segment: Segment, entry: SegmentEntry, size: int, listed: bool,
        evicted: list[SegmentEntry],
    ) -> None:  # fmt: skip
        """A segment and the playlist listing it are stored: account, tell, expire."""
        self.metrics.segments.labels(self.kind).inc()
        self.metrics.segment_bytes.labels(self.kind).inc(size)
        self.stats.add(segment, size)
        if self.journal is not None:
            self.journal.segment(self.name, entry)
            if (variant := self.variant(entry.uri)) is not None:
                self.journal.variant(self.name, variant)
        if self.on_segment is not None and listed:  # the master names only stored playlists
            self.on_segment(self, segment, entry)
        if not self.keep_segments:
            await self._expire(evicted)

    async def _expire(self, evicted: list[SegmentEntry]) -> None:
        """Without a recording, delete segments some time after they left the window."""
        self._expired.extend(f"{self.directory}/{e.uri}" for e in evicted)
        old = []
        while len(self._expired) > self.keep_after_window:
            old.append(self._expired.popleft())
        if old:
            try:
                await self.storage.delete(old)
            except Exception:
                self.metrics.storage_errors.inc()
                log.exception("%s: could not delete old segments", self.directory)

    async def _store(self, key: str, data: bytes) -> None:
        await put_object(self.storage, key, data)

    async def _store_playlist(self) -> bool:
        """A playlist that could not be stored is not fatal: the next one lists the same."""
        try:
            await self._store(self.playlist_key, self.playlist.render().encode())
        except Exception:
            self.metrics.storage_errors.inc()
            log.exception("%s: could not write the live playlist", self.directory)
            return False
        return True

    # --- what the master playlist says about this rendition ---

    def variant(self, uri: str) -> Variant | None:
        fmt = self.fmt
        if fmt is None or not self.stats.segments:
            return None
        video = fmt.video
        resolution = (video.width, video.height) if video and video.width else None
        frame_rate: float | None = None
        if video is not None:
            frame_rate = float(video.frame_rate) if video.frame_rate else self.stats.frame_rate
        return Variant(
            uri=uri,
            bandwidth=max(self.stats.peak_bps, 1),
            average_bandwidth=self.stats.average_bps or None,
            codecs=fmt.codecs,
            resolution=resolution,
            frame_rate=frame_rate,
        )
