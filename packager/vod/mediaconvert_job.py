"""One run of the ``mediaconvert`` backend: the ladder submitted as a MediaConvert job that
reads the original from the bucket and writes under the run's prefix, polled until it ends,
then its outputs turned into what the local backend leaves (master and rendition rows, poster,
storyboard sprite and WebVTT track), so publishing is the same for both backends.

boto3 blocks: every call runs in a thread. The job carries the run's token as its client
request token, so a retried submit cannot start a second job; a run that is cancelled or loses
its video cancels the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import av
import m3u8
from av.video.frame import VideoFrame

from packager.storage.base import object_headers
from packager.storage.s3 import S3Storage
from packager.types import Rung
from packager.vod.mediaconvert import (
    MediaConvertClient,
    cancel,
    job_settings,
    make_client,
    poll,
    submit,
)
from packager.vod.probe import ProbeResult, VodRejected
from packager.vod.storyboard import SPRITE_NAME, VTT_NAME, Storyboard
from packager.vod.transcode import RenditionOut, TranscodeResult

log = logging.getLogger(__name__)

THUMBNAIL_INTERVAL_S = 10  # one storyboard tile per 10 s (MediaConvert's frame capture)
MAX_THUMBS = 200


class RunLost(Exception):
    """The run was cancelled or lost its video while the job ran."""


@dataclass(frozen=True, slots=True)
class MediaConvertOptions:
    role_arn: str
    queue_arn: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    poll_s: float = 5.0


async def run_mediaconvert(
    storage: S3Storage, original_key: str, prefix: str, info: ProbeResult, rungs: Sequence[Rung],
    options: MediaConvertOptions, *, run: str, work: Path,
    progress: Callable[[float, str], Awaitable[None]], cancelled: Callable[[], bool],
    client: MediaConvertClient | None = None,
) -> TranscodeResult:  # fmt: skip
    if client is None:
        client = await asyncio.to_thread(make_client, options.region, options.endpoint_url)
    bucket = storage.options.bucket
    settings = job_settings(
        f"s3://{bucket}/{storage.object_key(original_key)}",
        f"s3://{bucket}/{storage.object_key(prefix)}",
        rungs, info.width, info.height, source_fps=info.fps,
        has_audio=info.audio_codec is not None, thumbnail_interval_s=THUMBNAIL_INTERVAL_S,
    )  # fmt: skip
    send = functools.partial(
        submit, client, role_arn=options.role_arn, queue_arn=options.queue_arn,
        settings=settings, user_metadata={"streamd_run": run}, client_request_token=run,
    )  # fmt: skip
    job_id = await asyncio.to_thread(send)
    log.info("vod: MediaConvert job %s submitted for %s", job_id, prefix)
    try:
        while True:
            state = await asyncio.to_thread(poll, client, job_id)
            if state.status == "complete":
                break
            if state.status in ("failed", "cancelled"):
                raise VodRejected("mediaconvert", state.error_message or "MediaConvert failed.")
            if cancelled():
                raise RunLost
            await progress(state.percent / 100 * 0.95, "transcoding")
            await asyncio.sleep(options.poll_s)
    except (Exception, asyncio.CancelledError):
        with contextlib.suppress(Exception):
            await asyncio.to_thread(cancel, client, job_id)
        raise
    await progress(0.96, "finishing")
    return await _collect(storage, prefix, info, work)


async def _collect(
    storage: S3Storage, prefix: str, info: ProbeResult, work: Path
) -> TranscodeResult:
    keys = sorted(await storage.list(prefix + "/"))
    names = [key[len(prefix) + 1 :] for key in keys]
    master_body = await storage.get(f"{prefix}/master.m3u8")
    if master_body is None:
        raise RuntimeError(f"MediaConvert wrote no master playlist under {prefix}")
    renditions = _renditions(master_body.decode())
    posters = [n for n in names if PurePosixPath(n).name.startswith("frame_poster.")]
    thumbs = [n for n in names if PurePosixPath(n).name.startswith("frame_thumb.")]
    files = list(names)
    storyboard = None
    if thumbs:
        images = [await storage.get(f"{prefix}/{name}") for name in thumbs[:MAX_THUMBS]]
        written = await asyncio.to_thread(
            _storyboard, [i for i in images if i], work, info.duration_s
        )
        for name in written:
            content_type, cache = object_headers(f"{prefix}/{name}")
            data = await asyncio.to_thread((work / name).read_bytes)
            await storage.put(f"{prefix}/{name}", data, content_type, cache)
        files += written
        storyboard = VTT_NAME if VTT_NAME in written else None
    return TranscodeResult(
        master="master.m3u8", renditions=renditions,
        poster=posters[-1] if posters else None,  # the later capture: past any black intro
        storyboard_vtt=storyboard, duration_s=info.duration_s, files=files,
    )  # fmt: skip


def _renditions(master: str) -> list[RenditionOut]:
    out = []
    for variant in m3u8.loads(master).playlists:
        info = variant.stream_info
        width, height = info.resolution or (0, 0)
        stem = PurePosixPath(variant.uri).stem
        name = stem.removeprefix("master_") or f"{height}p"
        bandwidth = info.bandwidth or 0
        average = info.average_bandwidth or bandwidth
        out.append(
            RenditionOut(name, width, height, bandwidth, average, info.codecs or "", variant.uri)
        )
    return sorted(out, key=lambda r: -r.height)


def _storyboard(images: list[bytes], work: Path, duration_s: float) -> list[str]:
    """The sprite and track from MediaConvert's captures, one per THUMBNAIL_INTERVAL_S."""
    board = Storyboard(duration_s, max_tiles=MAX_THUMBS)
    board.interval = THUMBNAIL_INTERVAL_S
    for index, image in enumerate(images):
        with av.open(io.BytesIO(image), mode="r", format="jpeg_pipe") as container:
            frame = next(container.decode(video=0), None)
            if isinstance(frame, VideoFrame):
                board.push(frame, index * THUMBNAIL_INTERVAL_S)
    work.mkdir(parents=True, exist_ok=True)
    written = board.write(work, duration_s)
    assert all(name in (SPRITE_NAME, VTT_NAME) for name in written)
    return written
