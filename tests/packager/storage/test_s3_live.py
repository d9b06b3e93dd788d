"""Lives into S3 end to end: a real ffmpeg publisher, the packager as ``streamd serve`` builds
it (real ladder), S3Storage, and moto's S3 server over HTTP behind the fault-injection proxy.
The ffmpeg CLI plays what landed straight from the S3 endpoint."""

from __future__ import annotations

import asyncio
import posixpath
from pathlib import Path

import m3u8
import pytest

from packager.hls.rendition import QUEUE_SEGMENTS
from packager.storage.base import CACHE_IMMUTABLE, CACHE_LIVE_PLAYLIST, CACHE_VOD_PLAYLIST
from packager.storage.s3 import S3Storage
from tests.packager.hls_harness import ffmpeg_publish, player_errors
from tests.packager.storage.s3_live_harness import live_into_s3
from tests.s3_fixtures import BucketView, FaultProxy, Request, make_storage, public_read_policy

pytestmark = pytest.mark.slow


def stored_before(log: list[Request]) -> list[tuple[Request, set[str]]]:
    """Each playlist PUT with the keys whose PUT had succeeded before it was sent."""
    done: set[str] = set()
    out = []
    for request in log:
        if request.method != "PUT" or request.outcome != "forwarded":
            continue
        if request.path.endswith(".m3u8"):
            out.append((request, set(done)))
        if request.status == 200:
            done.add(request.path)
    return out


def listed(playlist_path: str, body: bytes) -> list[str]:
    """The paths a playlist refers to (segments, init segments, variants)."""
    playlist = m3u8.loads(body.decode())
    base = posixpath.dirname(playlist_path)
    uris = [p.uri for p in playlist.playlists]
    for segment in playlist.segments:
        uris.append(segment.uri)
        if segment.init_section is not None:
            uris.append(segment.init_section.uri)
    return [posixpath.normpath(f"{base}/{u}") for u in uris]


def assert_never_listed_before_stored(proxy: FaultProxy) -> int:
    checked = 0
    for request, done in stored_before(proxy.log):
        missing = [p for p in listed(request.path, request.body) if p not in done]
        assert not missing, f"{request.path} listed {missing} before they were stored"
        checked += 1
    return checked


async def test_a_live_with_a_ladder_lands_in_the_bucket_and_plays_from_it(
    database_url: str, tmp_path: Path, proxy: FaultProxy, moto_endpoint: str, bucket: str
) -> None:
    view = BucketView(moto_endpoint, bucket)
    # Transient faults on the way: each is retried, none leaves a gap.
    proxy.inject("503", method="PUT", path=r"/source/seg_1\.m4s$", count=2)
    proxy.inject("drop", method="PUT", path=r"/180p/seg_2\.m4s$", count=1)
    proxy.inject("503", method="PUT", path=r"/source/live\.m3u8$", count=1)
    async with live_into_s3(database_url, tmp_path, proxy, view) as live:
        assert isinstance(live.storage, S3Storage)  # built from the settings
        code, err = await ffmpeg_publish(live.url, seconds=8)
        assert code == 0, err
        await live.wait_ended()
        assert live.counter("storage_errors") == 0
        retried = live.storage.metrics.requests.labels("put", "retried")._value.get()
        assert retried == 4
        broadcast = await live.broadcast()
        keys = set(await view.keys(live.prefix))
        master = await live.playlist(f"{live.prefix}/master.m3u8")
        assert [p.uri.split("/")[-2] for p in master.playlists] == ["source", "180p"]
        for name in ("source", "180p"):
            for kind in ("live", "vod"):
                key = f"{broadcast}/{name}/{kind}.m3u8"
                playlist = await live.playlist(key)
                assert playlist.is_endlist and len(playlist.segments) >= 3, key
                assert not any(s.discontinuity for s in playlist.segments), key
                wanted = {f"{broadcast}/{name}/{s.uri}" for s in playlist.segments}
                wanted |= {f"{broadcast}/{name}/{s.init_section.uri}" for s in playlist.segments
                           if s.init_section is not None}  # fmt: skip
                assert wanted <= keys, key
        # Headers by kind of object.
        heads = {
            f"{broadcast}/source/init.mp4": ("video/mp4", CACHE_IMMUTABLE),
            f"{broadcast}/source/seg_1.m4s": ("video/iso.segment", CACHE_IMMUTABLE),
            f"{broadcast}/180p/live.m3u8": ("application/vnd.apple.mpegurl", CACHE_LIVE_PLAYLIST),
            f"{live.prefix}/master.m3u8": ("application/vnd.apple.mpegurl", CACHE_LIVE_PLAYLIST),
            f"{broadcast}/vod.m3u8": ("application/vnd.apple.mpegurl", CACHE_VOD_PLAYLIST),
        }
        for key, expected in heads.items():
            head = await view.head(key)
            assert (head["ContentType"], head["CacheControl"]) == expected, key
        # Order: nothing was listed before it was stored (init before segments, segments
        # before their playlist, media playlists before the master), and the VOD set last.
        assert assert_never_listed_before_stored(proxy) > 10
        puts = [r for r in proxy.log if r.method == "PUT" and r.status == 200]
        first_vod = next(i for i, r in enumerate(puts) if r.path.endswith("/vod.m3u8"))
        assert not any(r.path.endswith((".m4s", ".mp4")) for r in puts[first_vod:])
        assert puts[-1].path.endswith(f"{broadcast.removeprefix('streamd/')}/vod.m3u8")
        # The recording's URL names neither the bucket nor the endpoint.
        url = await live.pool.fetchval("SELECT hls_master_url FROM videos")
        assert url == f"/{broadcast.removeprefix('streamd/')}/vod.m3u8"
    # Players read the bucket over HTTP, as CloudFront would (origin access: a read policy).
    await asyncio.to_thread(
        view.client.put_bucket_policy, Bucket=bucket, Policy=public_read_policy(bucket)
    )
    for key in (f"{live.prefix}/master.m3u8", f"{broadcast}/vod.m3u8"):
        assert await player_errors(f"{moto_endpoint}/{bucket}/{key}") == ""


async def test_a_segment_that_cannot_be_stored_leaves_a_marked_gap(
    database_url: str, tmp_path: Path, proxy: FaultProxy, moto_endpoint: str, bucket: str
) -> None:
    view = BucketView(moto_endpoint, bucket)
    storage = make_storage(proxy.url, bucket, attempts=3)
    # Every attempt at the third source segment fails. LL-HLS (the default) published it
    # under its name before storing it, so names keep their numbers; the stored playlists skip
    # it, and number what they list without a hole (the next segment takes its number).
    proxy.inject("503", method="PUT", path=r"/source/seg_2\.m4s$", count=3)
    async with live_into_s3(
        database_url, tmp_path, proxy, view, storage=storage, hls_ladder=()
    ) as live:
        code, err = await ffmpeg_publish(live.url, seconds=10)
        assert code == 0, err
        await live.wait_ended()
        assert live.counter("storage_errors") == 1
        assert storage.metrics.requests.labels("put", "failed")._value.get() == 1
        broadcast = await live.broadcast()
        keys = set(await view.keys(live.prefix))
        for kind in ("live", "vod"):
            playlist = await live.playlist(f"{broadcast}/source/{kind}.m3u8")
            uris = [s.uri for s in playlist.segments]
            assert {f"{broadcast}/source/{u}" for u in uris} <= keys
            # Every stored segment but the lost one, one EXT-X-DISCONTINUITY where it is missing.
            numbers = [int(u.removeprefix("seg_").removesuffix(".m4s")) for u in uris]
            assert 2 not in numbers and numbers == sorted(numbers)
            flagged = [s.uri for s in playlist.segments if s.discontinuity]
            if kind == "vod":
                assert playlist.media_sequence in (0, None)
                assert numbers == [0, 1, *range(3, 3 + len(numbers) - 2)]
                assert flagged == ["seg_3.m4s"]
                before, after = playlist.segments[1], playlist.segments[2]
                hole = (after.program_date_time - before.program_date_time).total_seconds()
                assert hole > before.duration + 1  # the lost segment's time is skipped
        assert assert_never_listed_before_stored(proxy) > 5
        seg2 = [r.outcome for r in proxy.puts(r"/source/seg_2\.m4s$")]
        assert seg2 == ["503", "503", "503"]
    await asyncio.to_thread(
        view.client.put_bucket_policy, Bucket=bucket, Policy=public_read_policy(bucket)
    )
    assert await player_errors(f"{moto_endpoint}/{bucket}/{broadcast}/vod.m3u8") == ""


async def test_a_stalled_bucket_keeps_memory_bounded_and_the_live_recovers(
    database_url: str, tmp_path: Path, proxy: FaultProxy, moto_endpoint: str, bucket: str
) -> None:
    view = BucketView(moto_endpoint, bucket)
    budget = 512 * 1024
    storage = make_storage(
        proxy.url, bucket, attempts=2, read_timeout=1.5, max_pending_bytes=budget
    )
    async with live_into_s3(
        database_url, tmp_path, proxy, view, storage=storage, hls_ladder=(),
        hls_recording=False, hls_window=3,
    ) as live:  # fmt: skip
        publish = asyncio.create_task(ffmpeg_publish(live.url, seconds=30))
        key = None
        for _ in range(400):
            await asyncio.sleep(0.05)
            if live.live_id in live.packager.lives:
                source = live.packager.lives[live.live_id].pipeline.source
                key = f"streamd/{source.playlist_key}"
                if source.stats.segments >= 2:
                    break
        assert key is not None
        proxy.inject("stall", method="PUT")
        peak_queue = peak_bytes = 0
        # LL-HLS goes on from memory while S3 is stalled: parts keep coming, and segments
        # are listed (and served from memory) before storage has them.
        ll = source.live
        assert ll is not None
        parts_before = len(list(ll.parts))
        first_position = ll.position
        for _ in range(160):  # 8 s of stall
            await asyncio.sleep(0.05)
            queued = [job for job in list(source._queue._queue) if job is not None]  # type: ignore[attr-defined]
            peak_queue = max(peak_queue, len(queued))
            peak_bytes = max(peak_bytes, sum(job.segment.size for job in queued))
            assert storage.budget.pending_bytes <= budget
            assert proxy.held <= storage.options.max_concurrency
        position = ll.position
        assert position.msn >= first_position.msn + 3, (first_position, position)
        assert position.last_complete is not None
        newest = f"seg_{position.last_complete}.m4s"
        assert ll.media(newest) is not None  # listed, not stored, served from memory
        assert parts_before > 0
        assert live.counter("storage_errors") >= 2  # segments lost while S3 was away
        assert peak_queue <= QUEUE_SEGMENTS
        assert peak_bytes < QUEUE_SEGMENTS * 2_000_000
        released_at = len(proxy.log)
        listed_at_release = source.stats.segments
        proxy.release()
        code, err = await publish
        assert code == 0, err
        await live.wait_ended()
        playlist = await live.playlist(key)
        assert playlist.is_endlist
        # Recovered: the live went on listing new segments once S3 answered again.
        later = [r for r in proxy.log[released_at:] if r.status == 200 and r.path.endswith(".m4s")]
        assert len(later) >= 3
        assert source.stats.segments >= listed_at_release + 3
        assert any(s.discontinuity for s in playlist.segments) or playlist.discontinuity_sequence
        assert set(f"{key.rsplit('/', 1)[0]}/{s.uri}" for s in playlist.segments) <= set(
            await view.keys(key.rsplit("/", 1)[0])
        )
        assert assert_never_listed_before_stored(proxy) > 3
        # Not recorded: segments that left the window were deleted, but for the last 4
        # (players holding an older playlist may still ask for them).
        directory = key.rsplit("/", 1)[0]
        stored = {k.rsplit("/", 1)[-1] for k in await view.keys(directory) if k.endswith(".m4s")}
        assert playlist.media_sequence >= 5
        # Names keep the numbers LL-HLS published them under (lost ones leave a hole in the
        # names, not in the playlist's numbering): the 4 kept are the newest before the window.
        listed = {s.uri for s in playlist.segments}
        number = lambda name: int(name.removeprefix("seg_").removesuffix(".m4s"))  # noqa: E731
        kept = stored - listed
        assert listed <= stored and len(kept) == 4
        assert max(map(number, kept)) < min(map(number, listed))
