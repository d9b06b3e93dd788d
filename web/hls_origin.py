"""The ``/hls`` origin's fast path: live playlists and fresh media from memory, LL-HLS blocking
reload, and files read in one hop, ahead of the router.

streamd is its own HLS origin on embedded defaults, and LL-HLS multiplies playlist requests (one
held request per part per viewer), so the common requests skip Starlette's router and response
classes: an ASGI middleware answers ``GET``/``HEAD`` of

- a live rendition's ``live.m3u8`` from the packager's in-memory LL-HLS state (rendered once per
  change), holding ``_HLS_msn``/``_HLS_part`` requests on the rendition's shared future until the
  part is published (RFC 8216bis 6.2.5.2): ``_HLS_part`` without ``_HLS_msn`` or an msn more
  than two segments ahead is a 400, a request still unanswered after three target durations a
  503 (never an unchanged playlist, which AVPlayer reports as an error), ``_HLS_skip=YES`` the
  delta update;
- parts, init segments and segments not yet stored, from memory; the part the playlist's
  ``EXT-X-PRELOAD-HINT`` names is held until it exists (404 if its segment ends without it);
- any other file of local storage without a ``Range``: opened without following a final
  symlink, in a directory checked once to lie inside the root, and read in one worker-thread hop.

Everything else (OPTIONS, Range, errors, S3 objects, VOD playlists...) goes on to ``web.hls``,
whose answers these match: the same CORS, Content-Type and Cache-Control, gzip for playlists,
the same guard for sold lives. Responses to blocking requests are cacheable by their URL (a CDN
keys on ``_HLS_*``), the plain playlist for a second, parts and segments for ever.

The access log, request id and metrics still apply: this runs inside web.middleware's wrapper.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import logging
import os
import stat
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from web.hls import CORS, PRIVATE_CACHE_CONTROL, ObjectHeaders, valid_path

log = logging.getLogger(__name__)

#: A held request gives up after this many target durations (RFC 8216bis: three).
HOLD_TARGETS = 3
#: Blocking and delta responses stay cacheable this many target durations.
BLOCKING_CACHE_TARGETS = 6
#: Files up to this size are read whole in one hop; larger ones stream (web.hls).
MAX_READ_BYTES = 32 << 20
_GZIP_MIN_BYTES = 256
_GZIP_CACHE = 512
_DIR_CACHE = 4096


class Edge(Protocol):
    """Where a live playlist is (``packager.hls.low_latency.Position``)."""

    @property
    def last_complete(self) -> int | None: ...

    def has(self, msn: int, part: int | None) -> bool: ...


class LiveMedia(Protocol):
    """One live rendition in memory (``packager.hls.low_latency.LiveRendition``)."""

    @property
    def position(self) -> Edge: ...

    @property
    def ended(self) -> bool: ...

    @property
    def target_duration(self) -> int: ...

    def media(self, name: str) -> bytes | None: ...

    def hinted(self, name: str) -> bool: ...

    def changed(self) -> Awaitable[None]: ...

    def render(self, skip: bool = False) -> bytes: ...


class LiveLookup(Protocol):
    """``packager.hls.low_latency.LiveIndex``: the rendition a key lies in, and the name."""

    def find(self, key: str) -> tuple[LiveMedia, str] | None: ...


Guard = Callable[[Request], Awaitable[Response | bool]]


class _Route:
    """What web.middleware labels these requests with (the /hls route's template)."""

    path = "/hls/{path:path}"


ROUTE = _Route()


class HlsOrigin:
    def __init__(
        self,
        app: ASGIApp,
        *,
        lookup: LiveLookup | None,
        root: Path | None,
        headers: ObjectHeaders,
        guard: Guard | None = None,
    ) -> None:
        self.app = app
        self.lookup = lookup
        self.base = (root / "hls").resolve() if root is not None else None
        self.headers = headers
        self.guard = guard
        self._gzipped: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()
        self._dirs: dict[str, bool] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in ("GET", "HEAD")
            or not scope["path"].startswith("/hls/")
        ):
            await self.app(scope, receive, send)
            return
        path = scope["path"][5:]
        key = f"hls/{path}"
        known = self.headers(key) if valid_path(path) else None
        if known is None or (found := self._find(key, scope)) is None:
            await self.app(scope, receive, send)  # web.hls answers (and its errors)
            return
        scope["route"] = ROUTE
        scope["path_params"] = {"path": path}
        private = False
        if self.guard is not None:
            verdict = await self.guard(Request(scope, receive))
            if isinstance(verdict, Response):
                await verdict(scope, receive, send)
                return
            private = verdict
        content_type, cache = known
        if isinstance(found, str):  # "file"
            served = await self._file(path, scope, send, content_type, cache, private)
            if not served:
                await self.app(scope, receive, send)
            return
        live, name = found
        if name == "live.m3u8":
            await self._playlist(live, scope, send, content_type, cache, private)
        else:
            await self._media(live, name, scope, send, content_type, cache, private)

    def _find(self, key: str, scope: Scope) -> tuple[LiveMedia, str] | str | None:
        """A live rendition's object, "file" for one to read from disk, None: not ours."""
        if self.lookup is not None and (found := self.lookup.find(key)) is not None:
            live, name = found
            if name == "live.m3u8" or live.media(name) is not None or live.hinted(name):
                return found
        if self.base is None or key.endswith(".m3u8"):
            return None  # playlists on disk: web.hls (gzip, a read per request either way)
        for name, _ in scope["headers"]:
            if name == b"range":
                return None
        return "file"

    # --- live playlists ---

    async def _playlist(
        self, live: LiveMedia, scope: Scope, send: Send, content_type: str, cache: str,
        private: bool,
    ) -> None:  # fmt: skip
        query = _query(scope)
        skip = query.get("_HLS_skip", "").upper() in ("YES", "V2")
        blocking = "_HLS_msn" in query or "_HLS_part" in query
        if blocking:
            target = await self._hold(live, query)
            if isinstance(target, tuple):
                await _error(send, *target)
                return
            cache = f"public, max-age={BLOCKING_CACHE_TARGETS * live.target_duration}"
        elif skip:
            cache = "public, max-age=1"
        body = live.render(skip)
        headers = [(b"vary", b"Accept-Encoding")]
        if len(body) >= _GZIP_MIN_BYTES and _accepts_gzip(scope):
            body = self._gzip(body)
            headers.append((b"content-encoding", b"gzip"))
        await _answer(send, scope, body, content_type, PRIVATE_CACHE_CONTROL if private else cache,
                      headers)  # fmt: skip

    async def _hold(self, live: LiveMedia, query: dict[str, str]) -> tuple[int, str, str] | None:
        """Wait until the playlist has what the query asks for; an error tuple if it never
        may (400) or did not in time (503)."""
        try:
            msn = int(query["_HLS_msn"]) if "_HLS_msn" in query else None
            part = int(query["_HLS_part"]) if "_HLS_part" in query else None
        except ValueError:
            return 400, "bad_request", "_HLS_msn and _HLS_part are integers"
        if msn is None:
            return 400, "bad_request", "_HLS_part needs _HLS_msn"
        if msn < 0 or (part is not None and part < 0):
            return 400, "bad_request", "_HLS_msn and _HLS_part are not negative"
        last = live.position.last_complete
        if msn > (last if last is not None else -1) + 2:
            return 400, "bad_request", f"_HLS_msn {msn} is more than two segments ahead"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HOLD_TARGETS * live.target_duration
        while not live.ended and not live.position.has(msn, part):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return 503, "not_yet", "the requested part was not published in time; retry"
            try:
                await asyncio.wait_for(live.changed(), remaining)
            except TimeoutError:
                continue
        return None

    def _gzip(self, body: bytes) -> bytes:
        cached = self._gzipped.get(id(body))
        if cached is not None and cached[0] is body:
            return cached[1]
        packed = gzip.compress(body, compresslevel=5)
        self._gzipped[id(body)] = (body, packed)
        while len(self._gzipped) > _GZIP_CACHE:
            self._gzipped.popitem(last=False)
        return packed

    # --- media in memory ---

    async def _media(
        self, live: LiveMedia, name: str, scope: Scope, send: Send, content_type: str,
        cache: str, private: bool,
    ) -> None:  # fmt: skip
        data = live.media(name)
        if data is None:  # the preload hint's part: held until it is out
            loop = asyncio.get_running_loop()
            deadline = loop.time() + HOLD_TARGETS * live.target_duration
            while (data := live.media(name)) is None and live.hinted(name):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(live.changed(), remaining)
                except TimeoutError:
                    break
            if data is None:
                await _error(send, 404, "not_found", "no such HLS file")
                return
        await _answer(send, scope, data, content_type,
                      PRIVATE_CACHE_CONTROL if private else cache)  # fmt: skip

    # --- files ---

    async def _file(
        self, path: str, scope: Scope, send: Send, content_type: str, cache: str, private: bool,
    ) -> bool:  # fmt: skip
        """Serve a local file whole; False when it is not there (web.hls answers 404)."""
        assert self.base is not None
        directory, _, _ = path.rpartition("/")
        inside = self._dirs.get(directory)
        if inside is None:
            inside = await asyncio.to_thread(self._inside, directory)
            if len(self._dirs) >= _DIR_CACHE:
                self._dirs.clear()
            self._dirs[directory] = inside
        if not inside:
            return False
        read = await asyncio.to_thread(_read, self.base / path)
        if read is None:
            return False
        data, info = read
        etag = hashlib.md5(f"{info.st_mtime}-{info.st_size}".encode(), usedforsecurity=False)
        extra = [
            (b"accept-ranges", b"bytes"),
            (b"last-modified", formatdate(info.st_mtime, usegmt=True).encode()),
            (b"etag", f'"{etag.hexdigest()}"'.encode()),
        ]
        await _answer(send, scope, data, content_type,
                      PRIVATE_CACHE_CONTROL if private else cache, extra)  # fmt: skip
        return True

    def _inside(self, directory: str) -> bool:
        assert self.base is not None
        try:
            real = (self.base / directory).resolve(strict=True)
        except (OSError, RuntimeError):
            return False
        return real.is_relative_to(self.base) and real.is_dir()


def _read(path: Path) -> tuple[bytes, os.stat_result] | None:
    """The file's bytes if it is a regular file small enough to read whole (not a symlink)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_READ_BYTES:
            return None
        chunks, left = [], info.st_size
        while left > 0 and (chunk := os.read(fd, left)):
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks), info
    except OSError:
        return None
    finally:
        os.close(fd)


def _query(scope: Scope) -> dict[str, str]:
    raw: bytes = scope.get("query_string", b"")
    return dict(parse_qsl(raw.decode("latin-1"))) if raw else {}


def _accepts_gzip(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"accept-encoding":
            for coding in value.decode("latin-1").split(","):
                token, _, params = coding.strip().partition(";")
                if token.strip().lower() in ("gzip", "*") and params.replace(" ", "") != "q=0":
                    return True
    return False


_CORS = [(k.lower().encode(), v.encode()) for k, v in CORS.items()]


async def _answer(
    send: Send, scope: Scope, body: bytes, content_type: str, cache: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:  # fmt: skip
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", cache.encode()),
        *_CORS,
        *(extra or ()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


async def _error(send: Send, status: int, code: str, message: str) -> None:
    """The API's JSON error, with CORS; never cached (a held request is retried)."""
    log.info("hls: %d %s", status, message)
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *_CORS,
    ]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
