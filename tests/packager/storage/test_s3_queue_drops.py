"""A rendition whose bucket is stalled: its bounded queue fills and drops (counted), and the
first segment queued after the drop is listed with EXT-X-DISCONTINUITY once S3 is back.

The publisher here is synthetic packets fed straight into a LivePipeline (as fast as the
segmenter can cut them, which a live never does), so the queue fills deterministically; the
storage is the real S3Storage against moto's server through the fault proxy."""

from __future__ import annotations

import asyncio

import m3u8

from packager.hls.rendition import QUEUE_SEGMENTS
from packager.metrics import PackagerMetrics
from packager.pipeline import LivePipeline
from tests.packager.hls_helpers import AUDIO, VIDEO, packager_options, synthetic
from tests.s3_fixtures import BucketView, FaultProxy, make_storage


async def test_drops_while_stalled_then_a_marked_discontinuity(
    proxy: FaultProxy, moto_endpoint: str, bucket: str
) -> None:
    storage = make_storage(proxy.url, bucket, attempts=3, read_timeout=60)
    metrics = PackagerMetrics()
    pipeline = LivePipeline(
        9, "b1", packager_options(hls_window=60, hls_recording=False), storage, metrics
    )
    proxy.inject("stall", method="PUT")
    pipeline.feed(VIDEO)
    pipeline.feed(AUDIO)
    for packet in synthetic(42):  # 21 segments of 2 s: 16 queued, the rest dropped
        pipeline.feed(packet)
    await asyncio.sleep(0.5)
    source = pipeline.source
    assert source._queue.qsize() == QUEUE_SEGMENTS - 1  # the writer holds the first
    dropped = metrics.dropped_segments._value.get()
    assert dropped >= 3
    proxy.release()
    for _ in range(400):  # the backlog drains once S3 answers
        await asyncio.sleep(0.05)
        if source._queue.empty() and source.stats.segments >= QUEUE_SEGMENTS:
            break
    for packet in synthetic(6, start_ms=44_000):  # the publisher goes on
        pipeline.feed(packet)
    pipeline.end_session()
    await pipeline.finish()
    text = await BucketView(moto_endpoint, bucket).read("streamd/hls/9/b1/source/live.m3u8")
    playlist = m3u8.loads(text.decode())
    uris = [s.uri for s in playlist.segments]
    assert uris == [f"seg_{i}.m4s" for i in range(len(uris))]  # consecutive, none missing
    flagged = [i for i, s in enumerate(playlist.segments) if s.discontinuity]
    assert flagged == [QUEUE_SEGMENTS]  # right after what was queued before the drops
    before, after = playlist.segments[QUEUE_SEGMENTS - 1], playlist.segments[QUEUE_SEGMENTS]
    hole = (after.program_date_time - before.program_date_time).total_seconds()
    assert hole >= before.duration + 2 * dropped - 0.5  # the dropped segments' time is skipped
    assert metrics.storage_errors._value.get() == 0
    storage.close()
