"""S3Storage against a real S3 API over HTTP (moto's server on loopback), directly and through
a fault-injection proxy. moto stands in for S3 itself; nothing inside streamd is mocked."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from packager.storage import s3 as storage_s3
from packager.storage.base import (
    CACHE_IMMUTABLE,
    CACHE_LIVE_PLAYLIST,
    CACHE_VOD_PLAYLIST,
    StorageKeyError,
    object_headers,
    put_object,
)
from packager.storage.s3 import S3Options, S3Storage, StorageUploadError
from tests.s3_fixtures import BucketView, FaultProxy, make_storage

MiB = 1024 * 1024


def ok(storage: S3Storage, operation: str, outcome: str) -> float:
    value = storage.metrics.requests.labels(operation, outcome)._value.get()
    return float(value)


async def test_objects_round_trip_with_headers_per_kind(moto_endpoint: str, bucket: str) -> None:
    storage = make_storage(moto_endpoint, bucket)
    keys = {
        "hls/7/b1/source/init.mp4": ("video/mp4", CACHE_IMMUTABLE),
        "hls/7/b1/source/seg_0.m4s": ("video/iso.segment", CACHE_IMMUTABLE),
        "hls/7/b1/source/seg_1.ts": ("video/mp2t", CACHE_IMMUTABLE),
        "hls/7/b1/source/live.m3u8": ("application/vnd.apple.mpegurl", CACHE_LIVE_PLAYLIST),
        "hls/7/b1/vod.m3u8": ("application/vnd.apple.mpegurl", CACHE_VOD_PLAYLIST),
    }
    for i, key in enumerate(keys):
        await put_object(storage, key, f"object {i}".encode())
    view = BucketView(moto_endpoint, bucket)
    for key, (content_type, cache) in keys.items():
        head = await view.head(f"streamd/{key}")
        assert (head["ContentType"], head["CacheControl"]) == (content_type, cache)
        assert object_headers(key) == (content_type, cache)
    assert await storage.get("hls/7/b1/source/seg_0.m4s") == b"object 1"
    assert await storage.get("hls/7/b1/source/missing.m4s") is None
    assert await storage.exists("hls/7/b1/vod.m3u8")
    assert not await storage.exists("hls/7/b1/nothing.m3u8")
    assert await storage.list("hls/7/b1/source/") == sorted(k for k in keys if "/source/" in k)
    await storage.delete(["hls/7/b1/source/seg_0.m4s", "hls/7/b1/source/gone.m4s"])
    assert not await storage.exists("hls/7/b1/source/seg_0.m4s")
    # The prefix is the storage's: nothing lands outside it.
    listed = await view.keys()
    assert listed and all(k.startswith("streamd/hls/7/b1/") for k in listed)
    storage.close()


async def test_deletes_go_in_batches(
    moto_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DeleteObjects takes 1000 keys at most; a batch of 10 exercises the same loop cheaply.
    monkeypatch.setattr(storage_s3, "_DELETE_BATCH", 10)
    storage = make_storage(moto_endpoint, bucket, prefix="")
    keys = [f"hls/1/b/source/seg_{i}.m4s" for i in range(25)]
    await asyncio.gather(*(storage.put(k, b"x", "video/iso.segment", CACHE_IMMUTABLE)
                           for k in keys))  # fmt: skip
    assert await storage.list("hls/1/") == sorted(keys)
    await storage.delete(keys[:24])
    assert await storage.list("hls/1/") == [keys[24]]
    assert ok(storage, "delete", "ok") == 3
    storage.close()


def test_urls_never_name_the_bucket_or_endpoint() -> None:
    options = S3Options(bucket="secret-bucket", prefix="media", endpoint_url="http://minio:9000")
    plain = S3Storage(options, client=None)
    assert plain.url_for("hls/7/master.m3u8") == "/hls/7/master.m3u8"  # served by /hls
    cdn = S3Storage(
        S3Options(bucket="secret-bucket", prefix="media", public_base_url="https://cdn.example")
    )
    assert cdn.url_for("hls/7/master.m3u8") == "https://cdn.example/media/hls/7/master.m3u8"
    for url in (plain.url_for("hls/7/a.m4s"), cdn.url_for("hls/7/a.m4s")):
        assert "secret-bucket" not in url and "minio" not in url
    plain.close()
    cdn.close()


@pytest.mark.parametrize("key", ["", "hls/../x", "/hls/x", "hls//x", "hls/a\\b", "hls/./x"])
async def test_bad_keys_are_rejected_and_store_nothing(
    moto_endpoint: str, bucket: str, key: str
) -> None:
    storage = make_storage(moto_endpoint, bucket)
    with pytest.raises(StorageKeyError, match="invalid storage key"):
        await storage.put(key, b"x", "video/mp4", CACHE_IMMUTABLE)
    with pytest.raises(StorageKeyError):
        storage.url_for(key)
    assert await BucketView(moto_endpoint, bucket).keys() == []
    storage.close()


async def test_large_objects_go_up_as_multipart(
    moto_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    storage = make_storage(
        moto_endpoint, bucket, multipart_threshold=5 * MiB, multipart_chunk=5 * MiB
    )
    data = bytes(range(256)) * (11 * MiB // 256)
    file = tmp_path / "vod.mp4"
    file.write_bytes(data)
    await storage.put_file("vod/1/video.mp4", file, "video/mp4", CACHE_IMMUTABLE)
    await storage.put("vod/1/copy.mp4", data, "video/mp4", CACHE_IMMUTABLE)
    await storage.put("vod/1/small.mp4", data[: 4 * MiB], "video/mp4", CACHE_IMMUTABLE)
    view = BucketView(moto_endpoint, bucket)
    for key, parts in (("video.mp4", "-3"), ("copy.mp4", "-3"), ("small.mp4", None)):
        head = await view.head(f"streamd/vod/1/{key}")
        # A multipart object's ETag is "md5-of-md5s-N" with N parts.
        etag = head["ETag"].strip('"')
        assert etag.endswith(parts) if parts else "-" not in etag
        assert (head["ContentType"], head["CacheControl"]) == ("video/mp4", CACHE_IMMUTABLE)
    assert await storage.get("vod/1/video.mp4") == data
    storage.close()


async def test_transient_faults_are_retried_until_they_pass(
    proxy: FaultProxy, moto_endpoint: str, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage = make_storage(proxy.url, bucket, read_timeout=0.5, attempts=4)
    proxy.inject("503", method="PUT", path="seg_1", count=2)
    proxy.inject("drop", method="PUT", path="seg_2", count=1)
    proxy.inject("delay", method="PUT", path="seg_3", count=1, delay=1.0)  # > read timeout
    proxy.inject("503", method="GET", path="seg_1", count=1)
    with caplog.at_level(logging.WARNING, "packager.storage.s3"):
        for i in (1, 2, 3):
            await put_object(storage, f"hls/1/b/source/seg_{i}.m4s", f"segment {i}".encode())
        assert await storage.get("hls/1/b/source/seg_1.m4s") == b"segment 1"
    assert ok(storage, "put", "retried") == 4  # 2 x 503, 1 drop, 1 timeout
    assert ok(storage, "put", "ok") == 3
    assert ok(storage, "put", "failed") == 0
    assert ok(storage, "get", "retried") == 1
    assert [r.outcome for r in proxy.puts("seg_1")] == ["503", "503", "forwarded"]
    assert [r.outcome for r in proxy.puts("seg_2")] == ["drop", "forwarded"]
    assert "SlowDown" in caplog.text and "retrying" in caplog.text
    view = BucketView(moto_endpoint, bucket)
    for i in (1, 2, 3):
        body = await view.read(f"streamd/hls/1/b/source/seg_{i}.m4s")
        assert body == f"segment {i}".encode()
    storage.close()


async def test_a_permanent_failure_raises_after_the_retry_budget(
    proxy: FaultProxy, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage = make_storage(proxy.url, bucket, attempts=3)
    proxy.inject("503", method="PUT", path="seg_9")
    with pytest.raises(StorageUploadError, match="SlowDown"):
        await put_object(storage, "hls/1/b/source/seg_9.m4s", b"lost")
    assert len(proxy.puts("seg_9")) == 3
    assert ok(storage, "put", "failed") == 1
    assert "failed after 3 attempt(s)" in caplog.text
    # A client error (here: no such bucket) is not worth retrying: one request.
    other = make_storage(proxy.url, "no-such-bucket", attempts=3)
    with pytest.raises(StorageUploadError, match="NoSuchBucket"):
        await put_object(other, "hls/1/b/source/seg_1.m4s", b"x")
    assert len(proxy.puts("no-such-bucket")) == 1
    storage.close()
    other.close()


async def test_a_stalled_bucket_holds_memory_to_the_byte_budget(
    proxy: FaultProxy, bucket: str
) -> None:
    """Puts wait for budget before they start: with S3 stalled, bytes in flight stay within
    the budget whatever the callers do, and everything goes through once S3 is back."""
    budget = 300_000
    storage = make_storage(
        proxy.url, bucket, max_pending_bytes=budget, max_concurrency=8, read_timeout=30
    )
    proxy.inject("stall", method="PUT")
    data = b"s" * 100_000
    puts = [
        asyncio.create_task(storage.put(f"hls/1/b/s/seg_{i}.m4s", data, "video/iso.segment",
                                        CACHE_IMMUTABLE))
        for i in range(20)
    ]  # fmt: skip
    for _ in range(100):
        await asyncio.sleep(0.02)
        assert storage.budget.pending_bytes <= budget
    assert proxy.held == 3  # the budget, not the 8 threads, bounds what is in flight
    assert storage.budget.pending_objects == 3
    proxy.release()  # the held requests are cut; their retries and the rest go through
    await asyncio.wait_for(asyncio.gather(*puts), 30)
    assert storage.budget.peak_bytes == budget
    assert storage.budget.pending_bytes == 0
    assert len(await storage.list("hls/1/b/s/")) == 20
    storage.close()


async def test_the_fault_proxy_ends_requests_still_in_flight_when_it_closes(
    moto_endpoint: str,
) -> None:
    """The proxy's own guarantee, which the tests above rely on: a request it still holds when
    it closes is ended with it, so no handler or socket outlives its test (one that did was
    garbage-collected during a later test and failed that one)."""
    host, port = moto_endpoint.removeprefix("http://").rsplit(":", 1)
    proxy = FaultProxy((host, int(port)))
    await proxy.start()
    proxy.inject("delay", method="PUT", delay=60)
    reader, writer = await asyncio.open_connection(*proxy.url.removeprefix("http://").split(":"))
    writer.write(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
    await writer.drain()
    for _ in range(200):
        if proxy.log:
            break
        await asyncio.sleep(0.01)
    assert [r.outcome for r in proxy.log] == ["delay"]
    await asyncio.wait_for(proxy.close(), 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without an answer
    writer.close()
    await writer.wait_closed()
