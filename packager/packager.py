"""The packager of a streamd process: one :class:`LivePipeline` per live, reconnects, recordings.

Wiring (the composition root)::

    options = PackagerOptions.from_settings(settings)
    packager = Packager(options, LocalStorage(settings.media_dir), db.primary)
    await packager.recover()                  # before RTMP accepts publishers
    rtmp = RtmpServer(gate, ..., on_session=packager.on_session)
    ...
    await rtmp.close(); await packager.close()

A session of a live that has no pipeline starts a *broadcast* (a new pipeline, a recording row,
the live's keyframe warning and poster reset). When the session ends the pipeline waits
``reconnect_window`` seconds: a new session of the same live continues the same playlists.
Past the window every playlist gets EXT-X-ENDLIST, the recording becomes a video, and
``on_live_ended(live_id)`` runs (by default it marks the live ended in the database; with a
reconnect window the publish gate must not do so itself when the publisher leaves).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg

from db import live_health, live_media, lives
from db.errors import DB_ERRORS
from packager.hls.low_latency import LiveIndex
from packager.metrics import PackagerMetrics
from packager.options import PackagerOptions
from packager.pipeline import LivePipeline, PosterWriterFactory, TranscoderFactory
from packager.recording import (
    Finalised,
    RecordingJournal,
    finalise_recording,
    recover_recordings,
)
from packager.source import MediaFeed, MediaSource
from packager.storage.base import Storage

log = logging.getLogger(__name__)
T = TypeVar("T")

PREVIOUS_BROADCAST_TIMEOUT_S = 30.0
SESSION_STOP_TIMEOUT_S = 10.0
# A recording nobody wrote to for the reconnect window plus this long has lost its process.
RECOVERY_STALE_MARGIN_S = 60.0


@dataclass(eq=False)
class _Live:
    pipeline: LivePipeline
    subscription: MediaFeed | None = None
    session_task: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    finishing: asyncio.Task[Finalised | None] | None = None
    journal: RecordingJournal | None = None
    recording_id: int | None = None
    poster_url_set: bool = False


class Packager:
    def __init__(
        self,
        options: PackagerOptions,
        storage: Storage,
        pool: asyncpg.Pool | None,
        *,
        metrics: PackagerMetrics | None = None,
        ladder_factory: TranscoderFactory | None = None,
        thumbnailer_factory: PosterWriterFactory | None = None,
        on_live_ended: Callable[[int], Awaitable[None]] | None = None,
        node: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.storage = storage
        self.pool = pool
        self.metrics = metrics if metrics is not None else PackagerMetrics()
        self.ladder_factory = ladder_factory
        self.thumbnailer_factory = thumbnailer_factory
        self.on_live_ended = on_live_ended
        self.node = node or socket.gethostname()
        self.clock = clock
        self.lives: dict[int, _Live] = {}
        # LL-HLS: every live rendition's playlist and fresh media, for the /hls origin.
        self.live_index = LiveIndex()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._recovery: asyncio.Task[None] | None = None
        self._health: asyncio.Task[None] | None = None
        self._closing = False

    # --- sessions ---

    def on_session(self, session: MediaSource) -> None:
        """Give the publish session a pipeline (RtmpServer's ``on_session``)."""
        if self._closing:
            return
        if self._health is None and self.pool is not None:
            # One task samples every live of this packager, from its first publish on.
            self._health = asyncio.get_running_loop().create_task(self._report_health_forever())
            self._health.add_done_callback(self._task_done)
        subscription = session.subscribe("packager", self.options.queue_items)
        live = self.lives.get(session.live_id)
        if live is not None and live.finishing is None:
            if live.timer is not None:
                live.timer.cancel()
                live.timer = None
            self.metrics.reconnects.inc()
            log.info("live %d: publisher back, the broadcast goes on", session.live_id)
            previous = live.session_task
            live.subscription = subscription
            live.session_task = self._spawn(self._session(live, subscription, previous))
            return
        earlier = live.finishing if live is not None else None
        pipeline = LivePipeline(
            session.live_id, f"b{int(self.clock() * 1000)}", self.options, self.storage,
            self.metrics, events=self, ladder_factory=self.ladder_factory,
            thumbnailer_factory=self.thumbnailer_factory, clock=self.clock,
            live_index=self.live_index,
        )  # fmt: skip
        live = self.lives[session.live_id] = _Live(pipeline, subscription)
        self.metrics.pipelines.inc()
        live.session_task = self._spawn(self._first_session(live, subscription, earlier))

    async def _first_session(
        self,
        live: _Live,
        subscription: MediaFeed,
        earlier: asyncio.Task[Finalised | None] | None,
    ) -> None:
        if earlier is not None:
            # The previous broadcast writes its last master playlist first; this one's
            # items wait in the subscription meanwhile.
            await asyncio.wait([earlier], timeout=PREVIOUS_BROADCAST_TIMEOUT_S)
        await self._start_broadcast(live)
        await self._session(live, subscription, None)

    async def _start_broadcast(self, live: _Live) -> None:
        pipeline = live.pipeline
        log.info("live %d: broadcast %s starts", pipeline.live_id, pipeline.broadcast)
        if self.pool is None:
            return
        try:
            await live_media.start_broadcast(self.pool, pipeline.live_id)
            if self.options.recording:
                poster = pipeline.poster_key if self.thumbnailer_factory is not None else None
                live.recording_id = await live_media.create_recording(
                    self.pool, live_id=pipeline.live_id, node=self.node,
                    prefix=pipeline.prefix, poster_key=poster,
                )  # fmt: skip
                live.journal = RecordingJournal(self.pool, live.recording_id)
                pipeline.attach_journal(live.journal)
        except DB_ERRORS as exc:
            log.warning("live %d: no recording for this broadcast: %s", pipeline.live_id, exc)

    async def _session(
        self, live: _Live, subscription: MediaFeed, previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None and not previous.done():
            await previous  # the gate allows one publisher per live; be safe anyway
        try:
            await live.pipeline.run(subscription)
        finally:
            if live.subscription is subscription and not self._closing:
                self._wait_for_reconnect(live)

    def _wait_for_reconnect(self, live: _Live) -> None:
        window = self.options.reconnect_window
        if window <= 0:
            self._end(live)
        else:
            live.timer = asyncio.get_running_loop().call_later(window, self._end, live)

    def _end(self, live: _Live) -> None:
        live.timer = None
        if live.finishing is None:
            live.finishing = self._spawn(self._finish(live))

    async def _finish(self, live: _Live) -> Finalised | None:
        pipeline = live.pipeline
        result = None
        try:
            await pipeline.finish()
            if live.journal is not None and self.pool is not None:
                await live.journal.close()
                assert live.recording_id is not None
                result = await finalise_recording(
                    self.pool, self.storage, live.recording_id,
                    minimum_target=self.options.target_duration_tag,
                )  # fmt: skip
                self.metrics.recordings.labels("finished" if result.video_id else "empty").inc()
            log.info("live %d: broadcast %s ended", pipeline.live_id, pipeline.broadcast)
            await self._live_ended(pipeline.live_id)
        except Exception:
            # A recording left unfinished here is finalised by recover() on the next start.
            log.exception(
                "live %d: ending broadcast %s failed", pipeline.live_id, pipeline.broadcast
            )
            self.metrics.recordings.labels("failed").inc()
        finally:
            if self.lives.get(pipeline.live_id) is live:
                del self.lives[pipeline.live_id]
            self.metrics.pipelines.dec()
        return result

    async def _live_ended(self, live_id: int) -> None:
        if self.on_live_ended is not None:
            await self.on_live_ended(live_id)
        elif self.pool is not None:
            await lives.mark_ended(self.pool, live_id)

    # --- what pipelines report (PipelineEvents) ---

    def long_keyframe_interval(self, live_id: int, interval_ms: int) -> None:
        if self.pool is not None:
            self._spawn(self._db(live_media.set_keyframe_interval(self.pool, live_id, interval_ms)))

    def poster_written(self, live_id: int, key: str) -> None:
        live = self.lives.get(live_id)
        if live is None or live.poster_url_set or self.pool is None:
            return
        live.poster_url_set = True
        url = self.storage.url_for(key)
        self._spawn(self._db(live_media.set_thumbnail_url(self.pool, live_id, url)))

    async def _db(self, query: Coroutine[Any, Any, None]) -> None:
        try:
            await query
        except DB_ERRORS as exc:
            log.warning("packager: database update failed: %s", exc)

    # --- stream health (the studio page; any API process reads it from the database) ---

    async def report_health(self) -> int:
        """Sample every live on air (waiting for its publisher included: a drop-out shows as
        0 kbps), store the samples with each live's viewer count and NOTIFY them
        (db.live_health). A database error is logged; the next tick tries again with a new
        sample. Returns how many were stored."""
        on_air = [live.pipeline for live in self.lives.values() if live.finishing is None]
        if self.pool is None or not on_air:
            return 0
        now = time.monotonic()
        samples = [json.dumps(p.health.sample(now), separators=(",", ":")) for p in on_air]
        try:
            return await live_health.record(self.pool, [p.live_id for p in on_air], samples)
        except DB_ERRORS as exc:
            log.warning("packager: stream health not stored, next try in %.0f s: %s",
                        self.options.health_interval, exc)  # fmt: skip
            return 0

    async def _report_health_forever(self) -> None:
        while True:
            await asyncio.sleep(self.options.health_interval)
            await self.report_health()

    # --- process lifecycle ---

    async def recover(self) -> list[Finalised]:
        """Finalise recordings left unfinished by a crash (call at start-up), then, every
        ``recovery_interval``, those any node left (see `recover_stale`)."""
        if self.pool is None or not self.options.recording:
            return []
        done = await recover_recordings(
            self.pool, self.storage, node=self.node, window=self.options.window,
            minimum_target=self.options.target_duration_tag, skip=self._recording_here,
            metrics=self.metrics,
        )  # fmt: skip
        if self.options.recovery_interval > 0 and self._recovery is None and not self._closing:
            self._recovery = asyncio.get_running_loop().create_task(self._recover_periodically())
        return done

    async def recover_stale(self) -> list[Finalised]:
        """Finalise the recordings of every node that nobody has written to for longer than
        the reconnect window plus a margin (their process is gone), except this process's
        own. Several processes may run this at once (see `recover_recordings`)."""
        if self.pool is None or not self.options.recording:
            return []
        return await recover_recordings(
            self.pool, self.storage, node="", window=self.options.window,
            minimum_target=self.options.target_duration_tag,
            stale_after_s=self.options.reconnect_window + RECOVERY_STALE_MARGIN_S,
            skip=self._recording_here, metrics=self.metrics,
        )  # fmt: skip

    def _recording_here(self, recording_id: int) -> bool:
        return any(live.recording_id == recording_id for live in self.lives.values())

    async def _recover_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.options.recovery_interval)
            try:
                await self.recover_stale()
            except DB_ERRORS as exc:
                log.warning("packager: periodic recovery failed, next try later: %s", exc)

    async def close(self) -> None:
        """End every broadcast now (no reconnect wait): ENDLIST, recordings finalised."""
        self._closing = True
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # logged when it failed
                await self._health
        for live in list(self.lives.values()):
            if live.timer is not None:
                live.timer.cancel()
            if live.subscription is not None:
                live.subscription.unsubscribe()  # ends the session loop if ingest did not
            if live.session_task is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(live.session_task, SESSION_STOP_TIMEOUT_S)
            self._end(live)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("packager task failed", exc_info=exc)
