"""S3 (and S3-compatible: MinIO, R2) behind the :class:`packager.storage.base.Storage` interface.

boto3 is blocking, so every call runs on this storage's own thread pool, whose size is the
upload concurrency (boto3 clients are thread-safe; one client, one connection pool of that
size). Three bounds keep a slow or absent bucket from growing memory:

- *bytes in flight*: a put first reserves its size from a budget shared by every live of the
  process (``max_pending_bytes``) and waits on the event loop while the budget is spent. The
  caller — a rendition's writer task — therefore waits too, its bounded segment queue fills and
  the rendition drops (and counts) segments: back-pressure ends in a counted loss, never in
  memory. An object larger than the whole budget goes alone.
- *retries*: throttling, 5xx and timeouts/connection errors are retried with exponential
  backoff and full jitter (``attempts`` in all); anything else, or the last failure, raises
  :class:`StorageUploadError`. botocore's own retries are off so that the budget is ours.
- *timeouts*: connect and read timeouts on every request, so a stalled server is a retryable
  error after ``read_timeout`` seconds, not a thread lost forever.

Objects carry the Content-Type and Cache-Control the packager gives (``object_headers``).
Large objects (``multipart_threshold`` and up: VOD files) go up as multipart uploads.

URLs: with a CDN, ``{public_base_url}/{prefix}/{key}`` (the CDN's origin is the bucket);
without one, ``/{key}``: streamd's own ``/hls`` route reads the object through this storage.
Neither exposes the bucket name, the endpoint or any credential.
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from prometheus_client import CollectorRegistry, Counter, Gauge

from packager.storage.base import check_key

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

log = logging.getLogger(__name__)
T = TypeVar("T")

# Error codes S3 (and compatible stores) use for "slow down" and for its own trouble.
_RETRY_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestTimeout",
     "InternalError", "ServiceUnavailable", "503"}
)  # fmt: skip
_TRANSIENT = (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError)
_DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys


class StorageUploadError(Exception):
    """An S3 operation failed for good (not retryable, or out of attempts)."""


@dataclass(frozen=True, slots=True)
class S3Options:
    bucket: str
    #: Key prefix inside the bucket ("" or e.g. "streamd"), without slashes at either end.
    prefix: str = ""
    region: str | None = None
    #: For S3-compatible stores (MinIO, R2, moto); None is AWS.
    endpoint_url: str | None = None
    #: The CDN origin of playback URLs ("" = site-relative URLs served by streamd's /hls).
    public_base_url: str = ""
    max_concurrency: int = 8
    max_pending_bytes: int = 64 * 1024 * 1024
    attempts: int = 5
    backoff_base: float = 0.1
    backoff_cap: float = 4.0
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    multipart_threshold: int = 16 * 1024 * 1024
    multipart_chunk: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        # Programming errors only: config/ validates what operators type.
        if not self.bucket or self.prefix != self.prefix.strip("/"):
            raise ValueError("a bucket, and a prefix without leading or trailing slashes")
        if self.max_concurrency < 1 or self.attempts < 1 or self.max_pending_bytes < 1:
            raise ValueError("concurrency, attempts and the byte budget must be positive")


class S3Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "streamd_s3_requests", "S3 operations by outcome (ok, retried, failed)",
            ["operation", "outcome"], registry=registry,
        )  # fmt: skip
        self.pending_bytes = Gauge(
            "streamd_s3_pending_bytes", "bytes of objects waiting for or in upload",
            registry=registry,
        )  # fmt: skip


class ByteBudget:
    """Bytes reserved by puts in progress; ``acquire`` waits (on the loop) while it is spent."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pending_bytes = 0
        self.pending_objects = 0
        self.peak_bytes = 0
        self._changed = asyncio.Condition()

    async def acquire(self, size: int) -> None:
        async with self._changed:
            await self._changed.wait_for(
                lambda: self.pending_objects == 0 or self.pending_bytes + size <= self.limit
            )
            self.pending_bytes += size
            self.pending_objects += 1
            self.peak_bytes = max(self.peak_bytes, self.pending_bytes)

    async def release(self, size: int) -> None:
        async with self._changed:
            self.pending_bytes -= size
            self.pending_objects -= 1
            self._changed.notify_all()


def is_transient(exc: BaseException) -> bool:
    """Throttling, 5xx, timeouts and connection errors: worth another try."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code", "") in _RETRY_CODES or status >= 500 or status == 429
    return isinstance(exc, _TRANSIENT)


def _full_jitter(attempt: int, base: float, cap: float) -> float:
    """AWS's "full jitter": uniform in [0, min(cap, base * 2**attempt)]."""
    return random.uniform(0, min(cap, base * 2**attempt))  # noqa: S311 - not for security


def make_client(options: S3Options) -> S3Client:
    config = Config(
        region_name=options.region,
        connect_timeout=options.connect_timeout,
        read_timeout=options.read_timeout,
        retries={"total_max_attempts": 1},  # S3Storage retries, with its own budget
        max_pool_connections=options.max_concurrency,
        # Path-style for custom endpoints (MinIO, moto); many reject virtual-host buckets.
        s3={"addressing_style": "path" if options.endpoint_url else "auto"},
        # S3-compatible stores often reject the newer default checksum trailers.
        request_checksum_calculation="when_required" if options.endpoint_url else "when_supported",
        response_checksum_validation="when_required" if options.endpoint_url else "when_supported",
    )
    # Credentials: the standard AWS chain (environment, shared files, SSO, instance role).
    session = boto3.session.Session()
    client: S3Client = session.client("s3", endpoint_url=options.endpoint_url, config=config)
    return client


class S3Storage:
    def __init__(
        self,
        options: S3Options,
        *,
        client: S3Client | None = None,
        metrics: S3Metrics | None = None,
    ) -> None:
        self.options = options
        self.client = client if client is not None else make_client(options)
        self.metrics = metrics if metrics is not None else S3Metrics()
        self.budget = ByteBudget(options.max_pending_bytes)
        self._pool = ThreadPoolExecutor(options.max_concurrency, thread_name_prefix="s3")
        self._prefix = f"{options.prefix}/" if options.prefix else ""
        self._transfer = TransferConfig(
            multipart_threshold=options.multipart_threshold,
            multipart_chunksize=options.multipart_chunk,
            use_threads=False,  # the upload already runs on one of our threads
        )

    def object_key(self, key: str) -> str:
        """The key inside the bucket."""
        check_key(key)
        return self._prefix + key

    # --- the Storage interface ---

    async def put(self, key: str, data: bytes, content_type: str, cache_control: str) -> None:
        name = self.object_key(key)
        extra = {"ContentType": content_type, "CacheControl": cache_control}
        bucket = self.options.bucket
        if len(data) >= self.options.multipart_threshold:

            def upload() -> None:
                self.client.upload_fileobj(
                    io.BytesIO(data), bucket, name, ExtraArgs=extra, Config=self._transfer
                )

        else:

            def upload() -> None:
                self.client.put_object(
                    Bucket=bucket, Key=name, Body=data,
                    ContentType=content_type, CacheControl=cache_control,
                )  # fmt: skip

        await self.budget.acquire(len(data))
        self.metrics.pending_bytes.inc(len(data))
        try:
            await self._call("put", key, upload)
        finally:
            self.metrics.pending_bytes.dec(len(data))
            await self.budget.release(len(data))

    async def put_file(self, key: str, path: Path, content_type: str, cache_control: str) -> None:
        """Upload a file from disk (multipart when large) without reading it into memory."""
        name = self.object_key(key)
        extra = {"ContentType": content_type, "CacheControl": cache_control}

        def upload() -> None:
            self.client.upload_file(
                str(path), self.options.bucket, name, ExtraArgs=extra, Config=self._transfer
            )

        await self._call("put", key, upload)

    async def get(self, key: str) -> bytes | None:
        name = self.object_key(key)

        def read() -> bytes | None:
            try:
                response = self.client.get_object(Bucket=self.options.bucket, Key=name)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    return None
                raise
            body: bytes = response["Body"].read()
            return body

        return await self._call("get", key, read)

    async def exists(self, key: str) -> bool:
        name = self.object_key(key)

        def head() -> bool:
            try:
                self.client.head_object(Bucket=self.options.bucket, Key=name)
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                    return False
                raise
            return True

        return await self._call("head", key, head)

    async def delete(self, keys: list[str]) -> None:
        names = [self.object_key(k) for k in keys]
        for start in range(0, len(names), _DELETE_BATCH):
            batch = names[start : start + _DELETE_BATCH]

            def remove(batch: list[str] = batch) -> None:
                response = self.client.delete_objects(
                    Bucket=self.options.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
                if errors := response.get("Errors"):
                    raise StorageUploadError(f"{len(errors)} deletions failed: {errors[0]}")

            await self._call("delete", batch[0], remove)

    async def list(self, prefix: str) -> list[str]:
        full = self._prefix + prefix

        def walk() -> list[str]:
            keys: list[str] = []
            pages = self.client.get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.options.bucket, Prefix=full):
                keys.extend(o["Key"][len(self._prefix) :] for o in page.get("Contents", []))
            return sorted(keys)

        return await self._call("list", prefix, walk)

    def url_for(self, key: str) -> str:
        if self.options.public_base_url:
            return f"{self.options.public_base_url.rstrip('/')}/{self.object_key(key)}"
        check_key(key)
        return f"/{key}"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # --- retries ---

    async def _call(self, operation: str, key: str, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        o = self.options
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await loop.run_in_executor(self._pool, fn)
            except Exception as exc:
                if not is_transient(exc) or attempt >= o.attempts:
                    self.metrics.requests.labels(operation, "failed").inc()
                    log.error(
                        "s3 %s %s failed after %d attempt(s): %s", operation, key, attempt,
                        _describe(exc),
                    )  # fmt: skip
                    raise StorageUploadError(f"s3 {operation} {key}: {_describe(exc)}") from exc
                delay = _full_jitter(attempt - 1, o.backoff_base, o.backoff_cap)
                self.metrics.requests.labels(operation, "retried").inc()
                log.warning(
                    "s3 %s %s: %s; retrying in %.2f s", operation, key, _describe(exc), delay
                )
                await asyncio.sleep(delay)
            else:
                self.metrics.requests.labels(operation, "ok").inc()
                return result


def _describe(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        error: dict[str, Any] = dict(exc.response.get("Error", {}))
        return f"{error.get('Code', '?')}: {error.get('Message', '')}".strip()
    return f"{type(exc).__name__}: {exc}"
