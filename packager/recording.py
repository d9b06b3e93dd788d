"""Recording a broadcast to VOD, including after a crash.

While a recorded broadcast runs, every segment a rendition stores is journaled in PostgreSQL
(``live_recording_segments``) right after its playlist is stored; what a media playlist says
about its variant (CODECS, RESOLUTION, FRAME-RATE) is kept on the recording's row. Finalising
— at the end of the broadcast, or by :func:`recover_recordings` for a process that died — reads
only the journal: it writes a VOD playlist per rendition and a VOD master beside the segments,
then inserts the ``videos`` row and marks the recording finished in one transaction. A server
killed with SIGKILL thus loses the segment in progress (and, within a few milliseconds of its
completion, the one being journaled), never the recording.

Journal writes never hold up media: they are queued and written by the journal's own task, in
batches, retried while the database is away (the queue is bounded; a long outage loses rows,
with a warning, rather than memory).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import asyncpg

from db import live_media, videos
from db.errors import DB_ERRORS
from db.live_media import SegmentRow
from db.types import Executor
from packager.hls.playlists import (
    CMAF_VERSION,
    TS_VERSION,
    SegmentEntry,
    Variant,
    render_master,
    render_media,
    render_vod,
    rounded,
)
from packager.metrics import PackagerMetrics
from packager.storage.base import Storage, put_object

log = logging.getLogger(__name__)

MAX_PENDING_ROWS = 50_000  # about a day of one live's segments
RETRY_DELAY_S = 1.0


class RecordingJournal:
    """Implements ``packager.hls.rendition.Journal`` for one recording."""

    def __init__(self, pool: asyncpg.Pool, recording_id: int) -> None:
        self.pool = pool
        self.recording_id = recording_id
        self._rows: list[SegmentRow] = []
        self._variants: dict[str, dict[str, Any]] = {}
        self._variants_dirty = False
        self._wake = asyncio.Event()
        self._closing = False
        self._lost = 0
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hls-journal")

    def segment(self, rendition: str, entry: SegmentEntry) -> None:
        if len(self._rows) >= MAX_PENDING_ROWS:
            self._lost += 1
            if self._lost == 1:
                log.warning("recording %d: journal backlog full, dropping", self.recording_id)
            return
        self._rows.append(
            (rendition, entry.sequence, entry.uri, entry.init_uri, entry.duration,
             entry.discontinuity, entry.program_date_time, entry.size)
        )  # fmt: skip
        self._wake.set()

    def variant(self, rendition: str, variant: Variant) -> None:
        info = {
            "codecs": variant.codecs,
            "resolution": list(variant.resolution) if variant.resolution else None,
            "frame_rate": variant.frame_rate,
        }
        if self._variants.get(rendition) != info:
            self._variants[rendition] = info
            self._variants_dirty = True
            self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not await self._flush() and not self._closing:
                await asyncio.sleep(RETRY_DELAY_S)
                self._wake.set()
            if self._closing:
                return

    async def _flush(self) -> bool:
        rows, self._rows = self._rows, []
        try:
            if self._variants_dirty:
                self._variants_dirty = False
                await live_media.set_renditions(self.pool, self.recording_id, self._variants)
            if rows:
                await live_media.add_segments(self.pool, self.recording_id, rows)
        except DB_ERRORS as exc:
            log.warning("recording %d: journal write failed (%s); retrying", self.recording_id, exc)
            self._rows = rows + self._rows
            self._variants_dirty = True
            return False
        return True

    async def close(self) -> bool:
        """Write what is pending; True when everything reached the database."""
        self._closing = True
        self._wake.set()
        await self._task
        for _ in range(3):
            if not self._rows and not self._variants_dirty:
                return True
            if await self._flush():
                return True
            await asyncio.sleep(RETRY_DELAY_S)
        return False


@dataclass(frozen=True, slots=True)
class Finalised:
    recording_id: int
    video_id: int | None


def _entries(rows: list[asyncpg.Record]) -> dict[str, list[SegmentEntry]]:
    groups: dict[str, list[SegmentEntry]] = defaultdict(list)
    for r in rows:
        groups[r["rendition"]].append(
            SegmentEntry(
                sequence=r["sequence"], uri=r["uri"], duration=r["duration"],
                discontinuity=r["discontinuity"], program_date_time=r["program_date_time"],
                init_uri=r["init_uri"], size=r["bytes"],
            )
        )  # fmt: skip
    return groups


def _version(entries: list[SegmentEntry]) -> int:
    return TS_VERSION if entries[0].uri.endswith(".ts") else CMAF_VERSION


def _variant(name: str, entries: list[SegmentEntry], info: dict[str, Any]) -> Variant:
    seconds = sum(e.duration for e in entries)
    rates = [e.size * 8 / e.duration for e in entries if e.duration >= 0.5] or [
        e.size * 8 / e.duration for e in entries
    ]
    resolution = info.get("resolution")
    return Variant(
        uri=f"{name}/vod.m3u8",
        bandwidth=max(1, round(max(rates))),
        average_bandwidth=round(sum(e.size for e in entries) * 8 / seconds) if seconds else None,
        codecs=str(info.get("codecs") or ""),
        resolution=(int(resolution[0]), int(resolution[1])) if resolution else None,
        frame_rate=info.get("frame_rate"),
    )


async def end_live_playlists(
    storage: Storage, prefix: str, groups: dict[str, list[SegmentEntry]], window: int
) -> None:
    """Give the live playlists of a broadcast whose process died their EXT-X-ENDLIST."""
    for name, entries in groups.items():
        shown = entries[-window:]
        hidden = entries[: len(entries) - len(shown)]
        text = render_media(
            shown,
            target_duration=max(1, *(rounded(e.duration) for e in shown)),
            version=_version(shown),
            discontinuity_sequence=sum(1 for e in hidden if e.discontinuity),
            ended=True,
        )
        await put_object(storage, f"{prefix}/{name}/live.m3u8", text.encode())


async def finalise_recording(
    pool: asyncpg.Pool, storage: Storage, recording_id: int, *, minimum_target: int
) -> Finalised:
    """Write the VOD playlists of a recording from its journal and insert its video.

    Under the recording's row lock (``SELECT ... FOR UPDATE``), so that finalisers in several
    processes take turns: the first one does the work, the others find it finished."""
    async with pool.acquire() as conn, conn.transaction():
        recording = await live_media.lock_recording(conn, recording_id)
        if recording is None:
            raise LookupError(f"no recording {recording_id}")
        return await _finalise_locked(conn, storage, recording, minimum_target)


async def _finalise_locked(
    conn: Executor, storage: Storage, recording: asyncpg.Record, minimum_target: int
) -> Finalised:
    recording_id = int(recording["id"])
    if recording["finished_at"] is not None:
        return Finalised(recording_id, recording["video_id"])
    groups = _entries(await live_media.get_segments(conn, recording_id))
    prefix = recording["prefix"]
    if not groups:
        await live_media.finish_recording(conn, recording_id, None)
        return Finalised(recording_id, None)
    infos = recording["renditions"]
    infos = json.loads(infos) if isinstance(infos, str) else dict(infos or {})
    variants = []
    for name, entries in groups.items():
        text = render_vod(entries, version=_version(entries), minimum_target=minimum_target)
        await put_object(storage, f"{prefix}/{name}/vod.m3u8", text.encode())
        variants.append((name, _variant(name, entries, infos.get(name, {}))))
    # The source first (players start with the first variant), then by bandwidth.
    variants.sort(key=lambda nv: (nv[0] != "source", -nv[1].bandwidth))
    master_key = f"{prefix}/vod.m3u8"
    version = _version(groups[variants[0][0]])
    master = render_master([v for _, v in variants], version=version)
    await put_object(storage, master_key, master.encode())

    main = groups.get("source") or groups[variants[0][0]]
    thumbnail = None
    if recording["poster_key"] and await storage.exists(recording["poster_key"]):
        thumbnail = storage.url_for(recording["poster_key"])
    owner = await live_media.get_recording_owner(conn, recording["live_id"])
    if owner is None:
        raise LookupError(f"live {recording['live_id']} of recording {recording_id} is gone")
    video_id = await videos.create_recorded(
        conn,
        user_id=owner["user_id"],
        title=owner["title"],
        hls_master_url=storage.url_for(master_key),
        hls_key=master_key,
        duration=round(sum(e.duration for e in main), 3),
        file_size=sum(e.size for entries in groups.values() for e in entries),
        thumbnail_url=thumbnail,
    )
    await live_media.finish_recording(conn, recording_id, video_id)
    return Finalised(recording_id, video_id)


async def recover_recordings(
    pool: asyncpg.Pool,
    storage: Storage,
    *,
    node: str,
    window: int,
    minimum_target: int,
    stale_after_s: float = 600.0,
    skip: Collection[int] | Callable[[int], bool] = (),
    metrics: PackagerMetrics | None = None,
) -> list[Finalised]:
    """Finalise recordings whose pipeline did not finish: this node's (call it at start-up,
    before accepting publishers) and other nodes' that went silent ``stale_after_s`` ago
    (``node=""``: only those, since no node has that name). ``skip``: recordings still
    running in this process (asked just before each one is taken).

    Safe when several processes run it at once: each recording is taken under its row lock
    and left alone when, by then, it is finished or was written to since it was listed."""
    skipped = skip if callable(skip) else skip.__contains__
    done = []
    for recording in await live_media.unfinished_recordings(
        pool, node=node, stale_after_s=stale_after_s
    ):
        recording_id = int(recording["id"])
        if skipped(recording_id):
            continue
        try:
            result = await _recover_one(pool, storage, recording, window, minimum_target)
        except Exception:  # one broken recording must not keep the others (or start-up) back
            log.exception("recording %d could not be recovered", recording_id)
            if metrics is not None:
                metrics.recordings.labels("failed").inc()
            continue
        if result is None:
            continue
        log.info(
            "recovered the recording of live %d (%s): video %s",
            recording["live_id"], recording["prefix"], result.video_id,
        )  # fmt: skip
        if metrics is not None:
            metrics.recordings.labels("recovered" if result.video_id else "empty").inc()
        done.append(result)
    return done


async def _recover_one(
    pool: asyncpg.Pool,
    storage: Storage,
    listed: asyncpg.Record,
    window: int,
    minimum_target: int,
) -> Finalised | None:
    async with pool.acquire() as conn, conn.transaction():
        recording = await live_media.lock_recording(conn, int(listed["id"]))
        if (
            recording is None
            or recording["finished_at"] is not None  # another process finalised it meanwhile
            or recording["updated_at"] != listed["updated_at"]  # its writer is alive after all
        ):
            return None
        groups = _entries(await live_media.get_segments(conn, int(recording["id"])))
        await end_live_playlists(storage, recording["prefix"], groups, window)
        return await _finalise_locked(conn, storage, recording, minimum_target)
