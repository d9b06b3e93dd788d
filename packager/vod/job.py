"""One VOD transcoding job: the uploaded original in, a ready video (or a failed one) out.

The worker (``streamd.worker``) calls :func:`transcode_video` with the job's video id. Steps:
claim the video for this attempt (a fresh ``run`` token: ``db.videos.begin_run``), fetch the
original (S3) or read it in place (local disk), validate it (``probe``), transcode it
(``transcode``, in a thread) while progress goes to the row and to the owner's browser
(NOTIFY), store the output under ``hls/vod/{video}/{run}/``, and publish it in one
transaction that succeeds only if this run still owns the video. A run that lost the video
(deleted meanwhile, or taken over by another worker after this one was presumed dead) deletes
its own output instead: whatever happens, one output set survives.

A file that cannot be a video fails at once, with the probe's sentence for its owner, and is
not retried. Anything else (storage down, a bug) raises, so the queue retries the job with
backoff; the last attempt marks the video failed before raising.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from db import videos
from packager.storage.base import Storage, object_headers
from packager.storage.local import LocalStorage
from packager.storage.multipart import local_copy
from packager.storage.s3 import S3Storage
from packager.types import Rung
from packager.vod.mediaconvert_job import MediaConvertOptions, RunLost, run_mediaconvert
from packager.vod.probe import ProbeLimits, ProbeResult, VodRejected, probe
from packager.vod.transcode import TranscodeCancelled, TranscodeResult, transcode, vod_ladder

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 1.0  # at most one row update and NOTIFY per second per job


@dataclass(frozen=True, slots=True)
class VodJobOptions:
    rungs: tuple[Rung, ...]
    preset: str
    limits: ProbeLimits
    max_attempts: int
    work_dir: Path  # scratch space (S3 downloads, transcoder output before it is stored)
    mediaconvert: MediaConvertOptions | None = None  # the mediaconvert backend; None: local


class JobLost(Exception):
    """This run no longer owns its video (deleted, or another worker took the job over)."""


async def transcode_video(
    pool: asyncpg.Pool,
    storage: Storage,
    options: VodJobOptions,
    video_id: int,
    *,
    attempt: int,
    cancelled: Callable[[], bool] = lambda: False,
) -> None:
    """Run one attempt (``attempt`` counts from 0, as pgqueuer's ``job.attempts``)."""
    run = secrets.token_hex(8)
    row = await videos.begin_run(pool, video_id, run)
    if row is None:
        log.info("vod: video %d is gone or done; nothing to transcode", video_id)
        return
    if int(row["job_attempts"]) > options.max_attempts:
        # Picked again after its worker died each time (a crash or the OOM killer): a file
        # that kills workers is not tried forever.
        await videos.fail_run(
            pool, video_id, run,
            f"Processing stopped after {options.max_attempts} attempts; try another file or "
            "export it again.",
        )  # fmt: skip
        log.error("vod: video %d dead-lettered after %d attempts", video_id, options.max_attempts)
        return
    log.info("vod: video %d: attempt %d (run %s)", video_id, row["job_attempts"], run)
    last_attempt = attempt + 1 >= options.max_attempts
    prefix = f"hls/vod/{video_id}/{run}"
    options.work_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"vod-{video_id}-", dir=options.work_dir))
    reporter = _Progress(pool, video_id, run)
    try:
        async with local_copy(storage, row["original_key"], work) as source:
            info = await asyncio.to_thread(probe, source, options.limits)
        if options.mediaconvert is not None:
            # The job reads the original from the bucket and writes under the prefix itself.
            assert isinstance(storage, S3Storage)  # config/ refuses mediaconvert without S3
            await reporter.report(0.0, "transcoding")
            result = await run_mediaconvert(
                storage, row["original_key"], prefix, info, options.rungs, options.mediaconvert,
                run=run, work=work / "out", progress=reporter.report, cancelled=cancelled,
            )  # fmt: skip
            await _publish(pool, storage, video_id, run, prefix, result, info)
            return
        async with local_copy(storage, row["original_key"], work) as source:
            rungs = vod_ladder(options.rungs, info.width, info.height)
            await reporter.report(0.0, "transcoding")

            def work_in_thread(
                stop: threading.Event, progress: Callable[[float, str], None]
            ) -> TranscodeResult:
                return transcode(
                    source, work / "out", info, rungs, preset=options.preset,
                    progress=progress, cancel=stop,
                )  # fmt: skip

            result = await reporter.run_thread(work_in_thread, cancelled)
        await reporter.report(0.99, "storing")
        await _store(storage, work / "out", result, prefix)
        await _publish(pool, storage, video_id, run, prefix, result, info)
    except VodRejected as exc:
        log.warning("vod: video %d rejected (%s): %s", video_id, exc.code, exc)
        await videos.fail_run(pool, video_id, run, str(exc))
    except (TranscodeCancelled, JobLost, RunLost):
        log.info("vod: video %d: run %s stopped (deleted or taken over)", video_id, run)
        await _delete_prefix(storage, prefix)
    except Exception as exc:
        await _delete_prefix(storage, prefix)
        if last_attempt:
            await videos.fail_run(
                pool, video_id, run,
                "Processing failed because of a server error; the operators have the details.",
            )  # fmt: skip
        log.error("vod: video %d attempt %d failed: %r", video_id, attempt + 1, exc)
        raise
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


async def _store(storage: Storage, out_dir: Path, result: TranscodeResult, prefix: str) -> None:
    """Every output file under ``prefix``: moved into place on local disk (the work directory
    is on the same disk as the media root), uploaded from disk to S3."""
    if isinstance(storage, LocalStorage):

        def move() -> None:
            for name in result.files:
                target = storage.path_for(f"{prefix}/{name}")
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.replace(out_dir / name, target)
                except OSError:  # another filesystem after all
                    shutil.copyfile(out_dir / name, target)

        await asyncio.to_thread(move)
        return
    put_file = getattr(storage, "put_file", None)
    semaphore = asyncio.Semaphore(8)

    async def upload(name: str) -> None:
        key = f"{prefix}/{name}"
        content_type, cache = object_headers(key)
        async with semaphore:
            if put_file is not None:
                await put_file(key, out_dir / name, content_type, cache)
            else:
                data = await asyncio.to_thread((out_dir / name).read_bytes)
                await storage.put(key, data, content_type, cache)

    async with asyncio.TaskGroup() as group:
        for name in result.files:
            group.create_task(upload(name))


async def _publish(
    pool: asyncpg.Pool, storage: Storage, video_id: int, run: str, prefix: str,
    result: TranscodeResult, info: ProbeResult,
) -> None:  # fmt: skip
    qualities: Sequence[tuple[str, int, int, int, str, str]] = [
        (r.name, r.width, r.height, r.bandwidth, r.codecs,
         storage.url_for(f"{prefix}/{r.playlist}"))
        for r in result.renditions
    ]  # fmt: skip
    poster = f"{prefix}/{result.poster}" if result.poster else None
    master = f"{prefix}/{result.master}"
    async with pool.acquire() as conn:
        old = await videos.finish_run(
            conn, video_id, run,
            hls_key=master, hls_url=storage.url_for(master), output_prefix=prefix,
            thumbnail_key=poster, thumbnail_url=storage.url_for(poster) if poster else None,
            storyboard_key=f"{prefix}/{result.storyboard_vtt}" if result.storyboard_vtt else None,
            duration=result.duration_s or info.duration_s, qualities=qualities,
        )  # fmt: skip
    if old is None:
        raise JobLost
    if old and old != prefix:
        await _delete_prefix(storage, old)  # a retried job's earlier, replaced output
    log.info(
        "vod: video %d ready: %s (%.1f s, %s)", video_id, master, result.duration_s,
        ", ".join(r.name for r in result.renditions),
    )  # fmt: skip


async def _delete_prefix(storage: Storage, prefix: str) -> None:
    with contextlib.suppress(Exception):
        keys = await storage.list(prefix + "/")
        if keys:
            await storage.delete(keys)


class _Progress:
    """Carries the transcoder thread's progress to the row (at most once a second), and
    the row's answer back: a run that lost its video is told to stop."""

    def __init__(self, pool: asyncpg.Pool, video_id: int, run: str) -> None:
        self.pool = pool
        self.video_id = video_id
        self.run = run
        self.started = time.monotonic()
        self.latest: tuple[float, str] = (0.0, "transcoding")
        self.lost = False

    async def report(self, fraction: float, stage: str) -> None:
        percent = max(0, min(99, int(fraction * 100)))
        elapsed = time.monotonic() - self.started
        eta = round(elapsed * (1 - fraction) / fraction) if fraction > 0.02 else None
        owner = await videos.set_progress(
            self.pool, self.video_id, self.run, percent=percent, stage=stage, eta_seconds=eta
        )
        if owner is None:
            self.lost = True
            raise JobLost

    async def run_thread(
        self,
        work: Callable[[threading.Event, Callable[[float, str], None]], TranscodeResult],
        cancelled: Callable[[], bool],
    ) -> TranscodeResult:
        stop = threading.Event()

        def progress(fraction: float, stage: str) -> None:
            self.latest = (fraction, stage)  # one tuple store: atomic under the GIL

        task = asyncio.ensure_future(asyncio.to_thread(work, stop, progress))
        sent: tuple[float, str] | None = None
        try:
            while not task.done():
                await asyncio.wait([task], timeout=PROGRESS_INTERVAL_S)
                if task.done():
                    break
                if cancelled():
                    raise JobLost
                if self.latest != sent:
                    sent = self.latest
                    await self.report(*sent)
            return task.result()
        except BaseException:
            stop.set()  # the transcoder raises TranscodeCancelled at its next frame
            with contextlib.suppress(BaseException):
                await task
            raise
