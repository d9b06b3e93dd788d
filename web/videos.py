"""``/api/videos``: the public read API of videos (recordings of lives, so far).

Anyone reads the ``ready`` videos of active accounts; anything else (processing, failed, a
deactivated owner's) answers 404 as if it did not exist. Reads go to the read pool.
"""

from __future__ import annotations

from db import videos
from web.api import Call, Endpoint, decode_cursor, paginate
from web.errors import ApiError
from web.schemas import VideoListOut, VideoListQuery, VideoOut


async def list_videos(call: Call) -> VideoListOut:
    query = call.query(VideoListQuery)
    rows = await videos.list_public(
        call.db.read, username=query.user, before_id=decode_cursor(query.cursor),
        limit=query.limit + 1,
    )  # fmt: skip
    page, cursor = paginate(rows, query.limit)
    base = call.settings.hls_base_url()
    return VideoListOut(items=[VideoOut.from_row(r, base) for r in page], next_cursor=cursor)


async def get_video(call: Call) -> VideoOut:
    row = await videos.get_public(call.db.read, call.path_id("video_id"))
    if row is None:
        raise ApiError(404, "not_found", "no such video")
    return VideoOut.from_row(row, call.settings.hls_base_url())


ENDPOINTS = [
    Endpoint("GET", "/api/videos", list_videos,
             "Ready videos (recordings of lives) of active accounts, newest first", "videos",
             query=VideoListQuery, response=VideoListOut),
    Endpoint("GET", "/api/videos/{video_id:int}", get_video, "A ready video", "videos",
             response=VideoOut),
]  # fmt: skip
