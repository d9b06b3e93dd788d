"""``GET /hls/...``: HLS playlists, segments and posters from local storage.

What the packager's ``LocalStorage`` wrote under ``ROOT/hls`` is served at ``/hls``. With S3
storage the same route reads the objects through the storage (an :class:`ObjectReader`), so
players reach a bucket that is not public without the URL naming it; with a CDN, players go to
the CDN and this route is its fallback.

- Content-Type and Cache-Control per kind of object are the ones the packager stores objects
  with: web may not import the packager, so the composition root hands :func:`hls_routes` the
  packager's function (``packager.storage.base.known_object_headers``); a name it has no
  headers for is not served;
- playlists (``.m3u8``) are gzipped when the client accepts it;
- every answer, errors included, carries ``Access-Control-Allow-Origin: *`` (players on other
  origins; a 404 without it surfaces in browsers as an opaque CORS error), and every error is
  the API's JSON error: 404, 405 (``Allow: GET, HEAD, OPTIONS``), 416 for a Range past the end
  of a file (``Content-Range: bytes */SIZE``), 503 when object storage fails. A Range that does
  not parse is ignored (the whole file, as RFC 9110 allows), never a text/plain 400.

Paths are checked part by part (letters, digits, ``_.-``, no leading dot) and must resolve
inside the root, so neither ``..`` nor a symlink leads out of it; hidden temporary files of
writes in progress are never served.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import re
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from web.errors import error_response

log = logging.getLogger(__name__)

CORS = {"Access-Control-Allow-Origin": "*"}
PREFLIGHT = {
    **CORS,
    "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
    "Access-Control-Allow-Headers": "Range",
    "Access-Control-Max-Age": "86400",
}
METHODS = ("GET", "HEAD", "OPTIONS")
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_RANGE_SPEC = re.compile(r"(\d{1,18})-(\d{0,18})|-(\d{1,18})")
_MAX_DEPTH = 6
_GZIP_MIN_BYTES = 256  # smaller playlists gain nothing
# A private video's objects: never in a shared cache (a CDN or a proxy would hand them on).
PRIVATE_CACHE_CONTROL = "private, max-age=60"


# (content type, cache control) for a storage key (``hls/...``); None: not served.
ObjectHeaders = Callable[[str], tuple[str, str] | None]


def _is_playlist(path: str) -> bool:
    return path.endswith(".m3u8")


class ObjectReader(Protocol):
    """What /hls needs of a storage backend (``packager.storage.base.Storage`` has it)."""

    async def get(self, key: str) -> bytes | None: ...


def valid_path(path: str) -> bool:
    parts = path.split("/")
    return 1 <= len(parts) <= _MAX_DEPTH and all(_PART.fullmatch(p) for p in parts)


def _not_found() -> Response:
    return error_response(404, "not_found", "no such HLS file", headers=CORS)


def _early_answer(request: Request) -> Response | None:
    """The answers that do not depend on the file: preflight, other methods, the bare root."""
    if request.method == "OPTIONS":
        return Response(status_code=204, headers=PREFLIGHT)
    if request.method not in METHODS:
        message = f"method {request.method} is not allowed on /hls"
        allow = {**CORS, "Allow": ", ".join(METHODS)}
        return error_response(405, "method_not_allowed", message, headers=allow)
    if "path" not in request.path_params:
        return _not_found()
    return None


def _parse_range(value: str, size: int) -> list[tuple[int, int]] | None:
    """``bytes=`` ranges as (start, end exclusive) against a file of ``size`` bytes, computed as
    Starlette's FileResponse does; None when the header does not parse (it is then ignored);
    a start at or past the end in any range makes the set unsatisfiable (416)."""
    unit, _, specs = value.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    ranges = []
    for spec in specs.split(","):
        match = _RANGE_SPEC.fullmatch(spec.strip())
        if match is None:
            return None
        first, last, suffix = match.groups()
        if suffix is not None:
            ranges.append((max(size - int(suffix), 0), size))
        elif last:
            if int(last) < int(first):
                return None
            ranges.append((int(first), min(int(last) + 1, size)))
        else:
            ranges.append((int(first), size))
    return ranges


class _HlsFile(FileResponse):
    """A file streamed from disk (HEAD and Range answered by FileResponse), whose Range errors
    are /hls errors: a 416 in JSON with CORS, a Range that does not parse ignored."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.stat_result is not None  # given by HlsFiles: no stat race with deletions
        headers = Headers(scope=scope)
        value, if_range = headers.get("range"), headers.get("if-range")
        # An If-Range naming another version asks for the whole file: FileResponse sends it.
        current = (self.headers["etag"], self.headers["last-modified"])
        if value is not None and (if_range is None or if_range in current):
            size = self.stat_result.st_size
            ranges = _parse_range(value, size)
            if ranges is None:
                scope = {**scope, "headers": [h for h in scope["headers"] if h[0] != b"range"]}
            elif any(start >= size for start, _ in ranges):
                response = error_response(
                    416, "range_not_satisfiable", f"the file has {size} bytes",
                    headers={**CORS, "Content-Range": f"bytes */{size}"},
                )  # fmt: skip
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class HlsFiles:
    def __init__(self, root: Path, headers: ObjectHeaders) -> None:
        self.base = (root / "hls").resolve()
        self.headers = headers

    def _locate(self, path: str) -> tuple[Path, os.stat_result] | None:
        if not valid_path(path):
            return None
        candidate = self.base.joinpath(*path.split("/"))
        try:
            resolved = candidate.resolve(strict=True)
            info = resolved.stat()
        except (OSError, RuntimeError):
            return None
        if not resolved.is_relative_to(self.base) or not stat.S_ISREG(info.st_mode):
            return None
        return resolved, info

    async def serve(self, request: Request) -> Response:
        if (early := _early_answer(request)) is not None:
            return early
        path = request.path_params["path"]
        headers = self.headers(f"hls/{path}")
        found = await asyncio.to_thread(self._locate, path) if headers else None
        if headers is None or found is None:
            return _not_found()
        file, info = found
        content_type, cache = headers
        common = {**CORS, "Cache-Control": cache}
        if not _is_playlist(path):
            # Streams from disk in chunks. The stat taken here is the one served: a file the
            # packager deletes meanwhile is not a 500 from FileResponse's own stat.
            return _HlsFile(file, media_type=content_type, headers=common, stat_result=info)
        try:
            body = await asyncio.to_thread(file.read_bytes)
        except OSError:
            return _not_found()
        return _playlist_response(request, body, content_type, common)


def _playlist_response(
    request: Request, body: bytes, content_type: str, headers: dict[str, str]
) -> Response:
    headers["Vary"] = "Accept-Encoding"
    if len(body) >= _GZIP_MIN_BYTES and _accepts_gzip(request):
        body = gzip.compress(body, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    headers["Content-Length"] = str(len(body))
    if request.method == "HEAD":
        body = b""
    return Response(body, media_type=content_type, headers=headers)


class HlsObjects:
    """The same answers, from object storage (whole objects: segments are a few MB)."""

    def __init__(self, reader: ObjectReader, headers: ObjectHeaders) -> None:
        self.reader = reader
        self.headers = headers

    async def serve(self, request: Request) -> Response:
        if (early := _early_answer(request)) is not None:
            return early
        path = request.path_params["path"]
        headers = self.headers(f"hls/{path}")
        if headers is None or not valid_path(path):
            return _not_found()
        try:
            body = await self.reader.get(f"hls/{path}")
        except Exception as exc:  # the backend's own errors (S3 down): the player retries
            log.warning("hls: reading %s from storage failed: %s", path, exc)
            return error_response(
                503, "storage_unavailable", "storage is unavailable", headers=CORS
            )
        if body is None:
            return _not_found()
        content_type, cache = headers
        common = {**CORS, "Cache-Control": cache}
        if _is_playlist(path):
            return _playlist_response(request, body, content_type, common)
        common["Content-Length"] = str(len(body))
        return Response(
            b"" if request.method == "HEAD" else body, media_type=content_type, headers=common
        )


def _accepts_gzip(request: Request) -> bool:
    for coding in request.headers.get("accept-encoding", "").split(","):
        name, _, params = coding.strip().partition(";")
        if name.strip().lower() in ("gzip", "*") and params.replace(" ", "") != "q=0":
            return True
    return False


# Before an object is served: a Response refuses it, True serves it with Cache-Control private
# (a private video's, see web/playback.py), False serves it as usual.
Guard = Callable[[Request], Awaitable[Response | bool]]


def hls_routes(
    root: Path, headers: ObjectHeaders, reader: ObjectReader | None = None,
    guard: Guard | None = None,
) -> list[BaseRoute]:  # fmt: skip
    """The routes to mount in the app: ``root`` is the local storage root (DATA_DIR/media);
    ``headers`` gives each key's Content-Type and Cache-Control (None: not served);
    ``reader``, when given (S3 storage), is read instead of ``root``; ``guard`` checks access."""
    source = HlsObjects(reader, headers) if reader is not None else HlsFiles(root, headers)
    app = _AnyMethod(source.serve, guard)
    # So does the bare /hls, which Starlette would otherwise redirect to /hls/ without CORS.
    return [Route("/hls/{path:path}", app), Route("/hls", app)]


class _AnyMethod:
    """An ASGI endpoint: Starlette routes every method to it (a plain function route would
    answer other methods with its own 405), so that a 405 is an /hls answer with CORS too."""

    def __init__(
        self, serve: Callable[[Request], Awaitable[Response]], guard: Guard | None = None
    ) -> None:
        self.serve = serve
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        verdict = await self.guard(request) if self.guard is not None else False
        if isinstance(verdict, Response):
            await verdict(scope, receive, send)
            return
        response = await self.serve(request)
        if verdict and response.status_code < 400:
            response.headers["Cache-Control"] = PRIVATE_CACHE_CONTROL
        await response(scope, receive, send)
