"""The web app (the Vite build of ``web/ui/``, ``STREAMD_UI_DIR``) served at ``/``.

- ``/assets/...``: the build's files, named by content hash, so cached for a year as
  ``immutable``; a missing one is the API's JSON 404 (never index.html: a stale page asking
  for a chunk of an older build must fail visibly, not parse HTML as JavaScript);
- other files at the build's root (``favicon.ico``, ``boot.js``...): ``no-cache`` (revalidated);
- any other GET/HEAD path outside streamd's own (``/api/``, ``/ws/``, ``/hls``, ``/docs``,
  ``/health``, ``/ready``, ``/metrics``, ``/openapi.json``): ``index.html``, ``no-cache``, so
  the app's router (history mode) shows the page, its own 404 included. Other methods and
  streamd's own paths never reach this route: an unknown ``/api/...`` stays the API's 404.

Files are revalidated by ETag (``If-None-Match`` → 304). The app does not compress responses
itself; the build writes ``.gz`` twins beside its files (``.br`` ones are served too, when a
build adds them), served to clients that accept
them. Paths are checked part by part and must resolve inside the build, so neither ``..``
(encoded or not) nor a symlink leads out of it. Without a build (``index.html`` missing), the
pages answer a short 503 page saying how to build it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers, URLPath
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.staticfiles import NotModifiedResponse
from starlette.types import Receive, Scope, Send

from web.errors import error_response

log = logging.getLogger(__name__)

# What a Vite-built Vue app with hls.js needs: its own scripts only; inline styles (Vue's
# style bindings); images and media from anywhere (posters, avatars, CDN segments) and blob:
# (hls.js feeds MSE through blob: URLs and may run its demuxer in a blob: worker); fetches and
# sockets to anywhere (the API, chat, a CDN). No framing, no <base>, forms to this origin only.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob: https: http:; media-src 'self' blob: https: http:; "
    "connect-src 'self' ws: wss: https: http:; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
IMMUTABLE = "public, max-age=31536000, immutable"
# Root files have no content hash: revalidated on every use (boot.js names the build's chunks).
SHORT = "no-cache"
PAGE_HEADERS = {"Cache-Control": "no-cache", "Content-Security-Policy": CSP,
                "X-Frame-Options": "DENY"}  # fmt: skip
# Paths that are streamd's, never the app's: /api, /ws, /hls and /docs and what is below them
# (whole path segments: /hls.js or /docsy are the app's), the rest exactly.
_OWN_PREFIXES = ("/api/", "/ws/", "/hls/", "/docs/", "/sandbox/")
_OWN_PATHS = frozenset(
    ("/api", "/ws", "/hls", "/docs", "/sandbox", "/health", "/ready", "/metrics", "/openapi.json")
)
_PART = re.compile(r"[A-Za-z0-9_@~+-][A-Za-z0-9_.@~+-]{0,199}")
_MAX_DEPTH = 8
_WATCH_PAGE = re.compile(r"/lives/([0-9]{1,18})/?")
# Compressed twins, best first: (file suffix, Content-Encoding).
_ENCODINGS = ((".br", "br"), (".gz", "gzip"))
# Types spelled out: the platform's mimetypes table lacks some (woff2) on some systems.
CONTENT_TYPES = {
    ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
    ".html": "text/html", ".json": "application/json", ".map": "application/json",
    ".webmanifest": "application/manifest+json", ".txt": "text/plain",
    ".woff2": "font/woff2", ".woff": "font/woff", ".ttf": "font/ttf",
    ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon",
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif",
    ".avif": "image/avif", ".wasm": "application/wasm",
}  # fmt: skip

NOT_BUILT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>streamd</title></head><body>
<h1>The web app is not built</h1>
<p>streamd serves its web app from <code>STREAMD_UI_DIR</code>, which has no
<code>index.html</code>. Build it with <code>./dev ui</code> (it writes
<code>web/ui/dist</code>), or point <code>STREAMD_UI_DIR</code> at a build.</p>
<p>The API works meanwhile: <a href="/docs">/docs</a>.</p>
</body></html>
"""


def is_own_path(path: str) -> bool:
    """A path streamd answers itself (the API, chat, HLS, docs, operations)."""
    return path in _OWN_PATHS or path.startswith(_OWN_PREFIXES)


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(os.path.splitext(name)[1].lower(), "application/octet-stream")


def _accepted(request: Request) -> set[str]:
    """The content codings the client accepts (``q=0`` refuses one)."""
    accepted = set()
    for coding in request.headers.get("accept-encoding", "").split(","):
        name, _, params = coding.strip().partition(";")
        q = params.replace(" ", "").lower()
        try:
            refused = q.startswith("q=") and float(q[2:]) == 0
        except ValueError:
            refused = False
        if name.strip() and not refused:
            accepted.add(name.strip().lower())
    return accepted


class _File(FileResponse):
    """A file with its stat-based ETag, or 304 when the client has that version."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wanted = Headers(scope=scope).get("if-none-match")
        if wanted is not None:
            etag = self.headers["etag"]
            tags = {t.strip().removeprefix("W/") for t in wanted.split(",")}
            if "*" in tags or etag.removeprefix("W/") in tags:
                await NotModifiedResponse(self.headers)(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


class WebAppFiles:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _locate(self, relative: str) -> tuple[Path, os.stat_result] | None:
        """The regular file at ``relative`` inside the build; None otherwise."""
        parts = relative.split("/")
        if not 1 <= len(parts) <= _MAX_DEPTH or not all(_PART.fullmatch(p) for p in parts):
            return None
        try:
            resolved = self.root.joinpath(*parts).resolve(strict=True)
            info = resolved.stat()
        except (OSError, RuntimeError):
            return None
        if not resolved.is_relative_to(self.root) or not stat.S_ISREG(info.st_mode):
            return None
        return resolved, info

    def _choose(
        self, relative: str, accepted: set[str]
    ) -> tuple[Path, os.stat_result, str | None] | None:
        """The file, or its best compressed twin the client accepts: (path, stat, coding)."""
        found = self._locate(relative)
        if found is None:
            return None
        for suffix, coding in _ENCODINGS:
            if coding in accepted and (twin := self._locate(relative + suffix)) is not None:
                return twin[0], twin[1], coding
        return found[0], found[1], None

    async def _file(
        self, request: Request, relative: str, headers: dict[str, str]
    ) -> Response | None:
        chosen = await asyncio.to_thread(self._choose, relative, _accepted(request))
        if chosen is None:
            return None
        path, info, coding = chosen
        headers = {**headers, "Vary": "Accept-Encoding"}
        if coding is not None:
            headers["Content-Encoding"] = coding
        # The stat taken above is the one served: a build replaced meanwhile is no 500.
        return _File(path, media_type=content_type(relative), headers=headers, stat_result=info)

    async def serve(self, request: Request) -> Response:
        path = request.url.path
        if path.startswith("/assets/"):
            found = await self._file(request, path.removeprefix("/"), {"Cache-Control": IMMUTABLE})
            return found or error_response(404, "not_found", "no such asset")
        relative = path.strip("/")
        if relative and relative != "index.html" and not relative.startswith("assets/"):
            found = await self._file(request, relative, {"Cache-Control": SHORT})
            if found is not None:
                return found
        headers = PAGE_HEADERS
        if watch := _WATCH_PAGE.fullmatch(path):
            # The watch page's first frame waits for its live: the browser fetches it with the
            # app's code instead of after it (the app's /boot.js takes the answer).
            link = f"</api/lives/{watch[1]}>; rel=preload; as=fetch; crossorigin"
            headers = {**PAGE_HEADERS, "Link": link}
        page = await self._file(request, "index.html", headers)
        if page is None:
            return HTMLResponse(NOT_BUILT, status_code=503, headers={"Cache-Control": "no-store"})
        return page


class WebAppRoute(BaseRoute):
    """Matches GET and HEAD on every path that is not streamd's own, and nothing else: other
    methods on unknown paths stay the router's JSON 404 (never a 405 from here)."""

    path = "/{web app}"  # the route label in metrics and the access log

    def __init__(self, root: Path) -> None:
        self.files = WebAppFiles(root)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (
            scope["type"] == "http"
            and scope["method"] in ("GET", "HEAD")
            and not is_own_path(scope["path"])
        ):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.files.serve(Request(scope, receive))
        await response(scope, receive, send)


def warn_if_not_built(root: Path) -> None:
    if not (root / "index.html").is_file():
        log.warning("the web app is not built (no index.html in %s): / answers a 503 page; "
                    "build it with ./dev ui or set STREAMD_UI_DIR", root)  # fmt: skip
