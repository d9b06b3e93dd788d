"""``/api/videos``: lists and search, one video, edit and delete, likes, views, and the
processing progress of an upload as a server-sent event stream.

Who sees what: anyone sees ready public videos of active accounts (an unlisted one too, by its
id); the owner and admins see everything of the owner's, whatever its status or visibility.
Anything else answers 404 as if it did not exist, so private and unlisted videos never leak
through lists, search or guessing ids.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator

import asyncpg
from starlette.responses import JSONResponse, StreamingResponse

from db import jobs, lives, videos
from web import playback
from web.api import Call, Endpoint
from web.authn import CurrentUser, authenticate
from web.errors import ApiError, field_error
from web.schemas import PriceOut
from web.video_events import VideoEvents
from web.video_schemas import (
    LikeOut,
    PlaybackOut,
    VideoListOut,
    VideoListQuery,
    VideoOut,
    VideoPatchIn,
    ViewIn,
    ViewOut,
)

log = logging.getLogger(__name__)

MAX_OFFSET = 10_000  # deeper pages of a ranked search are not worth their cost
TERMINAL = ("ready", "failed")
KEEPALIVE_S = 15.0


async def optional_user(call: Call) -> CurrentUser | None:
    """The caller when it sent a bearer token (a bad one is still a 401), else None."""
    if "authorization" not in call.request.headers:
        return None
    return await authenticate(call.request)


def _visible(row: asyncpg.Record | None, user: CurrentUser | None) -> asyncpg.Record:
    if row is not None:
        if user is not None and (user.is_admin or user.id == row["user_id"]):
            return row
        if row["status"] == "ready" and row["visibility"] != "private" and row["is_active"]:
            return row
    raise ApiError(404, "not_found", "no such video")


def _owned(row: asyncpg.Record | None, user: CurrentUser) -> asyncpg.Record:
    if row is None or not (user.is_admin or user.id == row["user_id"]):
        raise ApiError(404, "not_found", "no such video")
    return row


async def _out(call: Call, row: asyncpg.Record, user: CurrentUser | None) -> VideoOut:
    db = call.db.read
    liked = await videos.liked(db, row["id"], user.id) if user is not None else None
    return VideoOut.from_row(
        row, call.settings.hls_base_url(), viewer_id=user.id if user else None,
        is_admin=bool(user and user.is_admin), liked=liked,
        qualities=await videos.qualities(db, row["id"]) if row["status"] == "ready" else (),
    )  # fmt: skip


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit() or int(cursor) > MAX_OFFSET:
        raise field_error("cursor", "not a cursor returned by this API")
    return int(cursor)


async def _list(call: Call, query: VideoListQuery, username: str | None) -> VideoListOut:
    user = await optional_user(call)
    offset = _offset(query.cursor)
    db = call.db.read
    rows = await videos.search(
        db, q=query.q, username=username,
        viewer_id=user.id if user and username and user.username.lower() == username.lower()
        else None,
        is_admin=bool(user and user.is_admin), status=query.status,
        visibility=query.visibility, sort=query.sort or ("relevance" if query.q else "new"),
        offset=offset, limit=query.limit + 1,
        # Only a search uses trigrams: plain lists skip the catalogue query.
        trigrams=bool(query.q) and await videos.has_trigrams(db),
    )  # fmt: skip
    page = rows[: query.limit]
    cursor = str(offset + query.limit) if len(rows) > query.limit else None
    base = call.settings.hls_base_url()
    viewer = user.id if user else None
    admin = bool(user and user.is_admin)
    items = [VideoOut.from_row(r, base, viewer_id=viewer, is_admin=admin) for r in page]
    return VideoListOut(items=items, next_cursor=cursor)


async def list_videos(call: Call) -> VideoListOut:
    query = call.query(VideoListQuery)
    return await _list(call, query, query.user)


async def list_user_videos(call: Call) -> VideoListOut:
    return await _list(call, call.query(VideoListQuery), call.path_str("username"))


async def get_video(call: Call) -> VideoOut:
    user = await optional_user(call)
    row = _visible(await videos.get_full(call.db.primary, call.path_id("video_id")), user)
    return await _out(call, row, user)


async def patch_video(call: Call) -> VideoOut:
    body = await call.body(VideoPatchIn)
    video_id = call.path_id("video_id")
    before = _owned(await videos.get_full(call.db.primary, video_id), call.user)
    if body.price is not None and before["live_id"] is not None:
        raise ApiError(409, "not_for_sale", "a recording is sold with its live's ticket: set "
                       "the live's price")  # fmt: skip
    await videos.update_details(
        call.db.primary, video_id, title=body.title, description=body.description,
        set_description="description" in body.model_fields_set, visibility=body.visibility,
        set_price="price" in body.model_fields_set,
        price=(body.price.amount, body.price.currency) if body.price else None,
    )  # fmt: skip
    row = await videos.get_full(call.db.primary, video_id)
    return await _out(call, _owned(row, call.user), call.user)


async def delete_video(call: Call) -> None:
    """Delete the row now and every stored object in the background: a purge job, queued in
    the same transaction, retried until storage answers (S3 included). A transcode still
    running is cancelled and, should it finish anyway, cannot publish (its run lost the row)."""
    video_id = call.path_id("video_id")
    async with call.db.primary.acquire() as conn, conn.transaction():
        row = _owned(await videos.get_full(conn, video_id), call.user)
        uploads = await conn.fetch(
            "SELECT id, object_key, s3_upload_id FROM video_uploads WHERE video_id = $1 "
            "AND status IN ('uploading', 'completing')",
            video_id,
        )
        deleted = await videos.delete(conn, video_id)
        if deleted is None:
            raise ApiError(404, "not_found", "no such video")
        prefixes = [f"hls/vod/{video_id}", f"originals/{video_id}"]
        keys = [k for k in (row["original_key"],) if k]
        await jobs.enqueue(conn, jobs.PURGE, {
            "prefixes": prefixes, "keys": keys,
            "uploads": [[u["id"], u["object_key"], u["s3_upload_id"]] for u in uploads],
        })  # fmt: skip
        if row["job_id"] is not None:
            await jobs.cancel(conn, [int(row["job_id"])])
    log.info("video %d deleted by user %d; purge queued", video_id, call.user.id)


async def _like(call: Call, on: bool) -> LikeOut:
    video_id = call.path_id("video_id")
    row = _visible(await videos.get_full(call.db.primary, video_id), call.user)
    if row["status"] != "ready":
        raise ApiError(409, "not_ready", "a video can be liked once it is ready")
    likes = await videos.like(call.db.primary, video_id, call.user.id, on)
    return LikeOut(likes=likes, liked=on)


async def like_video(call: Call) -> LikeOut:
    return await _like(call, True)


async def unlike_video(call: Call) -> LikeOut:
    return await _like(call, False)


async def count_view(call: Call) -> ViewOut:
    """Count a view once per viewer per window: signed-in viewers by their id, anonymous
    ones by an id this endpoint issued (a client-chosen one would let anyone inflate counts
    from one browser by inventing ids; an issued one costs a request each, like any view)."""
    body = await call.body(ViewIn)
    user = await optional_user(call)
    video_id = call.path_id("video_id")
    _visible(await videos.get_full(call.db.primary, video_id), user)
    issued: str | None = None
    if user is not None:
        viewer = f"u:{user.id}"
    elif body.viewer_id is not None:
        viewer = f"a:{body.viewer_id}"
        issued = body.viewer_id
    else:
        issued = secrets.token_urlsafe(18)
        viewer = f"a:{issued}"
    views = await videos.count_view(call.db.primary, video_id, viewer, call.settings.view_window)
    return ViewOut(views=views, viewer_id=issued)


async def playback_access(call: Call) -> JSONResponse:
    """For a private or sold video, the grant cookie ``/hls`` asks for (and CloudFront's signed
    cookies for its prefix when the CDN signs); for others, nothing: their files are served to
    anyone. A sold video the caller has not bought: 402 with its price."""
    user = call.user
    video_id = call.path_id("video_id")
    row = _visible(await videos.get_full(call.db.primary, video_id), user)
    owner = user.is_admin or user.id == row["user_id"]
    if row["live_id"] is not None:
        # A recording's files lie in its live's folder: a sold live's recording is the live's.
        live = await lives.get_public(call.db.primary, int(row["live_id"]))
        live_price = PriceOut.of(live["price_amount"], live["price_currency"]) if live else None
        if live_price is not None:
            return await playback.granted(call, "live", int(row["live_id"]), owner, live_price)
    price = PriceOut.of(row["price_amount"], row["price_currency"])
    private = row["status"] == "ready" and row["visibility"] == "private"
    if not private and price is None:
        return JSONResponse(PlaybackOut(private=False, expires_at=None).model_dump(mode="json"))
    return await playback.granted(call, "video", video_id, owner, price)


async def video_events(call: Call) -> StreamingResponse:
    """Progress of one video (owner/admin) as ``text/event-stream``: the current state first,
    then each change NOTIFYed by whichever worker process runs the job; ends once the video is
    ready or failed."""
    video_id = call.path_id("video_id")
    _owned(await videos.get_full(call.db.primary, video_id), call.user)
    events: VideoEvents = call.request.app.state.video_events
    # Subscribed before the state is read: a change in between is seen twice, never missed.
    subscription = events.subscribe(video_id)
    row = await videos.get_full(call.db.primary, video_id)
    if row is None:
        events.unsubscribe(video_id, subscription)
        raise ApiError(404, "not_found", "no such video")
    first = {
        "status": row["status"], "percent": row["processing_progress"],
        "stage": row["processing_stage"], "eta_seconds": row["eta_seconds"],
        "error_message": row["error_message"],
    }  # fmt: skip

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield _event(first)
            if first["status"] in TERMINAL:
                return
            while True:
                try:
                    state = await asyncio.wait_for(subscription.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                yield _event(state)
                if state.get("status") in TERMINAL:
                    return
        finally:
            events.unsubscribe(video_id, subscription)

    return StreamingResponse(
        stream(), media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )  # fmt: skip


def _event(state: dict[str, object]) -> bytes:
    public = {k: state.get(k) for k in ("status", "percent", "stage", "eta_seconds",
                                         "error_message")}  # fmt: skip
    return f"event: progress\ndata: {json.dumps(public)}\n\n".encode()


VIDEO = "/api/videos/{video_id:int}"
ENDPOINTS = [
    Endpoint("GET", "/api/videos", list_videos,
             "Videos: ready public ones, or your own with any status; search with q", "videos",
             query=VideoListQuery, response=VideoListOut),
    Endpoint("GET", "/api/users/{username:str}/videos", list_user_videos,
             "One user's videos (all of them for the user and admins)", "videos",
             query=VideoListQuery, response=VideoListOut),
    Endpoint("GET", VIDEO, get_video, "A video", "videos", response=VideoOut, errors=(404,)),
    Endpoint("PATCH", VIDEO, patch_video, "Edit title, description or visibility", "videos",
             auth="user", body=VideoPatchIn, response=VideoOut, errors=(404,)),
    Endpoint("DELETE", VIDEO, delete_video,
             "Delete a video; its stored files are removed in the background", "videos",
             auth="user", errors=(404,)),
    Endpoint("POST", VIDEO + "/like", like_video, "Like a video (once per user)", "videos",
             auth="user", response=LikeOut, errors=(404, 409)),
    Endpoint("DELETE", VIDEO + "/like", unlike_video, "Take a like back", "videos",
             auth="user", response=LikeOut, errors=(404, 409)),
    Endpoint("POST", VIDEO + "/views", count_view,
             "Count a view (once per viewer per window)", "videos", body=ViewIn,
             response=ViewOut, errors=(404,)),
    Endpoint("POST", VIDEO + "/playback", playback_access,
             "Access to a private or sold video's files on /hls (a signed cookie)", "videos",
             auth="user", response=PlaybackOut, errors=(402, 404)),
    Endpoint("GET", VIDEO + "/events", video_events,
             "Processing progress as server-sent events (text/event-stream)", "videos",
             auth="user", errors=(404,), stream="text/event-stream"),
]  # fmt: skip
