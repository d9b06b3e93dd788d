"""The pipeline of one live broadcast: publish sessions in, renditions and a master playlist out.

Follow one video packet: :meth:`LivePipeline.run` reads it from the session's subscription and
:meth:`LivePipeline.feed` rebases its timestamps onto the broadcast's output timeline (each
session — the first and every reconnect — continues where the previous one ended, so players
never see time go backwards), then hands it to the *source* rendition (``packager.hls.rendition``:
segmenter -> muxer -> storage -> media playlist), to the ladder if one is attached (its rungs
come back through ``on_output`` as more renditions) and, keyframes only, to the thumbnailer
(which the ladder feeds instead when there is one).
When a rendition publishes a segment, the master playlist is rewritten if what it says changed.

Storage layout (keys; ``web.hls`` serves them at ``/hls/...``)::

    hls/{live}/master.m3u8                      the live's master playlist (stable URL)
    hls/{live}/{broadcast}/{rendition}/live.m3u8, init.mp4, seg_N.m4s (or seg_N.ts)
    hls/{live}/{broadcast}/vod.m3u8             VOD master, once the recording is finalised
    hls/{live}/{broadcast}/{rendition}/vod.m3u8
    hls/{live}/{broadcast}/poster.jpg           written by the thumbnailer

A *broadcast* is one run of the live (a live is a reusable room): reconnects within the window
stay in the same broadcast, so its playlists simply go on, with one EXT-X-DISCONTINUITY.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from media.types import AudioConfig, MediaPacket, VideoConfig
from packager.health import HealthMeter
from packager.hls.low_latency import LiveIndex
from packager.hls.playlists import SegmentEntry, render_master
from packager.hls.rendition import Journal, Rendition, RenditionKind, WallClock, muxer_factory
from packager.hls.segment import Segment
from packager.hls.segmenter import CutPlan, Segmenter
from packager.metrics import PackagerMetrics
from packager.options import PackagerOptions
from packager.source import MediaFeed
from packager.storage.base import Storage, put_object
from packager.types import LadderItem, PosterWriter, RenditionItem, RungPaused

log = logging.getLogger(__name__)

OutputCallback = Callable[[str, LadderItem], None]
LADDER_FLUSH_TIMEOUT_S = 10.0
_AUDIO_BACKLOG_MS = 10_000  # source audio replayed to a rung that appears late
#: EXT-X-PROGRAM-DATE-TIME: a session's wall-clock anchor is refined over this much of its
#: media (before its first segment, of the 2 s target, is out): see WallClock.refine.
PDT_REFINE_MS = 1500


class PosterWriterFactory(Protocol):
    def __call__(self, storage: Storage, key: str, on_written: Callable[[], None]) -> PosterWriter:
        """``on_written`` is to be called on the event loop after each poster write."""
        ...


class Transcoder(Protocol):
    """The transcoded ladder of one publish session (``packager.ladder.ladder.Ladder``).

    ``start`` once with the source's video config, ``push`` every source video packet (on the
    event loop; it only queues work for its threads), ``end`` when the session is over;
    ``wait_closed`` returns once, after ``end``, everything was emitted. It emits each rung's
    items — a ``VideoConfig`` first, then ``MediaPacket`` s on the timeline it was fed, IDRs at
    exactly the source's keyframe pts, and a ``RungPaused`` when a rung is shed (its rendition
    then closes its segment and marks the next one a discontinuity) — through
    ``on_output(rung_name, item)`` on the event loop thread. Audio is not its business: the
    pipeline adds the source's audio to every rung.
    Given a poster writer, the ladder starts, feeds and ends it.
    """

    def start(self, source_video: VideoConfig) -> None: ...

    def push(self, packet: MediaPacket) -> None: ...

    def end(self) -> None: ...

    async def wait_closed(self) -> None: ...


class TranscoderFactory(Protocol):
    def __call__(
        self, on_output: OutputCallback, thumbnailer: PosterWriter | None
    ) -> Transcoder: ...


class PipelineEvents(Protocol):
    """What the pipeline tells its owner (the Packager): each runs on the event loop."""

    def long_keyframe_interval(self, live_id: int, interval_ms: int) -> None: ...

    def poster_written(self, live_id: int, key: str) -> None: ...


class LivePipeline:
    def __init__(
        self,
        live_id: int,
        broadcast: str,
        options: PackagerOptions,
        storage: Storage,
        metrics: PackagerMetrics,
        *,
        events: PipelineEvents | None = None,
        journal: Journal | None = None,
        ladder_factory: TranscoderFactory | None = None,
        thumbnailer_factory: PosterWriterFactory | None = None,
        clock: Callable[[], float] = time.time,
        live_index: LiveIndex | None = None,
    ) -> None:
        self.live_id = live_id
        self.live_index = live_index  # LL-HLS: renditions publish parts into it
        self.broadcast = broadcast
        self.prefix = f"hls/{live_id}/{broadcast}"
        self.master_key = f"hls/{live_id}/master.m3u8"
        self.options = options
        self.storage = storage
        self.metrics = metrics
        self.events = events
        self.journal = journal
        self.ladder_factory = ladder_factory
        self.clock = clock
        self.plan = CutPlan()
        self.wall = WallClock()
        self.rungs: dict[str, Rendition] = {}
        self.sessions = 0
        self.source = self._rendition("source", "source")
        self.thumbnailer_factory = thumbnailer_factory
        self.poster_key = f"{self.prefix}/poster.jpg"
        self._thumbnailer: PosterWriter | None = None  # when no ladder drives it
        self._video: VideoConfig | None = None
        self._audio: AudioConfig | None = None
        self._offset: int | None = None  # input ms + offset = output ms, this session
        self._timeline_end = 0  # output ms just past everything fed so far
        self._last_dts = -1  # of the last video packet fed
        self._refine_until = 0  # output ms: until then the session's PDT anchor is refined
        self._refine_shift = 0
        self._ladder: Transcoder | None = None
        self._generation = 0
        self._generation_end: dict[int, int] = {}  # ladder generation -> its session's end
        self._flushing: dict[int, asyncio.Task[None]] = {}  # generation -> until it is out
        self._audio_backlog: deque[MediaPacket] = deque()
        self._master_written: list[tuple[str, str, int]] = []
        self._master_lock = asyncio.Lock()
        self._warned_gop = False
        self.finished = False
        # What the streamer's studio page graphs; the Packager samples it (packager/health.py).
        self.health = HealthMeter(time.monotonic(), [rung.name for rung in options.ladder])

    def _rendition(self, name: str, kind: RenditionKind) -> Rendition:
        o = self.options
        segmenter = Segmenter(
            o.target_ms,
            audio_wait_ms=round(o.audio_wait * 1000),
            plan=self.plan,
            follow=kind == "ladder",
            part_ms=o.part_ms if self.live_index is not None else 0,
        )
        return Rendition(
            name, kind,
            directory=f"{self.prefix}/{name}", storage=self.storage, segmenter=segmenter,
            muxer_factory=muxer_factory(o.segment_format, round(o.fragment_duration * 1000)),
            window=o.window, minimum_target=o.target_duration_tag, clock=self.wall,
            metrics=self.metrics, keep_segments=o.recording, keep_after_window=o.keep_after_window,
            journal=self.journal, on_segment=self._on_segment, live_index=self.live_index,
        )  # fmt: skip

    def attach_journal(self, journal: Journal) -> None:
        """Record from now on (set before the first segment; the Packager does)."""
        self.journal = journal
        for rendition in self.renditions():
            rendition.journal = journal

    # --- a publish session ---

    async def run(self, subscription: MediaFeed) -> None:
        """Package one publish session, until it ends."""
        self.sessions += 1
        self._offset = None
        dropped = subscription.dropped
        try:
            async for item in subscription:
                if subscription.dropped != dropped:
                    dropped = subscription.dropped
                    self.source.gap()  # what was lost cannot be decoded: cut before the hole
                    self.health.gap()
                self.feed(item)
        finally:
            self.end_session()

    def feed(self, item: RenditionItem) -> None:
        if isinstance(item, VideoConfig):
            self._set_video(item)
        elif isinstance(item, AudioConfig):
            self._audio = item
            self.source.push(item)
            for rung in self.rungs.values():
                rung.push(item)
        else:
            self._feed_packet(item)

    def _set_video(self, config: VideoConfig) -> None:
        self.source.push(config)
        if config == self._video:
            return  # the configs a resync re-sends
        self._video = config
        self.health.video_config(config.codec, config.width, config.height)
        self._end_ladder()  # a new source config: new decoders behind it
        thumbnailer = None
        if self.thumbnailer_factory is not None:
            thumbnailer = self.thumbnailer_factory(
                self.storage, self.poster_key, self._poster_written
            )
        if self.ladder_factory is not None:
            self._generation += 1
            gen = self._generation
            self._ladder = self.ladder_factory(
                functools.partial(self._on_ladder_output, gen), thumbnailer
            )
            self._ladder.start(config)
        elif thumbnailer is not None:
            thumbnailer.start(config)
            self._thumbnailer = thumbnailer

    def _feed_packet(self, packet: MediaPacket) -> None:
        # Everything that came in counts toward the ingest's health, what is skipped below too.
        if packet.kind == "video":
            self.health.video(packet.dts_ms, packet.keyframe, len(packet.data))
        else:
            self.health.audio(len(packet.data))
        if self._offset is None:
            # A session starts at its first video keyframe (or its first audio frame when it
            # has no video), placed right after what the previous session left: its first
            # picture is shown where the last segment ends (players jump no hole at the
            # discontinuity), decode times still going forward.
            if self._video is not None and not (packet.kind == "video" and packet.keyframe):
                return
            self._offset = self._timeline_end - packet.dts_ms
            end = self.source.segmenter.last_end_ms
            if end is not None and packet.kind == "video":
                self._offset = max(end - packet.pts_ms, self._last_dts + 1 - packet.dts_ms)
            self.wall.anchor(packet.pts_ms + self._offset, self.clock())
            self._refine_until = packet.pts_ms + self._offset + PDT_REFINE_MS
            # The keyframe's PDT is when it was sent (at its decode time on the publisher's
            # clock): later frames' decode times, shifted by its composition offset.
            self._refine_shift = packet.pts_ms - packet.dts_ms
        out = MediaPacket(
            packet.kind, packet.dts_ms + self._offset, packet.pts_ms + self._offset,
            packet.keyframe, packet.data,
        )  # fmt: skip
        self._timeline_end = max(self._timeline_end, out.pts_ms + 34, out.dts_ms + 34)
        if out.kind == "video" and out.dts_ms < self._refine_until:
            self.wall.refine(out.dts_ms + self._refine_shift, self.clock())
        if out.kind == "video":
            self._last_dts = out.dts_ms
        self.source.push(out)
        if out.kind == "video":
            if self._ladder is not None:
                self._ladder.push(out)
            if out.keyframe and self._thumbnailer is not None:
                self._thumbnailer.push(out)
        else:
            for rung in self.rungs.values():
                rung.push(out)
            if self.ladder_factory is not None:
                self._audio_backlog.append(out)
                while out.pts_ms - self._audio_backlog[0].pts_ms > _AUDIO_BACKLOG_MS:
                    self._audio_backlog.popleft()

    def end_session(self) -> None:
        """The publisher left: publish what is buffered; the next session is a discontinuity."""
        self.source.end_session()
        self._end_ladder()
        self.health.gap()  # the next session has a timeline of its own
        self._video = None  # the next session announces its configs again
        self._offset = None

    def _end_ladder(self) -> None:
        if self._thumbnailer is not None:
            self._thumbnailer.end()
            self._thumbnailer = None
        if self._ladder is not None:
            gen, ladder = self._generation, self._ladder
            self._generation_end[gen] = self._timeline_end
            self._ladder = None
            ladder.end()
            task = asyncio.get_running_loop().create_task(self._ladder_closed(gen, ladder))
            task.add_done_callback(_log_failure)
            self._flushing[gen] = task

    async def _ladder_closed(self, gen: int, ladder: Transcoder) -> None:
        await ladder.wait_closed()
        # Everything this generation will ever emit went through on_output: close its rungs.
        for rung in self.rungs.values():
            if rung.generation == gen:
                rung.end_session(self._generation_end.get(gen))

    # --- the ladder's renditions ---

    def _on_ladder_output(self, gen: int, name: str, item: LadderItem) -> None:
        if self.finished:
            return
        if gen == self._generation:  # the current ladder's rungs, not a late older one's
            if isinstance(item, RungPaused):
                self.health.rung_shed(name)
            else:
                self.health.rung_output(name)
        rung = self.rungs.get(name)
        if isinstance(item, RungPaused):
            if rung is not None and rung.generation == gen:
                rung.interrupt()  # shed: a hole follows, then (restored) a discontinuity
            return
        if rung is None:
            rung = self.rungs[name] = self._rendition(name, "ladder")
            rung.generation = gen
            rung.push(item)  # its VideoConfig, so that the audio below waits for its video
            if self._audio is not None:
                rung.push(self._audio)
                for packet in self._audio_backlog:
                    rung.push(packet)
            return
        if gen > rung.generation:
            # The previous session's output of this rung is complete, whether or not its
            # ladder said so: close it (the new one starts with a discontinuity).
            rung.end_session(self._generation_end.get(rung.generation))
            rung.generation = gen
        elif gen < rung.generation:
            return  # late output of an older generation
        rung.push(item)

    def _poster_written(self) -> None:
        if self.events is not None:
            self.events.poster_written(self.live_id, self.poster_key)

    # --- the master playlist ---

    def _on_segment(self, rendition: Rendition, segment: Segment, entry: SegmentEntry) -> None:
        if (
            rendition is self.source
            and segment.video
            and segment.duration_ms > rendition.segmenter.max_duration_ms
            and not self._warned_gop
        ):
            self._warned_gop = True
            log.warning(
                "live %d: keyframes every %.1f s, longer than the %.1f s segment target: "
                "segments follow them; the streamer should set a 2 s keyframe interval",
                self.live_id, segment.duration_ms / 1000, self.options.target_duration,
            )  # fmt: skip
            self.metrics.long_keyframe_interval.inc()
            if self.events is not None:
                self.events.long_keyframe_interval(self.live_id, segment.duration_ms)
        if self._master_due():
            task = asyncio.get_running_loop().create_task(self._write_master())
            task.add_done_callback(_log_failure)

    def renditions(self) -> list[Rendition]:
        rungs = sorted(self.rungs.values(), key=lambda r: -r.stats.peak_bps)
        return [self.source, *rungs]

    def _master_due(self) -> bool:
        ready = [r for r in self.renditions() if r.stats.segments]
        if not ready:
            return False
        waiting = len(ready) < len(self.renditions())
        if not self._master_written and waiting and self.source.stats.segments < 2:
            return False  # a little longer for the ladder's first segments: players read it once
        current = self._master_summary()
        if len(current) != len(self._master_written):
            return True
        return any(
            (uri, codecs) != (old_uri, old_codecs) or peak > old_peak * 1.1
            for (uri, codecs, peak), (old_uri, old_codecs, old_peak) in zip(
                current, self._master_written, strict=True
            )
        )

    def _master_summary(self) -> list[tuple[str, str, int]]:
        out = []
        for rendition in self.renditions():
            variant = rendition.variant(self._variant_uri(rendition))
            if variant is not None:
                out.append((variant.uri, variant.codecs, variant.bandwidth))
        return out

    def _variant_uri(self, rendition: Rendition) -> str:
        return f"{self.broadcast}/{rendition.name}/live.m3u8"

    async def _write_master(self) -> None:
        async with self._master_lock:
            variants = [
                v for r in self.renditions() if (v := r.variant(self._variant_uri(r))) is not None
            ]
            if not variants:
                return
            summary = [(v.uri, v.codecs, v.bandwidth) for v in variants]
            text = render_master(variants, version=self.source.playlist.version)
            await put_object(self.storage, self.master_key, text.encode())
            self._master_written = summary

    # --- the end ---

    async def finish(self) -> None:
        """The broadcast is over: flush the ladder, end every playlist, final master."""
        self._end_ladder()
        pending = [t for t in self._flushing.values() if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=LADDER_FLUSH_TIMEOUT_S)
        self.finished = True
        for rung in self.rungs.values():
            rung.end_session(self._generation_end.get(rung.generation))
        await asyncio.gather(*(r.close(ended=True) for r in self.renditions()))
        if self.source.stats.segments:
            await self._write_master()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("packager task failed", exc_info=exc)
