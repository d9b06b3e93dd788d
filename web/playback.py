"""Guarded files on ``/hls``: private videos, and the lives and videos sold (web.payments).

Their files lie where every other's do (``hls/vod/{id}/{run}/``, ``hls/{live}/...``); ``/hls``
answers them only to a browser holding the grant cookie that ``POST /api/videos/{id}/playback``
or ``POST /api/lives/{id}/playback`` set: ``streamd_vod_{id}`` with ``Path=/hls/vod/{id}/``, or
``streamd_live_{id}`` with ``Path=/hls/{id}/``; ``HttpOnly``, ``SameSite=Lax``. Players fetch
playlists and segments with relative URIs and never see a token, and no URL that a shared
cache or a copied link could replay carries one; those answers are ``Cache-Control: private``.

A grant names its user. The owner's (and admins') opens everything; a buyer's opens a sold
item only while the buyer's order still entitles them, read from the database and kept 5 s per
process, so a full refund locks the files within seconds. A private video opens to its owner's
grant only. A live's poster (``{live}/{broadcast}/poster.jpg``) stays public: a free preview.

With a CDN whose signing key is configured, the same endpoints set CloudFront signed cookies
for the item's prefix as well (the distribution's behaviours for ``hls/vod/*`` and ``hls/*``
must then require signed requests: see README); the CDN cannot ask the database, so a refund
locks CDN playback only when those cookies expire (`TTL_S`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, TypeVar
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from config.secrets import derived_key
from config.settings import Settings
from db import orders
from db.errors import DB_ERRORS
from db.pools import Database
from db.types import Executor
from web.api import Call
from web.cdn import CloudFrontSigner
from web.errors import ApiError, error_response
from web.schemas import PriceOut
from web.video_schemas import PlaybackOut

log = logging.getLogger(__name__)

Kind = Literal["video", "live"]
PURPOSE = b"streamd private playback"
TTL_S = 6 * 3600  # a long film and its pauses; the page asks again when it reloads
ACCESS_TTL_S = 5.0
ACCESS_CACHE = 10_000
K = TypeVar("K")
V = TypeVar("V")
_VOD_PATH = re.compile(r"vod/(\d{1,18})/")
_LIVE_PATH = re.compile(r"(\d{1,18})/(.*)")
_POSTER = re.compile(r"[^/]+/poster\.jpg")
_PREVIEW_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def cookie_name(kind: Kind, item_id: int) -> str:
    return f"streamd_{'vod' if kind == 'video' else 'live'}_{item_id}"


def cookie_path(kind: Kind, item_id: int) -> str:
    return f"/hls/vod/{item_id}/" if kind == "video" else f"/hls/{item_id}/"


def cookie_paths(kind: Kind, item_id: int) -> tuple[str, ...]:
    """Where the grant cookie is sent: /hls, and for a live its WebRTC playback (WHEP)."""
    whep = (f"/whep/{item_id}",) if kind == "live" else ()
    return (cookie_path(kind, item_id), *whep)


@dataclass(frozen=True, slots=True)
class Grant:
    user_id: int
    owner: bool  # the item's owner or an admin: no entitlement needed


def _mac(settings: Settings, kind: Kind, item_id: int, grant: Grant, expires: int) -> str:
    message = f"{kind}:{item_id}:{grant.user_id}:{int(grant.owner)}:{expires}"
    digest = hmac.new(derived_key(settings, PURPOSE), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def sign(settings: Settings, kind: Kind, item_id: int, grant: Grant, expires: int) -> str:
    return f"{grant.user_id}.{int(grant.owner)}.{expires}." + _mac(
        settings, kind, item_id, grant, expires
    )


def verify(
    settings: Settings, kind: Kind, item_id: int, token: str, now: float | None = None
) -> Grant | None:
    parts = token.split(".")
    if len(parts) != 4 or not all(p.isascii() and p.isdigit() and len(p) <= 19 for p in parts[:3]):
        return None
    user, owner, expires = int(parts[0]), parts[1] == "1", int(parts[2])
    if expires < (time.time() if now is None else now):
        return None
    grant = Grant(user, owner)
    wanted = _mac(settings, kind, item_id, grant, expires)
    return grant if hmac.compare_digest(parts[3].encode(), wanted.encode()) else None


def payment_required(kind: Kind, price: PriceOut) -> ApiError:
    return ApiError(402, "payment_required", f"this {kind} is sold for {price.display}: buy it "
                    "to watch", details={"price": price.model_dump(mode="json")})  # fmt: skip


async def is_entitled(db: Executor, kind: Kind, item_id: int, user_id: int) -> bool:
    """Whether one of the user's orders for this live or video still entitles them."""
    if kind == "video":
        return await orders.entitled(db, user_id, video_id=item_id)
    return await orders.entitled(db, user_id, live_id=item_id)


async def granted(
    call: Call, kind: Kind, item_id: int, owner: bool, price: PriceOut | None
) -> JSONResponse:
    """The playback endpoints' answer for a guarded item: the grant cookie for its owner (and
    admins) or a buyer it entitles, and what it opens; 402 with the price for anyone else."""
    if not owner and not await is_entitled(call.db.primary, kind, item_id, call.user.id):
        assert price is not None  # a private video is visible to its owner only
        raise payment_required(kind, price)
    expires = int(time.time()) + TTL_S
    out = PlaybackOut(private=True, expires_at=datetime.fromtimestamp(expires, UTC), price=price)
    log.info("%s %d: playback granted to user %d", kind, item_id, call.user.id)
    grant = Grant(call.user.id, owner)
    body = out.model_dump(mode="json")
    return grant_response(call.request, call.settings, kind, item_id, grant, body)


def grant_response(
    request: Request, settings: Settings, kind: Kind, item_id: int, grant: Grant,
    body: dict[str, object],
) -> JSONResponse:  # fmt: skip
    """``body`` with the grant's cookie set (and CloudFront's, when the CDN signs)."""
    expires = int(time.time()) + TTL_S
    response = JSONResponse(body)
    secure = request.url.scheme == "https" or (settings.public_url or "").startswith("https:")
    token = sign(settings, kind, item_id, grant, expires)
    for path in cookie_paths(kind, item_id):
        response.set_cookie(
            cookie_name(kind, item_id), token, max_age=TTL_S, path=path, secure=secure,
            httponly=True, samesite="lax",
        )  # fmt: skip
    signer = CloudFrontSigner.from_settings(settings)
    domain = shared_domain(request.url.hostname, settings.cdn_base_url)
    if signer is not None and domain is not None:
        # The browser sends these to the CDN only if both hosts are under one domain.
        resource = f"{settings.hls_base_url()}{cookie_path(kind, item_id)}*"
        for name, value in signer.signed_cookies(resource, expires=expires).items():
            response.set_cookie(name, value, max_age=TTL_S, path="/", secure=True,
                                httponly=True, samesite="lax", domain=domain)  # fmt: skip
    return response


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


@dataclass(frozen=True, slots=True)
class _Access:
    private: bool  # a private video: its owner's grant only
    sold: bool  # a price is set: an entitled buyer's grant too


_FREE = _Access(private=False, sold=False)


class PlaybackGuard:
    """Decides, before ``/hls`` serves an object, whether it is guarded (a private video's, a
    sold live's or video's) and whether the request may have it: a ``Response`` refuses, True
    serves it privately, False as usual."""

    def __init__(self) -> None:
        self._access: OrderedDict[tuple[Kind, int], tuple[float, _Access]] = OrderedDict()
        self._entitled: OrderedDict[tuple[Kind, int, int], tuple[float, bool]] = OrderedDict()

    async def __call__(self, request: Request) -> Response | bool:
        if request.method not in ("GET", "HEAD"):
            return False
        path = request.path_params.get("path", "")
        kind: Kind
        if match := _VOD_PATH.match(path):
            kind, item_id = "video", int(match[1])
        elif (match := _LIVE_PATH.fullmatch(path)) and not _POSTER.fullmatch(match[2]):
            kind, item_id = "live", int(match[1])
        else:
            return False
        preview = kind == "video" and path.endswith(_PREVIEW_SUFFIXES)
        return await self.check(request, kind, item_id, preview)

    async def check(
        self, request: Request, kind: Kind, item_id: int, preview: bool = False
    ) -> Response | bool:
        """Whether ``request`` may play the item (``preview``: one of a sold video's shop
        window images): a refusal, True (guarded: answer privately) or False (free)."""
        db: Database = request.app.state.db
        try:
            access = await self._read_access(db, kind, item_id)
        except DB_ERRORS as exc:
            # Neither served nor refused on a guess: a player retries a 503.
            log.warning("hls: %s %d: cannot tell whether it is sold (%s)", kind, item_id, exc)
            return error_response(
                503, "unavailable", "playback is unavailable for a moment; retry",
                headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store",
                         "Retry-After": "5"},
            )  # fmt: skip
        if not access.private and (not access.sold or preview):
            return False  # free, or a sold video's poster and seek-bar images: its shop window
        settings: Settings = request.app.state.settings
        token = request.cookies.get(cookie_name(kind, item_id))
        grant = verify(settings, kind, item_id, token) if token is not None else None
        if grant is not None and (
            grant.owner
            or (not access.private and await self._is_entitled(db, kind, item_id, grant.user_id))
        ):
            return True
        client = request.client.host if request.client else "?"
        log.warning("%s: %s %d refused to %s (%s)", request.url.path.split("/")[1], kind,
                    item_id, client,
                    "no valid playback cookie" if grant is None else "not entitled")  # fmt: skip
        message = (
            "this video is private: sign in as its owner and open it from its page"
            if access.private
            else f"this {kind} is sold: buy it, then open it from its page"
        )
        return error_response(
            403, "playback_forbidden", message,
            headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"},
        )  # fmt: skip

    async def _read_access(self, db: Database, kind: Kind, item_id: int) -> _Access:
        """Whether the item is private or sold: read at most every ACCESS_TTL_S, and while the
        database cannot answer, what it last said (DB_ERRORS only when it never did)."""
        now = time.monotonic()
        cached = self._access.get((kind, item_id))
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            access = await self._query_access(db, kind, item_id)
        except DB_ERRORS:
            if cached is None:
                raise
            return cached[1]
        _remember(self._access, (kind, item_id), (now + ACCESS_TTL_S, access))
        return access

    async def _query_access(self, db: Database, kind: Kind, item_id: int) -> _Access:
        if kind == "video":
            row = await db.read.fetchrow(
                "SELECT visibility = 'private' AS private, price_amount IS NOT NULL AS sold "
                "FROM videos WHERE id = $1",
                item_id,
            )
        else:
            row = await db.read.fetchrow(
                "SELECT false AS private, price_amount IS NOT NULL AS sold FROM lives "
                "WHERE id = $1",
                item_id,
            )
        return _Access(bool(row["private"]), bool(row["sold"])) if row is not None else _FREE

    async def _is_entitled(self, db: Database, kind: Kind, item_id: int, user_id: int) -> bool:
        now = time.monotonic()
        key = (kind, item_id, user_id)
        cached = self._entitled.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            entitled = await is_entitled(db.read, kind, item_id, user_id)
        except DB_ERRORS:
            if cached is None:
                return False  # refused (403) rather than served on a guess
            return cached[1]
        _remember(self._entitled, key, (now + ACCESS_TTL_S, entitled))
        return entitled


def _remember(cache: OrderedDict[K, V], key: K, value: V) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > ACCESS_CACHE:
        cache.popitem(last=False)
