"""Uploads in parts, shaped like S3 multipart, on both storages; and reading an original back.

With S3 the browser PUTs each part straight to the bucket through a presigned ``UploadPart``
URL, and S3 keeps the list of parts (``ListParts``). On local disk streamd receives the parts
itself (``web.uploads``): each is streamed into its place in one file,
``uploads/{upload}/data`` under the media root (positional writes, never a part in memory
whole), and a marker ``part-NNNNN`` (holding its size) says it arrived whole; completing
renames the file to the original's key, so the bytes are written once (no concatenation).
A part being (re)written has no marker: a dropped connection leaves it missing, to be sent
again.
Keys are storage keys (``originals/{video}/source.mp4``), checked like every other key.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from packager.storage.local import LocalStorage
from packager.storage.s3 import S3Storage

#: A part written to disk is flushed in writes of this size (one thread hop each).
WRITE_CHUNK = 1 << 20


class PartSizeError(ValueError):
    """A part's body is not exactly the size its number calls for."""


class Multipart(Protocol):
    kind: str  # "local" or "s3"

    async def start(self, key: str, content_type: str) -> str | None:
        """Begin an upload of ``key``; S3's upload id (None on local disk)."""
        ...

    def presigned_part_url(self, key: str, s3_upload_id: str, number: int, ttl: int) -> str:
        """S3 only: the URL a client PUTs part ``number`` to."""
        ...

    async def received(self, upload_id: str, key: str, s3_upload_id: str | None) -> dict[int, int]:
        """Part number -> size of the parts stored so far."""
        ...

    async def complete(
        self, upload_id: str, key: str, s3_upload_id: str | None, part_count: int
    ) -> int:
        """Assemble the parts into ``key``; the object's size."""
        ...

    async def abort(self, upload_id: str, key: str, s3_upload_id: str | None) -> None:
        """Free every part (idempotent)."""
        ...


class LocalMultipart:
    kind = "local"

    def __init__(self, storage: LocalStorage) -> None:
        self.storage = storage

    def _parts_dir(self, upload_id: str) -> Path:
        return self.storage.path_for(f"uploads/{upload_id}")

    def part_path(self, upload_id: str, number: int) -> Path:
        return self.storage.path_for(f"uploads/{upload_id}/part-{number:05d}")

    async def start(self, key: str, content_type: str) -> str | None:
        return None

    def presigned_part_url(self, key: str, s3_upload_id: str, number: int, ttl: int) -> str:
        raise NotImplementedError("local parts go through streamd (web.uploads)")

    def data_path(self, upload_id: str) -> Path:
        return self.storage.path_for(f"uploads/{upload_id}/data")

    async def write_part(
        self, upload_id: str, number: int, offset: int, body: AsyncIterator[bytes],
        expected: int,
    ) -> None:  # fmt: skip
        """Stream one part into the upload's file at ``offset``; it counts as received only
        once it is complete and of exactly ``expected`` bytes."""
        marker = self.part_path(upload_id, number)
        data = self.data_path(upload_id)
        await asyncio.to_thread(data.parent.mkdir, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(marker.unlink)
        fd = await asyncio.to_thread(os.open, data, os.O_WRONLY | os.O_CREAT, 0o640)
        written = 0
        try:
            pending = bytearray()
            async for chunk in body:
                if written + len(pending) + len(chunk) > expected:
                    raise PartSizeError(f"part {number} is longer than {expected} bytes")
                pending += chunk
                if len(pending) >= WRITE_CHUNK:
                    await asyncio.to_thread(_pwrite_all, fd, pending, offset + written)
                    written += len(pending)
                    pending = bytearray()
            if written + len(pending) != expected:
                raise PartSizeError(
                    f"part {number} has {written + len(pending)} bytes, expected {expected}"
                )
            await asyncio.to_thread(_pwrite_all, fd, pending, offset + written)
        finally:
            await asyncio.to_thread(os.close, fd)
        await asyncio.to_thread(marker.write_text, str(expected))

    async def received(self, upload_id: str, key: str, s3_upload_id: str | None) -> dict[int, int]:
        directory = self._parts_dir(upload_id)

        def scan() -> dict[int, int]:
            out: dict[int, int] = {}
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(directory):
                    name = entry.name
                    if name.startswith("part-") and name[5:].isdigit():
                        with contextlib.suppress(OSError, ValueError):
                            out[int(name[5:])] = int(Path(entry.path).read_text())
            return out

        return await asyncio.to_thread(scan)

    async def complete(
        self, upload_id: str, key: str, s3_upload_id: str | None, part_count: int
    ) -> int:
        target = self.storage.path_for(key)
        data = self.data_path(upload_id)

        def finish() -> int:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(data, target)  # same file system: the media root
            shutil.rmtree(data.parent, ignore_errors=True)
            return target.stat().st_size

        return await asyncio.to_thread(finish)

    async def abort(self, upload_id: str, key: str, s3_upload_id: str | None) -> None:
        await asyncio.to_thread(shutil.rmtree, self._parts_dir(upload_id), True)


def _pwrite_all(fd: int, data: bytes | bytearray, offset: int) -> None:
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view, offset)
        view = view[done:]
        offset += done


class S3Multipart:
    kind = "s3"

    def __init__(self, storage: S3Storage) -> None:
        self.storage = storage

    async def start(self, key: str, content_type: str) -> str | None:
        s = self.storage
        name = s.object_key(key)

        def create() -> str:
            out = s.client.create_multipart_upload(
                Bucket=s.options.bucket, Key=name, ContentType=content_type
            )
            return out["UploadId"]

        return await s._call("create_multipart", key, create)

    def presigned_part_url(self, key: str, s3_upload_id: str, number: int, ttl: int) -> str:
        s = self.storage
        url: str = s.client.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": s.options.bucket,
                "Key": s.object_key(key),
                "UploadId": s3_upload_id,
                "PartNumber": number,
            },
            ExpiresIn=ttl,
        )
        return url

    async def _parts(self, key: str, s3_upload_id: str) -> list[tuple[int, int, str]]:
        s = self.storage
        name = s.object_key(key)

        def walk() -> list[tuple[int, int, str]]:
            out: list[tuple[int, int, str]] = []
            marker = 0
            while True:
                page = s.client.list_parts(
                    Bucket=s.options.bucket, Key=name, UploadId=s3_upload_id,
                    PartNumberMarker=marker, MaxParts=1000,
                )  # fmt: skip
                for part in page.get("Parts", []):
                    out.append((part["PartNumber"], part["Size"], part["ETag"]))
                if not page.get("IsTruncated"):
                    return out
                marker = page["NextPartNumberMarker"]

        return await s._call("list_parts", key, walk)

    async def received(self, upload_id: str, key: str, s3_upload_id: str | None) -> dict[int, int]:
        assert s3_upload_id is not None
        return {number: size for number, size, _ in await self._parts(key, s3_upload_id)}

    async def complete(
        self, upload_id: str, key: str, s3_upload_id: str | None, part_count: int
    ) -> int:
        assert s3_upload_id is not None
        s = self.storage
        parts = await self._parts(key, s3_upload_id)
        listing = [{"PartNumber": n, "ETag": etag} for n, _, etag in parts if n <= part_count]

        def finish() -> None:
            s.client.complete_multipart_upload(
                Bucket=s.options.bucket, Key=s.object_key(key), UploadId=s3_upload_id,
                MultipartUpload={"Parts": listing},  # type: ignore[typeddict-item]
            )  # fmt: skip

        await s._call("complete_multipart", key, finish)
        return sum(size for n, size, _ in parts if n <= part_count)

    async def abort(self, upload_id: str, key: str, s3_upload_id: str | None) -> None:
        if s3_upload_id is None:
            return
        s = self.storage

        def abort() -> None:
            # NoSuchUpload: already aborted or completed.
            with contextlib.suppress(s.client.exceptions.NoSuchUpload):
                s.client.abort_multipart_upload(
                    Bucket=s.options.bucket, Key=s.object_key(key), UploadId=s3_upload_id
                )

        await s._call("abort_multipart", key, abort)


def multipart_for(storage: object) -> Multipart:
    if isinstance(storage, S3Storage):
        return S3Multipart(storage)
    if isinstance(storage, LocalStorage):
        return LocalMultipart(storage)
    raise TypeError(f"no multipart uploads on {type(storage).__name__}")


@contextlib.asynccontextmanager
async def local_copy(storage: object, key: str, work_dir: Path) -> AsyncIterator[Path]:
    """A path to read the object ``key`` from: the file itself on local disk, a download into
    ``work_dir`` (removed afterwards) from S3."""
    if isinstance(storage, LocalStorage):
        yield storage.path_for(key)
        return
    assert isinstance(storage, S3Storage)
    s3 = storage
    target = work_dir / ("source" + Path(key).suffix)

    def download() -> None:
        s3.client.download_file(s3.options.bucket, s3.object_key(key), str(target))

    await s3._call("download", key, download)
    try:
        yield target
    finally:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
