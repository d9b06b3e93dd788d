"""Private videos on ``/hls``: a short-lived signed cookie per video, checked on every object.

A private video's files lie under ``hls/vod/{id}/{run}/`` like any other's; ``/hls`` answers
them only to a browser holding the cookie ``streamd_vod_{id}``, which
``POST /api/videos/{id}/playback`` sets for the owner (and admins) with ``Path=/hls/vod/{id}/``,
``HttpOnly``, ``SameSite=Lax``: players fetch playlists and segments with relative URIs and
never see a token, and no URL that a shared cache or a copied link could replay carries one.
Those answers are ``Cache-Control: private``. With a CDN whose signing key is configured, the
same endpoint sets CloudFront signed cookies for the video's prefix as well (the distribution's
behaviour for ``hls/vod/*`` must then require signed requests: see README).

The video's visibility is read from the database and kept 5 s per process, so making a video
private takes effect on ``/hls`` within 5 s (a CDN keeps what it already cached public).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from collections import OrderedDict
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from config.secrets import derived_key
from config.settings import Settings
from db.pools import Database
from web.errors import error_response

log = logging.getLogger(__name__)

PURPOSE = b"streamd private playback"
TTL_S = 6 * 3600  # a long film and its pauses; the page asks again when it reloads
VISIBILITY_TTL_S = 5.0
VISIBILITY_CACHE = 10_000
_VOD_PATH = re.compile(r"vod/(\d{1,18})/")


def cookie_name(video_id: int) -> str:
    return f"streamd_vod_{video_id}"


def cookie_path(video_id: int) -> str:
    return f"/hls/vod/{video_id}/"


def _mac(settings: Settings, video_id: int, expires: int) -> str:
    digest = hmac.new(
        derived_key(settings, PURPOSE), f"{video_id}:{expires}".encode(), hashlib.sha256
    ).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def sign(settings: Settings, video_id: int, expires: int) -> str:
    return f"{expires}.{_mac(settings, video_id, expires)}"


def verify(settings: Settings, video_id: int, token: str, now: float | None = None) -> bool:
    expires, _, mac = token.partition(".")
    if not expires.isdigit() or len(expires) > 12:
        return False
    if int(expires) < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(mac.encode(), _mac(settings, video_id, int(expires)).encode())


def shared_domain(site_host: str | None, cdn_base_url: str | None) -> str | None:
    """The parent domain of the site and the CDN (``app.example.com`` and
    ``cdn.example.com`` -> ``example.com``), where CloudFront's cookies must be set for the
    browser to send them to the CDN; None when they share none (cookies cannot reach it)."""
    if not site_host or not cdn_base_url:
        return None
    cdn_host = urlsplit(cdn_base_url).hostname or ""
    site, cdn = site_host.lower().split("."), cdn_host.lower().split(".")
    common: list[str] = []
    while site and cdn and site[-1] == cdn[-1]:
        common.insert(0, site.pop())
        cdn.pop()
    return ".".join(common) if len(common) >= 2 else None


class PlaybackGuard:
    """Decides, before ``/hls`` serves an object, whether it is a private video's and whether
    the request may have it: a ``Response`` refuses, True serves it privately, False as usual."""

    def __init__(self) -> None:
        self._private: OrderedDict[int, tuple[float, bool]] = OrderedDict()

    async def __call__(self, request: Request) -> Response | bool:
        match = _VOD_PATH.match(request.path_params.get("path", ""))
        if match is None or request.method not in ("GET", "HEAD"):
            return False
        video_id = int(match[1])
        if not await self._is_private(request.app.state.db, video_id):
            return False
        settings: Settings = request.app.state.settings
        token = request.cookies.get(cookie_name(video_id))
        if token is not None and verify(settings, video_id, token):
            return True
        log.warning("hls: private video %d refused to %s (no valid playback cookie)",
                    video_id, request.client.host if request.client else "?")  # fmt: skip
        return error_response(
            403, "playback_forbidden",
            "this video is private: sign in as its owner and open it from its page",
            headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"},
        )  # fmt: skip

    async def _is_private(self, db: Database, video_id: int) -> bool:
        now = time.monotonic()
        cached = self._private.get(video_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        private = bool(
            await db.read.fetchval(
                "SELECT visibility = 'private' FROM videos WHERE id = $1", video_id
            )
        )
        self._private[video_id] = (now + VISIBILITY_TTL_S, private)
        self._private.move_to_end(video_id)
        while len(self._private) > VISIBILITY_CACHE:
            self._private.popitem(last=False)
        return private
