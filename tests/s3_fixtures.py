"""Helpers of the S3 tests (tests/packager/storage, tests/web/test_hls_s3.py): the
fault-injection proxy, S3 clients and storages."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import boto3

from packager.storage.s3 import S3Options, S3Storage

FaultKind = Literal["503", "drop", "delay", "stall"]
_buckets = itertools.count()


def bucket_name() -> str:
    return f"streamd-test-{os.getpid()}-{next(_buckets)}"


_MAX_HEAD = 64 * 1024


def s3_client(endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=endpoint)


@dataclass
class Fault:
    kind: FaultKind
    match: Callable[[str, str], bool]  # (method, path) -> applies
    count: int | None  # requests left to fault; None = until cleared
    delay: float = 0.0


@dataclass
class Request:
    method: str
    path: str
    outcome: str  # "forwarded", "503", "drop", "delay", "stall"
    body: bytes = b""  # kept for playlists only (small)
    status: int | None = None  # of forwarded requests


@dataclass
class FaultProxy:
    """HTTP/1.1 proxy on loopback between streamd and the S3 server, one request per
    connection (each side is told ``Connection: close``). On command it answers 503 SlowDown,
    closes the connection without an answer, delays, or holds requests until :meth:`release`
    (then drops them: the client has timed out by then, and a stale PUT must not land late)."""

    upstream: tuple[str, int]
    faults: list[Fault] = field(default_factory=list)
    log: list[Request] = field(default_factory=list)
    held: int = 0
    peak_held: int = 0
    _server: asyncio.Server | None = None
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=_MAX_HEAD)

    async def close(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        # Python 3.11's wait_closed does not wait for handlers: one still relaying when the
        # test ends would be destroyed with the loop and leak its sockets into a later test.
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    def inject(
        self,
        kind: FaultKind,
        *,
        method: str | None = None,
        path: str = "",
        count: int | None = None,
        delay: float = 0.0,
    ) -> Fault:
        """Fault requests whose method is ``method`` (any when None) and whose path matches
        the regular expression ``path``."""
        pattern = re.compile(path)

        def match(m: str, p: str) -> bool:
            return (method is None or m == method) and pattern.search(p) is not None

        fault = Fault(kind, match, count, delay)
        if kind == "stall":
            self._released.clear()
        self.faults.append(fault)
        return fault

    def clear(self) -> None:
        self.faults.clear()

    def release(self) -> None:
        self.faults = [f for f in self.faults if f.kind != "stall"]
        self._released.set()

    def puts(self, pattern: str = "") -> list[Request]:
        regex = re.compile(pattern)
        return [r for r in self.log if r.method == "PUT" and regex.search(r.path)]

    def _take(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.match(method, path):
                if fault.count is not None:
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = [line for line in lines[1:] if line]
            length = 0
            for line in headers:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
                elif name.strip().lower() == "transfer-encoding":
                    raise AssertionError("the proxy handles Content-Length bodies only")
                elif name.strip().lower() == "expect" and "100-continue" in value.lower():
                    # botocore waits (up to 1 s) for this before sending a PUT's body.
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            headers = [h for h in headers if h.split(":", 1)[0].strip().lower() != "expect"]
            body = await reader.readexactly(length)
            path = target.split("?", 1)[0]
            keep = body if path.endswith(".m3u8") else b""
            fault = self._take(method, path)
            if fault is not None:
                self.log.append(Request(method, path, fault.kind, keep))
                if fault.kind == "503":
                    writer.write(_SLOW_DOWN)
                    await writer.drain()
                    return
                if fault.kind == "drop":
                    writer.transport.abort()
                    return
                if fault.kind == "stall":
                    self.held += 1
                    self.peak_held = max(self.peak_held, self.held)
                    try:
                        await self._released.wait()
                    finally:
                        self.held -= 1
                    writer.transport.abort()
                    return
                await asyncio.sleep(fault.delay)
            record = Request(method, path, "forwarded", keep)
            self.log.append(record)
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            try:
                kept = [h for h in headers if h.split(":", 1)[0].strip().lower() != "connection"]
                up_writer.write(
                    "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1")
                    + body
                )
                await up_writer.drain()
                response = await up_reader.readuntil(b"\r\n\r\n")
                record.status = int(response.split(b" ", 2)[1])
                head_lines = [
                    line for line in response.decode("latin-1").split("\r\n")
                    if line and line.split(":", 1)[0].strip().lower() != "connection"
                ]  # fmt: skip
                writer.write(
                    "\r\n".join([*head_lines, "Connection: close", "", ""]).encode("latin-1")
                )
                # Relay the body: Content-Length bytes (none for HEAD), else until EOF.
                left = -1
                for line in response.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        left = int(value)
                if method == "HEAD" or record.status in (204, 304):
                    left = 0
                while left != 0 and (chunk := await up_reader.read(65536 if left < 0 else left)):
                    left = left - len(chunk) if left > 0 else left
                    writer.write(chunk)
                    await writer.drain()
                await writer.drain()
            finally:
                up_writer.close()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await up_writer.wait_closed()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away (it timed out): nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
            self._handlers.discard(task)


_SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
    + f"Content-Length: {len(_SLOW_DOWN_BODY)}\r\nConnection: close\r\n\r\n".encode()
    + _SLOW_DOWN_BODY
)


def make_storage(endpoint: str, bucket: str, **overrides: object) -> S3Storage:
    """S3Storage as streamd builds it, with test-sized timeouts and backoff."""
    options = {
        "bucket": bucket, "prefix": "streamd", "endpoint_url": endpoint, "region": "us-east-1",
        "attempts": 4, "backoff_base": 0.02, "backoff_cap": 0.1, "read_timeout": 2.0,
        "connect_timeout": 1.0, **overrides,
    }  # fmt: skip
    return S3Storage(S3Options(**options))  # type: ignore[arg-type]


class BucketView:
    """What is in the bucket, asked straight from the S3 server (never through streamd), off
    the event loop: a proxy on this loop may be holding a request the server waits on."""

    def __init__(self, endpoint: str, bucket: str) -> None:
        self.client = s3_client(endpoint)
        self.bucket = bucket

    async def head(self, key: str) -> dict[str, Any]:
        head: dict[str, Any] = await asyncio.to_thread(
            self.client.head_object, Bucket=self.bucket, Key=key
        )
        return head

    async def read(self, key: str) -> bytes:
        response = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=key)
        body: bytes = await asyncio.to_thread(response["Body"].read)
        return body

    async def keys(self, prefix: str = "") -> list[str]:
        def walk() -> list[str]:
            pages = self.client.get_paginator("list_objects_v2")
            return sorted(
                o["Key"]
                for page in pages.paginate(Bucket=self.bucket, Prefix=prefix)
                for o in page.get("Contents", [])
            )

        return await asyncio.to_thread(walk)


def public_read_policy(bucket: str) -> str:
    """Anyone may GET objects: stands in for CloudFront's origin access to the bucket."""
    statement = {
        "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{bucket}/*",
    }  # fmt: skip
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})
