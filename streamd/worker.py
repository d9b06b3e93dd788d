"""VOD workers: pgqueuer's QueueManager on its own connection, running the VOD entrypoints.

``streamd worker`` runs this alone; ``streamd serve`` runs it in-process when
STREAMD_VOD_WORKERS > 0 (the default, 1: zero set-up), so web nodes and worker nodes can be
separate processes on one PostgreSQL. A lost connection (PostgreSQL restarted) ends the
queue manager's run; the supervisor makes a new connection and starts again with backoff,
and jobs that were running here are taken again once their lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
from pgqueuer.db import AsyncpgDriver
from pgqueuer.executors import DatabaseRetryEntrypointExecutor, EntrypointExecutorParameters
from pgqueuer.models import Context, Job
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries

from config.settings import Settings
from db import jobs
from db.embedded import pid_alive
from db.errors import DB_ERRORS
from packager.options import to_rungs
from packager.storage.base import Storage
from packager.storage.multipart import multipart_for
from packager.vod.job import VodJobOptions, transcode_video
from packager.vod.mediaconvert_job import MediaConvertOptions
from packager.vod.probe import ProbeLimits

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0


def work_dir(settings: Settings) -> Path:
    """This process's scratch directory: ``work/{host}-{pid}`` under the data directory, so a
    worker that starts can tell the leftovers of a dead one (same host, pid gone) from those
    of a sibling still running, and remove them."""
    root = settings.data_dir / "work"
    host = socket.gethostname()
    with contextlib.suppress(FileNotFoundError):
        for entry in root.iterdir():
            name, _, pid = entry.name.rpartition("-")
            if name == host and pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)
                log.info("vod worker: removed %s, left by a worker that died", entry)
    return root / f"{host}-{os.getpid()}"


def job_options(settings: Settings) -> VodJobOptions:
    return VodJobOptions(
        rungs=to_rungs(settings.vod_ladder),
        preset=settings.vod_x264_preset,
        limits=ProbeLimits(
            max_duration_s=settings.vod_max_duration,
            max_width=settings.vod_max_width,
            max_height=settings.vod_max_height,
            max_fps=settings.vod_max_fps,
        ),
        max_attempts=settings.vod_job_attempts,
        work_dir=work_dir(settings),
        mediaconvert=MediaConvertOptions(
            role_arn=settings.mediaconvert_role_arn or "",
            queue_arn=settings.mediaconvert_queue_arn,
            endpoint_url=settings.mediaconvert_endpoint_url,
            region=settings.s3_region,
        )
        if settings.vod_backend == "mediaconvert"
        else None,
    )


class Worker:
    """``slots`` transcodes at once in this process, for as long as :meth:`run` runs."""

    def __init__(
        self, settings: Settings, database_url: str, pool: asyncpg.Pool, storage: Storage,
        slots: int,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.url = database_url
        self.pool = pool
        self.storage = storage
        self.slots = max(1, slots)
        self.options = job_options(settings)
        self._transcodes = asyncio.Semaphore(self.slots)
        self._qm: QueueManager | None = None
        self._stopping = False

    async def run(self) -> None:
        delay = BACKOFF_MIN_S
        while not self._stopping:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self.url, timeout=10, server_settings={"application_name": "streamd-worker"}
                )
                self._qm = self._queue_manager(conn)
                delay = BACKOFF_MIN_S
                log.info("vod worker: waiting for jobs (%d at once)", self.slots)
                await self._qm.run(
                    dequeue_timeout=timedelta(seconds=10),
                    batch_size=1,
                    max_concurrent_tasks=2 * self.slots,
                    heartbeat_timeout=timedelta(seconds=self.settings.vod_job_lease),
                )
            except (*DB_ERRORS, asyncpg.InterfaceError) as exc:
                log.warning("vod worker: database connection lost (%s); retrying", exc)
            finally:
                self._qm = None
                if conn is not None:
                    conn.terminate()
            if not self._stopping:
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311
                delay = min(delay * 2, BACKOFF_MAX_S)

    def stop(self) -> None:
        self._stopping = True
        if self._qm is not None:
            self._qm.shutdown.set()

    def _queue_manager(self, conn: asyncpg.Connection) -> QueueManager:
        qm = QueueManager(Queries(AsyncpgDriver(conn)))
        retries = max(0, self.settings.vod_job_attempts - 1)

        def retrying(params: EntrypointExecutorParameters) -> DatabaseRetryEntrypointExecutor:
            return DatabaseRetryEntrypointExecutor(
                parameters=params,
                max_attempts=retries,
                initial_delay=timedelta(seconds=5),
                max_delay=timedelta(minutes=10),
            )

        @qm.entrypoint(jobs.TRANSCODE, executor_factory=retrying, on_failure="hold")
        async def transcode(job: Job, context: Context) -> None:
            video_id = int(jobs.payload(job.payload)["video_id"])
            async with self._transcodes:
                await transcode_video(
                    self.pool, self.storage, self.options, video_id, attempt=job.attempts,
                    cancelled=lambda: context.cancellation.cancel_called,
                )  # fmt: skip

        @qm.entrypoint(jobs.PURGE, executor_factory=retrying, on_failure="hold")
        async def purge(job: Job) -> None:
            await purge_objects(self.storage, jobs.payload(job.payload))

        return qm


def _items(payload: dict[str, object], name: str) -> list[Any]:
    value = payload.get(name)
    return list(value) if isinstance(value, list) else []


async def purge_objects(storage: Storage, payload: dict[str, Any]) -> None:
    """Delete what a deleted video stored: every key under its prefixes, single keys, and
    unfinished S3 multipart uploads. Raises on storage errors, so the queue retries."""
    keys: list[str] = [str(k) for k in _items(payload, "keys")]
    for prefix in _items(payload, "prefixes"):
        keys.extend(await storage.list(str(prefix).rstrip("/") + "/"))
    if keys:
        await storage.delete(sorted(set(keys)))
    multipart = multipart_for(storage)
    for upload_id, key, s3_id in _items(payload, "uploads"):
        await multipart.abort(str(upload_id), str(key), s3_id and str(s3_id))
    log.info("vod: purged %d objects", len(keys))


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings, database_url: str, pool: asyncpg.Pool, storage: Storage, slots: int
) -> AsyncIterator[Worker | None]:
    """A worker with ``slots`` transcodes, running for the block; none when ``slots`` is 0
    (web-only nodes). On exit it stops taking jobs; a transcode still running is cancelled and
    its job is taken again by a worker (here after a restart, or elsewhere) once its lease ends."""
    if slots <= 0:
        yield None
        return
    worker = Worker(settings, database_url, pool, storage, slots)
    task = asyncio.create_task(worker.run(), name="vod-worker")
    try:
        yield worker
    finally:
        worker.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=5)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
