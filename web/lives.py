"""``/api/lives``: create, list, read, update and delete lives; stream keys; stopping a publish.

Who may do what:
- anyone reads lives of active accounts (lists never show ``offline`` lives);
- creators and admins create lives;
- the owner or an admin updates, deletes and stops a live and reads its stream health
  (others: 403, since the live is public anyway; 404 when its owner is deactivated);
- only the owner sees or rotates its stream key and ingest settings (anyone else: 404, as if
  there were nothing there), and only while its role may stream (creator or admin, as the
  ingest gate checks at each publish): an owner demoted to viewer gets 403, since whoever holds
  a key can publish with it.

The public reads are served from the PostgreSQL cache for ``STREAMD_API_CACHE_TTL`` seconds,
computed on the read pool; changes made here drop the live's cached copy at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from starlette.responses import JSONResponse

from db import cache, live_health, lives
from web import playback
from web.api import Call, Endpoint, decode_cursor, paginate
from web.errors import ApiError
from web.schemas import (
    HealthSampleOut,
    IngestOut,
    LiveCreateIn,
    LiveHealthOut,
    LiveListOut,
    LiveListQuery,
    LiveOut,
    LiveUpdateIn,
    PriceOut,
    StopOut,
    StreamKeyOut,
)
from web.video_schemas import PlaybackOut

log = logging.getLogger(__name__)

PUBLIC_STATUSES = ("live", "scheduled", "ended")


def _live_key(live_id: int) -> str:
    return f"api:live:{live_id}"


async def forget_live(call: Call, live_id: int) -> None:
    """Drop the cached public copy of a live after changing it."""
    await cache.delete(call.db.primary, _live_key(live_id))


async def _cached(call: Call, key: str, compute: Callable[[], Awaitable[Any]]) -> Any:
    """``Cache.get_or_compute`` without its pool deadlock.

    On a miss, get_or_compute holds a primary-pool connection (its cross-process lock) while
    ``compute`` takes another from the read pool, which is the same pool when there is no
    replica: as many concurrent misses on different keys as the pool has connections would each
    hold one and wait for a second, forever. Misses therefore take a slot first (at most half
    the pool at once); hits, the common case, go straight through.
    """
    value = await cache.get(call.db.primary, key, cache.MISSING)
    if value is not cache.MISSING:
        return value
    ttl = call.settings.api_cache_ttl
    slots: asyncio.Semaphore | None = call.request.app.state.cache_slots
    if slots is None:  # a one-connection pool and no replica: no lock can be afforded
        value = await compute()
        await cache.set(call.db.primary, key, value, ttl)
        return value
    async with slots:
        return await call.cache.get_or_compute(key, compute, ttl)


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "no such live")


async def _managed(call: Call, live_id: int, *, admin_too: bool) -> asyncpg.Record:
    """The live if the caller may manage it: its owner, or (``admin_too``) an admin."""
    row = await lives.get_owner_and_key(call.db.primary, live_id)
    if row is None:
        raise _not_found()
    me = call.user
    if row["user_id"] == me.id or (admin_too and me.is_admin):
        return row
    if admin_too and row["owner_active"]:
        raise ApiError(403, "forbidden", "only the owner or an admin can change this live")
    raise _not_found()


async def create_live(call: Call) -> LiveOut:
    body = await call.body(LiveCreateIn)
    row = await lives.create(
        call.db.primary, user_id=call.user.id, title=body.title, description=body.description,
        scheduled_start=body.scheduled_start, chat_enabled=body.chat_enabled,
        price=(body.price.amount, body.price.currency) if body.price else None,
    )  # fmt: skip
    public = await lives.get_public(call.db.primary, row["id"])
    assert public is not None
    return LiveOut.from_row(public, call.settings.hls_base_url(), call.settings.whep_base_url())


async def list_lives(call: Call) -> JSONResponse:
    query = call.query(LiveListQuery)
    before = decode_cursor(query.cursor)
    statuses = (query.status,) if query.status else PUBLIC_STATUSES
    key = f"api:lives:{query.status or ''}:{query.user or ''}:{before or ''}:{query.limit}"
    base, whep = call.settings.hls_base_url(), call.settings.whep_base_url()

    async def compute() -> dict[str, object]:
        rows = await lives.list_public(
            call.db.read, statuses=statuses, username=query.user, before_id=before,
            limit=query.limit + 1,
        )  # fmt: skip
        page, cursor = paginate(rows, query.limit)
        items = [LiveOut.from_row(r, base, whep) for r in page]
        return LiveListOut(items=items, next_cursor=cursor).model_dump(mode="json")

    # Already in its JSON form: served as stored, without another validation pass.
    return JSONResponse(await _cached(call, key, compute))


async def get_live(call: Call) -> JSONResponse:
    live_id = call.path_id("live_id")
    base, whep = call.settings.hls_base_url(), call.settings.whep_base_url()

    async def compute() -> dict[str, object] | None:
        row = await lives.get_public(call.db.read, live_id)
        if row is None or not row["owner_active"]:
            return None
        return LiveOut.from_row(row, base, whep).model_dump(mode="json")

    value = await _cached(call, _live_key(live_id), compute)
    if value is None:
        raise _not_found()
    return JSONResponse(value)


async def update_live(call: Call) -> LiveOut:
    live_id = call.path_id("live_id")
    await _managed(call, live_id, admin_too=True)
    body = await call.body(LiveUpdateIn)
    for name in ("title", "chat_enabled"):
        if name in body.model_fields_set and getattr(body, name) is None:
            raise ApiError(422, "validation_error", f"invalid request: check {name}",
                           details=[{"field": name, "message": "cannot be null"}])  # fmt: skip
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    if body.price is not None:
        changes["price"] = (body.price.amount, body.price.currency)
    row = await lives.update(call.db.primary, live_id, changes=changes)
    if row is None:
        raise _not_found()
    await forget_live(call, live_id)
    return LiveOut.from_row(row, call.settings.hls_base_url(), call.settings.whep_base_url())


async def delete_live(call: Call) -> None:
    live_id = call.path_id("live_id")
    await _managed(call, live_id, admin_too=True)
    try:
        deleted = await lives.delete_unless_live(call.db.primary, live_id)
    except asyncpg.ForeignKeyViolationError:
        raise ApiError(
            409, "conflict", "payments or recordings refer to this live: it cannot be deleted"
        ) from None
    if not deleted:
        raise ApiError(409, "conflict", "this live is on air: stop it first")
    await forget_live(call, live_id)


async def get_stream_key(call: Call) -> StreamKeyOut:
    row = await _managed(call, call.path_id("live_id"), admin_too=False)
    return StreamKeyOut(stream_key=row["stream_key"])


async def rotate_stream_key(call: Call) -> StreamKeyOut:
    row = await _managed(call, call.path_id("live_id"), admin_too=False)
    # New publishes with the old key are refused from now on; a publish already running on it
    # goes on until it ends (stop it with /stop to cut it at once).
    return StreamKeyOut(stream_key=await lives.rotate_stream_key(call.db.primary, row["id"]))


async def get_ingest(call: Call) -> IngestOut:
    row = await _managed(call, call.path_id("live_id"), admin_too=False)
    settings = call.settings
    app = settings.rtmp_app
    rtmps = None
    if settings.rtmps_port is not None:
        host = settings.rtmp_base_url().removeprefix("rtmp://").rsplit(":", 1)[0]
        rtmps = f"rtmps://{host}:{settings.rtmps_port}/{app}"
    return IngestOut(server=f"{settings.rtmp_base_url()}/{app}", stream_key=row["stream_key"],
                     rtmps_server=rtmps, whip_url=settings.whip_url())  # fmt: skip


async def stop_live(call: Call) -> StopOut:
    live_id = call.path_id("live_id")
    row = await _managed(call, live_id, admin_too=True)
    reason = "stopped by its owner" if row["user_id"] == call.user.id else "stopped by an admin"
    # The publisher is cut here when this process holds it; request_stop marks the live ended
    # and NOTIFYs live_control for an ingest process elsewhere.
    disconnected = call.stop_live(live_id, reason) if call.stop_live is not None else False
    await lives.request_stop(call.db.primary, live_id, reason)
    await forget_live(call, live_id)
    public = await lives.get_public(call.db.primary, live_id)
    if public is None:
        raise _not_found()
    live = LiveOut.from_row(public, call.settings.hls_base_url(), call.settings.whep_base_url())
    return StopOut(live=live, disconnected=disconnected)


async def playback_access(call: Call) -> JSONResponse:
    """For a sold live, the grant cookie ``/hls`` asks for (owner, admins, ticket holders);
    402 with the price for anyone else. A free live needs nothing."""
    user = call.user
    live_id = call.path_id("live_id")
    row = await lives.get_public(call.db.primary, live_id)
    if row is None or not row["owner_active"]:
        raise _not_found()
    price = PriceOut.of(row["price_amount"], row["price_currency"])
    if price is None:
        return JSONResponse(PlaybackOut(private=False, expires_at=None).model_dump(mode="json"))
    owner = user.is_admin or user.id == row["user_id"]
    return await playback.granted(call, "live", live_id, owner, price)


async def get_health(call: Call) -> LiveHealthOut:
    live_id = call.path_id("live_id")
    row = await _managed(call, live_id, admin_too=True)
    # Written by the packager process of the live, whichever it is (db.live_health).
    samples = [
        HealthSampleOut.model_validate({**json.loads(r["sample"]), "at": r["at"]})
        for r in await live_health.recent(call.db.read, live_id)
    ]
    return LiveHealthOut(
        live_id=live_id, status=row["status"], viewer_count=row["viewer_count"],
        interval=call.settings.health_interval, samples=samples,
    )  # fmt: skip


LIVE = "/api/lives/{live_id:int}"
ENDPOINTS = [
    Endpoint("POST", "/api/lives", create_live, "Create a live (creators and admins)", "lives",
             auth="creator", body=LiveCreateIn, response=LiveOut, status=201),
    Endpoint("GET", "/api/lives", list_lives,
             "Lives that are live, scheduled or ended, newest first (cached)", "lives",
             query=LiveListQuery, response=LiveListOut),
    Endpoint("GET", LIVE, get_live, "A live (cached)", "lives", response=LiveOut),
    Endpoint("PATCH", LIVE, update_live, "Change title, description, schedule or chat", "lives",
             auth="user", body=LiveUpdateIn, response=LiveOut, errors=(403,)),
    Endpoint("DELETE", LIVE, delete_live, "Delete a live that is not on air", "lives",
             auth="user", errors=(403, 409)),
    Endpoint("GET", LIVE + "/stream-key", get_stream_key,
             "The stream key (owner only, with the creator or admin role)", "lives",
             auth="creator", response=StreamKeyOut),
    Endpoint("POST", LIVE + "/stream-key/rotate", rotate_stream_key,
             "Replace the stream key; the old one is refused for new publishes (owner only, "
             "with the creator or admin role)", "lives", auth="creator", response=StreamKeyOut),
    Endpoint("GET", LIVE + "/ingest", get_ingest,
             "OBS settings to paste (owner only, with the creator or admin role)", "lives",
             auth="creator", response=IngestOut),
    Endpoint("POST", LIVE + "/stop", stop_live, "Stop the publish of a live (owner or admin)",
             "lives", auth="user", response=StopOut, errors=(403,)),
    Endpoint("POST", LIVE + "/playback", playback_access,
             "Access to a sold live's files on /hls (a signed cookie); 402 without a ticket",
             "lives", auth="user", response=PlaybackOut, errors=(402, 404)),
    Endpoint("GET", LIVE + "/health", get_health,
             "Stream health of the last 10 minutes, for the studio page (owner or admin)",
             "lives", auth="user", response=LiveHealthOut, errors=(403,)),
]  # fmt: skip
